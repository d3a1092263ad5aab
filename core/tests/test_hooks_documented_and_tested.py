"""Meta-tests, as datasette has: every hook has a documentation section and a test.

A hook counts as tested when some test in the repository is named
``test_hook_<hook name>`` (optionally with a suffix after the name).
"""

from __future__ import annotations

import ast
import functools
import inspect
from pathlib import Path

import pytest

from drivebay.hookspecs import PROJECT
from drivebay.loader import KINDS

REPO = Path(__file__).resolve().parents[2]
TEST_DIRS = [REPO / "core" / "tests", REPO / "conformance", *sorted((REPO / "plugins").glob("*/tests"))]


def _hooks(kind: str) -> list[str]:
    spec = KINDS[kind].spec
    return [name for name, fn in inspect.getmembers(spec, inspect.isfunction) if hasattr(fn, f"{PROJECT}_spec")]


@functools.cache
def _test_names() -> frozenset[str]:
    names: set[str] = set()
    for directory in TEST_DIRS:
        for path in directory.rglob("test_*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_hook_"):
                    names.add(node.name)
    return frozenset(names)


ALL_HOOKS = [(kind, hook) for kind in KINDS for hook in _hooks(kind)]


def test_every_kind_has_hooks() -> None:
    for kind in KINDS:
        assert _hooks(kind), f"the {kind} hookspec module declares no hooks"


@pytest.mark.parametrize(("kind", "hook"), ALL_HOOKS)
def test_hook_has_docstring_and_doc_section(kind: str, hook: str) -> None:
    fn = getattr(KINDS[kind].spec, hook)
    assert fn.__doc__ and len(fn.__doc__.split()) >= 8, f"{hook} needs a docstring: when, arguments, return, errors"
    assert hook.startswith(KINDS[kind].prefix), f"{hook} must carry the prefix {KINDS[kind].prefix}"
    page = REPO / "docs" / f"{kind}-hooks.md"
    assert page.exists(), f"docs/{kind}-hooks.md is missing"
    assert f"## {hook}\n" in page.read_text(encoding="utf-8"), f"docs/{kind}-hooks.md has no '## {hook}' section"


@pytest.mark.parametrize(("kind", "hook"), ALL_HOOKS)
def test_hook_has_a_test(kind: str, hook: str) -> None:
    names = _test_names()
    assert any(name == f"test_hook_{hook}" or name.startswith(f"test_hook_{hook}_") for name in names), (
        f"no test named test_hook_{hook} for the {kind} hook {hook}"
    )
