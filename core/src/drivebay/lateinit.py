"""Driver attributes that only the init hook can set.

A driver is instantiated with no arguments by the loader and learns its home
(and whatever it builds from it) in ``graph_init``/``net_init``. Reading such
an attribute earlier is a bug in the caller, and says so instead of failing
later on ``None``.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast, overload

T = TypeVar("T")


class SetByInit(Generic[T]):
    """A descriptor: ``home = SetByInit[Path]("graph_init")``; ``self.home = ...`` in the hook sets it."""

    def __init__(self, init_hook: str) -> None:
        self.init_hook = init_hook
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> SetByInit[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> SetByInit[T] | T:
        if obj is None:
            return self
        # A data descriptor wins over the instance dict, so the value can live there under the same name.
        values: dict[str, Any] = vars(obj)
        if self.name not in values:
            raise RuntimeError(f"{type(obj).__name__}.{self.name} was read before {self.init_hook} set it")
        return cast(T, values[self.name])

    def __set__(self, obj: object, value: T) -> None:
        vars(obj)[self.name] = value
