"""SetByInit: a driver attribute read before its init hook ran names the attribute and the hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivebay.lateinit import SetByInit


class _Driver:
    home = SetByInit[Path]("graph_init")

    def graph_init(self, home: Path) -> None:
        self.home = home


def test_reading_before_init_names_the_attribute_and_the_hook() -> None:
    with pytest.raises(RuntimeError, match=r"_Driver\.home was read before graph_init set it"):
        _ = _Driver().home


def test_init_sets_the_value_per_instance(tmp_path: Path) -> None:
    first, second = _Driver(), _Driver()
    first.graph_init(tmp_path)
    assert first.home == tmp_path
    with pytest.raises(RuntimeError):
        _ = second.home
