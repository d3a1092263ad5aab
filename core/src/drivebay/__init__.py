"""drivebay: pluggable container storage, volume, network and log drivers."""

from drivebay.hookspecs import hookimpl, hookspec

__all__ = ["__version__", "hookimpl", "hookspec"]
__version__ = "0.1.0"
