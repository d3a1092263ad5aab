"""``drivebay logs capture`` and ``drivebay logs`` end to end, as a user runs them."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from drivebay.testing.cli import run_drivebay

SCRIPT = "echo out1; echo err1 >&2; echo '<tag> & more'; printf 'last without newline'; exit 3"


def test_capture_logs_both_streams_and_exits_with_the_command_code(root: Path) -> None:
    done = run_drivebay(root, "logs", "capture", "web", "--", "sh", "-c", SCRIPT)
    assert done.returncode == 3, done.stderr
    records = [json.loads(line) for line in (root / "containers/web/web-json.log").read_text().splitlines()]
    by_stream = {(r["stream"], r["log"]) for r in records}
    assert by_stream == {
        ("stdout", "out1\n"),
        ("stderr", "err1\n"),
        ("stdout", "<tag> & more\n"),
        ("stdout", "last without newline\n"),
    }
    shown = run_drivebay(root, "logs", "web")
    assert shown.returncode == 0
    assert shown.stdout == "out1\n<tag> & more\nlast without newline\n"
    assert shown.stderr == "err1\n"


def test_logs_tail_timestamps_and_since(root: Path) -> None:
    assert run_drivebay(root, "logs", "capture", "web", "--", "seq", "1", "50").returncode == 0
    tail = run_drivebay(root, "logs", "web", "--tail", "3", "-t")
    lines = tail.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == ["48", "49", "50"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", line.split(" ")[0]) for line in lines)
    assert run_drivebay(root, "logs", "web", "--since", "1h").stdout.splitlines()[-1] == "50"
    assert run_drivebay(root, "logs", "web", "--until", "2000-01-01").stdout == ""


def test_logs_errors_are_one_line(root: Path) -> None:
    missing = run_drivebay(root, "logs", "ghost")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "'ghost'" in missing.stderr
    assert run_drivebay(root, "logs", "capture", "web").returncode == 2
    assert run_drivebay(root, "logs", "web", "--since", "someday").returncode == 2
    not_found = run_drivebay(root, "logs", "capture", "web", "--", "/no/such/command")
    assert not_found.returncode == 127 and "cannot run" in not_found.stderr


def test_capture_of_a_huge_line_comes_back_whole(root: Path) -> None:
    script = "import sys; sys.stdout.write('é' * 1_500_000 + '\\n' + 'after\\n')"
    assert run_drivebay(root, "logs", "capture", "web", "--", sys.executable, "-c", script).returncode == 0
    stored = (root / "containers/web/web-json.log").read_text().splitlines()
    assert len(stored) > 180 and all(len(json.loads(line)["log"].encode()) <= 16384 for line in stored)
    shown = run_drivebay(root, "logs", "web").stdout.splitlines()
    assert shown == ["é" * 1_500_000, "after"]
