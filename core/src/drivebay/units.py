"""Human-readable byte sizes, parsed as Docker's go-units parses them.

Docker reads sizes two ways, and drivebay follows it option by option:
- binary (``RAMInBytes``): ``10G`` is 10 GiB. Storage-opt ``size``,
  ``btrfs.min_space`` and the log option ``max-buffer-size``.
- decimal (``FromHumanSize``): ``10m`` is 10,000,000 bytes. The json-file
  log option ``max-size``.

Both accept a number (fractions allowed), an optional space, then an optional
unit letter ``k m g t p`` (any case) followed by ``b`` or ``ib``, or a bare ``b``.
"""

from __future__ import annotations

import re

from drivebay.errors import InvalidConfig

_DECIMAL = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4, "p": 1000**5}
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_BINARY_EXAMPLE = "10G or 512M (binary units: 1M is 1,048,576 bytes)"
_DECIMAL_EXAMPLE = "10m or 512k (decimal units: 10m is 10,000,000 bytes)"
# go-units splits at the last digit, dot or space and hands the number to strconv.ParseFloat,
# so "1.", ".5" and "1e3" are sizes; a unit letter may carry "b" or "ib", and "b" alone is bytes.
# A pattern, compiled (and cached) by re on first use: every driver imports this module, few parse a size.
_SIZE = r"^((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?) ?(?:([kmgtp])(?:i?b)?|b)?$"


def parse_byte_size(text: str, *, binary: bool) -> int:
    """Bytes in a Docker size: ``10m`` is 10,000,000 (decimal) or 10 MiB (``binary``).

    Raises ``ValueError`` for anything else.
    """
    match = re.match(_SIZE, text.strip(), re.IGNORECASE)
    if not match:
        raise ValueError(f"invalid size {text!r}")
    units = _BINARY if binary else _DECIMAL
    return int(float(match.group(1)) * units[(match.group(2) or "").lower()])


def parse_size_option(value: str, option: str, *, binary: bool = True) -> int:
    """A positive size given as the option ``option`` (named as the user should find it in a message).

    Raises ``InvalidConfig`` naming the option and the value when it is not a size or not above zero.
    """
    try:
        size = parse_byte_size(value, binary=binary)
    except ValueError as exc:
        example = _BINARY_EXAMPLE if binary else _DECIMAL_EXAMPLE
        raise InvalidConfig(f"{option}={value!r} is not a size; write it like {example}") from exc
    if size <= 0:
        raise InvalidConfig(f"{option}={value!r} must be a positive number of bytes")
    return size
