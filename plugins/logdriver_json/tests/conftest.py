"""Fixtures for the json-file tests (helpers live in json_log_fixtures)."""

from json_log_fixtures import root

__all__ = ["root"]
