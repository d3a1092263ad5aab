"""Per-layer storage-opts as every graph driver reads them: only ``size``, in binary units."""

from __future__ import annotations

import pytest

from drivebay.errors import InvalidConfig
from drivebay.storageopts import layer_size


def test_size_is_parsed_and_the_default_applies_without_it() -> None:
    assert layer_size("vfs", "l1", {"size": "10M"}, None) == 10 << 20
    assert layer_size("vfs", "l1", {}, 5) == 5
    assert layer_size("vfs", "l1", {}, None) is None


def test_other_options_and_bad_sizes_name_the_driver_and_layer() -> None:
    with pytest.raises(InvalidConfig, match=r"storage driver 'btrfs' has no per-layer option 'inodes' \(only size\)"):
        layer_size("btrfs", "l1", {"inodes": "5", "size": "1G"}, None)
    with pytest.raises(InvalidConfig, match=r"storage driver 'btrfs' layer 'l1' size='lots' is not a size"):
        layer_size("btrfs", "l1", {"size": "lots"}, None)
