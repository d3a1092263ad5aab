"""Helpers of the vfs tests: the facade opener's type."""

from __future__ import annotations

from collections.abc import Callable

from drivebay.facades.graph import GraphDriver

OpenVfs = Callable[..., GraphDriver]
