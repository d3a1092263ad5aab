"""The ``drivebay`` command line. One module per command group, each with ``register``."""
