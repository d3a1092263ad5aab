"""One driver on one fresh root, for one case: opening, skipping with a reason, and cleaning up.

Every case gets its own root: a directory under pytest's ``tmp_path``, or a
loop-mounted filesystem when the driver requires one (btrfs) or the case needs
one (quota). The suite reaches the driver only through the typed facade
:class:`drivebay.facades.graph.GraphDriver`. Teardown runs ``cleanup()`` on
every facade the case opened and unmounts whatever is still mounted under the
root, failures included.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivebay.errors import LayerNotFound
from drivebay.facades.graph import GraphDriver
from drivebay.fs.loopfs import can_make, scratch_filesystem
from drivebay.fs.mounts import mounts_under, unmount
from drivebay.hookspecs.graph import GraphCapabilities
from drivebay.loader import KINDS, LoadedDriver, load_driver
from drivebay.state import StateDB
from drivebay.testing.treecompare import FIELDS, assert_same_tree
from drivebay_conformance.trees import Node, layer_tar, materialize

GRAPH = KINDS["graph"]
SCRATCH_SIZE_MB = 4096
"""Loop images are sparse: the size only bounds what a case may write (the 1 GiB file twice)."""

VIEW_IGNORE = ("/",)
"""A layer root's own metadata belongs to the driver (an overlay upper dir), not to the layer's content."""


@dataclass
class Commit:
    """A layer tar taken from one layer and applied as another."""

    tar: Path
    sha256: str
    size: int


@dataclass(repr=False)
class DriverCase:
    """A graph driver opened on a fresh root for one case."""

    name: str
    root: Path
    scratch: Path
    capabilities: GraphCapabilities
    fstype: str | None
    graph: GraphDriver = field(init=False)
    _opened: list[GraphDriver] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"DriverCase({self.name!r} at {self.root})"

    @property
    def home(self) -> Path:
        return self.root / self.name

    def open(self) -> GraphDriver:
        """A new facade on the same root, with a fresh driver instance: what the next process would see."""
        loaded = load_driver(GRAPH, self.name)
        graph = GraphDriver(loaded, home=self.home, state=StateDB.for_root(self.root), options={})
        self._opened.append(graph)
        return graph

    def chain(self, layer_id: str, graph: GraphDriver | None = None) -> str:
        """``driver 'vfs', layers base -> rw``: how failures name what they compared."""
        graph = graph or self.graph
        layers = [layer_id]
        try:
            while (parent := graph.parent(layers[-1])) is not None:
                layers.append(parent)
        except LayerNotFound:
            # Describing a failure must not raise over it: a half-made layer has no registered parent yet.
            layers[-1] += " (not registered)"
        return f"driver '{self.name}', layers {' -> '.join(reversed(layers))}"

    def reference(self, name: str, *layers: Iterable[Node]) -> Path:
        """The tree ``layers`` give when applied in order, made with plain system calls on the driver's filesystem."""
        root = self.scratch / name
        root.mkdir()
        for nodes in layers:
            materialize(nodes, root)
        return root

    def apply_nodes(self, layer_id: str, parent: str | None, nodes: Iterable[Node]) -> int:
        """Create read-only ``layer_id`` on ``parent`` from a tar of ``nodes``; returns the applied size."""
        return self.graph.create_from_tar(layer_id, parent, io.BytesIO(layer_tar(nodes)))

    def diff(self, layer_id: str, graph: GraphDriver | None = None) -> tuple[Path, str]:
        """Write ``layer_id``'s diff against its parent to a file; returns it with its sha256."""
        graph = graph or self.graph
        path = self.scratch / f"{layer_id}.{len(list(self.scratch.iterdir()))}.tar"
        with open(path, "wb") as out:
            graph.diff(layer_id, out)
        return path, file_sha256(path)

    def commit(self, layer_id: str, new_id: str, onto: GraphDriver | None = None) -> Commit:
        """Diff ``layer_id`` against its parent and apply that as ``new_id`` on the same parent.

        ``onto`` is another driver's facade for cross-driver round trips; the
        parent must exist there under the same ID.
        """
        tar, sha = self.diff(layer_id)
        target = onto or self.graph
        with open(tar, "rb") as f:
            size = target.create_from_tar(new_id, self.graph.parent(layer_id), f)
        return Commit(tar, sha, size)

    @property
    def fields(self) -> tuple[str, ...]:
        return compared_fields(self.capabilities)

    def assert_same_view(self, a: str, b: str, other: GraphDriver | None = None, what: str = "") -> None:
        """Layers ``a`` (here) and ``b`` (here, or in ``other``) show identical trees."""
        __tracebackhide__ = True
        graph_b = other or self.graph
        context = f"{self.chain(a)} vs {'' if other is None else f'driver {graph_b.name!r}, '}layer {b!r}"
        fields = compared_fields(self.capabilities, graph_b.capabilities)
        with self.graph.mounted(a) as view_a, graph_b.mounted(b) as view_b:
            assert_same_tree(
                view_a,
                view_b,
                f"{what}{': ' if what else ''}{context}",
                ignore=VIEW_IGNORE,
                fields=fields,
                labels=(f"layer '{a}'", f"layer '{b}'"),
            )

    def assert_view_matches(self, layer_id: str, reference: Path, what: str) -> None:
        """Layer ``layer_id`` shows the tree at ``reference``."""
        __tracebackhide__ = True
        with self.graph.mounted(layer_id) as view:
            assert_same_tree(
                reference,
                view,
                f"{self.chain(layer_id)} vs {what}",
                ignore=VIEW_IGNORE,
                fields=self.fields,
                labels=("expected", f"layer '{layer_id}'"),
            )

    def assert_applied_size(self, layer_id: str, applied: int) -> None:
        """``apply_diff``'s answer for ``layer_id`` equals its ``diff_size``."""
        __tracebackhide__ = True
        size = self.graph.diff_size(layer_id)
        assert applied == size, f"{self.chain(layer_id)}: apply_diff returned {applied} bytes but diff_size says {size}"

    def close(self) -> None:
        """Cleanup every facade, then unmount anything left under the root (but not the root itself)."""
        errors: list[BaseException] = []
        for graph in reversed(self._opened):
            try:
                graph.cleanup()
            except Exception as exc:  # keep tearing down; re-raised below
                errors.append(exc)
            graph.state.close()
        root = Path(os.path.realpath(self.root))
        for entry in mounts_under(root):
            if entry.mount_point != root:
                unmount(entry.mount_point, lazy=True)
        if errors:
            raise errors[0]


