"""Fixtures for the local volume tests (helpers live in volume_fixtures)."""

from volume_fixtures import driver, open_driver, root

__all__ = ["driver", "open_driver", "root"]
