"""Sizes read as Docker's go-units reads them (RAMInBytes binary, FromHumanSize decimal)."""

from __future__ import annotations

import pytest

from drivebay.errors import InvalidConfig
from drivebay.units import parse_byte_size, parse_size_option


@pytest.mark.parametrize(
    ("text", "binary", "expected"),
    [
        ("10m", False, 10_000_000),
        ("10m", True, 10 << 20),
        ("10G", True, 10 << 30),
        ("4KiB", True, 4096),
        ("4kb", False, 4000),
        ("1.5k", False, 1500),
        ("32 MB", False, 32_000_000),
        ("512", True, 512),
        ("512b", True, 512),
        (".5k", True, 512),
        ("1.", False, 1),
        ("1e3", False, 1000),
    ],
)
def test_sizes_docker_accepts(text: str, binary: bool, expected: int) -> None:
    assert parse_byte_size(text, binary=binary) == expected


@pytest.mark.parametrize("text", ["", "ten", "-1", "10x", "10ib", "10ki", "10kbb", "10 k b", "k", "10bb"])
def test_sizes_docker_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_byte_size(text, binary=True)


def test_size_option_names_the_option_and_the_fix() -> None:
    assert parse_size_option("2M", "storage driver 'vfs' option size") == 2 << 20
    with pytest.raises(InvalidConfig, match=r"option size='lots' is not a size; write it like 10G"):
        parse_size_option("lots", "storage driver 'vfs' option size")
    with pytest.raises(InvalidConfig, match=r"log-opt max-size='0' must be a positive number of bytes"):
        parse_size_option("0", "log-opt max-size", binary=False)