def compared_fields(*capabilities: GraphCapabilities) -> tuple[str, ...]:
    """The tree fields to compare: all but those of features a driver declares it lacks."""
    lacking = set()
    for declared in capabilities:
        if not declared.hardlinks:
            lacking.add("hardlinks")
        if not declared.xattrs:
            lacking.add("xattrs")
    return tuple(f for f in FIELDS if f not in lacking)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        pytest.skip(f"needs root ({what})")


def require_capability(case: DriverCase, capability: str) -> None:
    """Skip, naming the declaration, when the driver declares it lacks ``capability``."""
    if not getattr(case.capabilities, capability):
        pytest.skip(f"driver '{case.name}' declares {capability}=False")


def driver_capabilities(name: str) -> tuple[LoadedDriver, GraphCapabilities]:
    loaded = load_driver(GRAPH, name)
    return loaded, loaded.hook.graph_capabilities()


@contextmanager
def open_driver_case(name: str, workdir: Path, fstype: str | None = None) -> Iterator[DriverCase]:
    """Open driver ``name`` on a fresh root under ``workdir`` for one case.

    The root is a loop-mounted ``fstype`` filesystem when given, or when the
    driver declares ``required_filesystem``. Skips, with the reason, when the
    host cannot make that filesystem or the driver's probe says it cannot run.
    """
    require_root("drivers mount, chown and mknod")
    loaded, capabilities = driver_capabilities(name)
    required = capabilities.required_filesystem
    if fstype and required and fstype != required:
        pytest.skip(f"driver '{name}' declares it needs {required}; this run puts every root on {fstype}")
    fstype = fstype or required
    workdir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if fstype:
            reason = can_make(fstype)
            if reason:
                pytest.skip(f"driver '{name}' needs a {fstype} filesystem, which this host cannot make: {reason}")
            root = stack.enter_context(scratch_filesystem(fstype, size_mb=SCRATCH_SIZE_MB, parent=workdir))
        else:
            root = workdir / "root"
            root.mkdir()
        reason = loaded.hook.graph_probe(home=root / name)
        if reason:
            pytest.skip(f"driver '{name}' is not supported on this host: {reason}")
        scratch = root / "conformance-scratch"
        scratch.mkdir()
        case = DriverCase(name=name, root=root, scratch=scratch, capabilities=capabilities, fstype=fstype)
        stack.callback(case.close)
        case.graph = GraphDriver(loaded, home=case.home, state=StateDB.for_root(root), options={})
        case._opened.append(case.graph)
        yield case
