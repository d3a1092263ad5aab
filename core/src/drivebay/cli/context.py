"""What every command handler gets: the resolved config, the state DB and the drivers, opened lazily."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from drivebay.cli.output import print_json
from drivebay.config import Config, load_config
from drivebay.state import StateDB

if TYPE_CHECKING:
    from drivebay.facades.graph import GraphDriver
    from drivebay.facades.log import LogDriver
    from drivebay.facades.network import NetworkDriver
    from drivebay.facades.volume import VolumeDriver

T = TypeVar("T")


class CliContext:
    """Lazily opened config, state and drivers for one CLI invocation."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._drivers: dict[str, object] = {}

    @cached_property
    def config(self) -> Config:
        return load_config(self.args)

    @property
    def root(self) -> Path:
        return self.config.root

    @cached_property
    def state(self) -> StateDB:
        return StateDB.for_root(self.root)

    def graph(self) -> GraphDriver:
        from drivebay.selection import open_graph_driver

        return self._remember("graph", lambda: open_graph_driver(self.config, self.state))

    def volume(self) -> VolumeDriver:
        from drivebay.facades.volume import open_volume_driver

        return self._remember("volume", lambda: open_volume_driver(self.config, self.state))

    def network(self) -> NetworkDriver:
        from drivebay.facades.network import open_network_driver

        return self._remember("network", lambda: open_network_driver(self.config, self.state))

    def log(self) -> LogDriver:
        from drivebay.facades.log import open_log_driver

        return self._remember("log", lambda: open_log_driver(self.config, self.state))

    def _remember(self, key: str, opener: Callable[[], T]) -> T:
        """Open each driver kind once per invocation, on first use."""
        if key not in self._drivers:
            self._drivers[key] = opener()
        return cast(T, self._drivers[key])

    def print_json(self, value: object) -> None:
        print_json(value)

    def close(self) -> None:
        if "state" in self.__dict__:
            self.state.close()
