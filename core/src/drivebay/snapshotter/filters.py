"""containerd's filter syntax, for ``List``: the subset its snapshot listings use.

A request's filters are alternatives; each is a comma-separated conjunction of
``selector``, ``selector==value``, ``selector!=value`` or ``selector~=regexp``.
Selectors are ``name``, ``parent``, ``kind`` and ``labels.KEY``; a component
with dots or slashes is quoted: ``labels."containerd.io/gc.root"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from drivebay.errors import InvalidSnapshotRequest
from drivebay.snapshotter.store import Snapshot

_COMPONENT = r'(?:[A-Za-z0-9_]+|"(?:[^"\\]|\\.)*")'
_CLAUSE = re.compile(
    rf'\s*(?P<selector>{_COMPONENT}(?:\.{_COMPONENT})*)\s*'
    rf'(?:(?P<op>==|!=|~=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,]*?))?\s*(?:,|$)'
)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def _unquote(text: str) -> str:
    match = _QUOTED.fullmatch(text)
    return re.sub(r"\\(.)", r"\1", match.group(1)) if match else text


@dataclass(frozen=True)
class Clause:
    path: tuple[str, ...]
    op: str | None
    value: str

    def field(self, snapshot: Snapshot) -> str | None:
        head, rest = self.path[0], self.path[1:]
        if head == "labels" and len(rest) == 1:
            return snapshot.labels.get(rest[0])
        if rest:
            return None
        if head == "name":
            return snapshot.key
        if head == "parent":
            return snapshot.parent or ""
        if head == "kind":
            return snapshot.kind.name.lower()
        return None

    def matches(self, snapshot: Snapshot) -> bool:
        actual = self.field(snapshot)
        if self.op is None:
            return actual is not None
        if self.op == "==":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        return actual is not None and re.search(self.value, actual) is not None


def _parse_one(text: str) -> list[Clause]:
    clauses, position = [], 0
    while position < len(text):
        match = _CLAUSE.match(text, position)
        if match is None or match.end() == position:
            raise InvalidSnapshotRequest(
                f"snapshot filter {text!r} cannot be parsed at offset {position}; "
                'use selector==value, selector!=value or selector~=regexp, such as labels."a/b"==c'
            )
        path = tuple(_unquote(c) for c in re.findall(_COMPONENT, match.group("selector")))
        op = match.group("op")
        value = _unquote(match.group("value").strip()) if op else ""
        if op == "~=":
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidSnapshotRequest(f"snapshot filter {text!r} has a bad regular expression: {exc}") from exc
        clauses.append(Clause(path, op, value))
        position = match.end()
    return clauses


def compile_filters(filters: Sequence[str]) -> Callable[[Snapshot], bool]:
    """A predicate true for snapshots matching any of ``filters`` (all of them when empty)."""
    alternatives = [_parse_one(f) for f in filters if f.strip()]
    if not alternatives:
        return lambda snapshot: True
    return lambda snapshot: any(all(c.matches(snapshot) for c in clauses) for clauses in alternatives)
