"""The bytes on disk are Docker's json-file format, exactly."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from json_log_fixtures import T0, make_driver, write_lines

from drivebay.facades.log import LogDriver
from drivebay.hookspecs.log import LogMessage, ReadConfig
from drivebay.layers.schema import SCHEMA
from drivebay.loader import KINDS, load_driver
from drivebay.state import StateDB


def _log_file(root: Path, name: str) -> Path:
    return root / "containers" / name / f"{name}-json.log"


def test_hook_log_write_writes_docker_bytes(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("web")
    with driver.open(info) as writer:
        writer.write(
            [
                LogMessage(b"hello", "stdout", T0 + 123_450_000),
                LogMessage(b'<a href="x">&</a>\t\x01\\', "stderr", T0),
                LogMessage("sep\u2028par\u2029é".encode(), "stdout", T0 + 1),
                LogMessage(b"bad \xff\xfe utf8 \xe2\x82 end", "stdout", T0 + 10),
                LogMessage(b"", "stdout", T0 + 100_000_000),
            ]
        )
    lines = _log_file(root, "web").read_bytes().decode().splitlines()
    assert lines == [
        '{"log":"hello\\n","stream":"stdout","time":"2026-11-23T10:27:18.12345Z"}',
        '{"log":"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e\\u0009\\u0001\\\\\\n","stream":"stderr",'
        '"time":"2026-11-23T10:27:18Z"}',
        '{"log":"sep\\u2028par\\u2029é\\n","stream":"stdout","time":"2026-11-23T10:27:18.000000001Z"}',
        '{"log":"bad \\ufffd\\ufffd utf8 \\ufffd\\ufffd end\\n","stream":"stdout",'
        '"time":"2026-11-23T10:27:18.00000001Z"}',
        '{"log":"\\n","stream":"stdout","time":"2026-11-23T10:27:18.1Z"}',
    ]


def test_file_is_mode_0640_under_containers(root: Path) -> None:
    driver = make_driver(root)
    old = os.umask(0o077)
    try:
        write_lines(driver, driver.info_for("web"), [b"x"])
    finally:
        os.umask(old)
    assert stat.S_IMODE(_log_file(root, "web").stat().st_mode) == 0o640


def test_attrs_come_between_stream_and_time(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for(
        "web",
        container_id="0123456789abcdef0123",
        env={"B_ENV": "<b>", "A_ENV": "a\tb", "OTHER": "no"},
        labels={"com.example": "lab", "skip": "no"},
        image_name="busybox:1",
        options={
            "env": "B_ENV",
            "env-regex": "^A_",
            "labels": "com.example",
            "tag": "{{.Name}}/{{.ID}}/{{.ImageName}}",
        },
    )
    write_lines(driver, info, [b"x"])
    line = (info.container_root / "0123456789abcdef0123-json.log").read_text().strip()
    assert line == (
        '{"log":"x\\n","stream":"stdout","attrs":{"A_ENV":"a\\tb","B_ENV":"\\u003cb\\u003e",'
        '"com.example":"lab","tag":"web/0123456789ab/busybox:1"},"time":"2026-11-23T10:27:18Z"}'
    )
    entry = next(iter(driver.read(info, ReadConfig())))
    assert entry.attrs["tag"] == "web/0123456789ab/busybox:1"


def test_long_lines_split_at_16k_with_one_timestamp_and_join_back(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("web")
    long_line = bytes(range(97, 123)) * 1600  # 41,600 bytes
    write_lines(driver, info, [long_line, b"short"])
    records = [json.loads(raw) for raw in _log_file(root, "web").read_bytes().splitlines()]
    assert [len(r["log"]) for r in records] == [16384, 16384, 41600 - 32768 + 1, 6]
    assert [r["log"].endswith("\n") for r in records] == [False, False, True, True]
    assert len({r["time"] for r in records[:3]}) == 1
    joined = list(driver.read(info, ReadConfig()))
    assert [e.line for e in joined] == [long_line.decode(), "short"]
    parts = list(driver.read(info, ReadConfig(join_partial=False)))
    assert [e.partial for e in parts] == [True, True, False, False]
    assert "".join(e.line for e in parts[:3]) == long_line.decode()


def test_split_never_cuts_a_utf8_character(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("web")
    line = b"a" + "é".encode() * 10000  # a 2-byte character straddles byte 16384
    write_lines(driver, info, [line])
    raw = _log_file(root, "web").read_text()
    assert "\\ufffd" not in raw
    assert [e.line for e in driver.read(info, ReadConfig())] == [line.decode()]


def test_a_docker_style_reader_reads_our_files(root: Path) -> None:
    """Read as moby's jsonlog decoder does: one JSON object per line, fields log/stream/time."""
    driver = make_driver(root)
    info = driver.info_for("web")
    write_lines(driver, info, [f"line {i}".encode() for i in range(5)], source="stderr")
    for raw in _log_file(root, "web").read_bytes().splitlines():
        obj = json.loads(raw)
        assert list(obj) == ["log", "stream", "time"]
        assert obj["stream"] == "stderr" and obj["log"].startswith("line ") and obj["time"].endswith("Z")


def test_reader_skips_torn_and_garbage_lines(root: Path) -> None:
    driver = make_driver(root)
    info = driver.info_for("web")
    write_lines(driver, info, [b"one", b"two"])
    path = _log_file(root, "web")
    content = path.read_bytes()
    first, second = content.splitlines(keepends=True)
    path.write_bytes(first + b"not json at all\n" + b'{"log":"torn' + b"\n" + second + b'{"log":"half')
    assert [e.line for e in driver.read(info, ReadConfig())] == ["one", "two"]
    assert [e.line for e in driver.read(info, ReadConfig(tail=5))] == ["one", "two"]
    write_lines(driver, info, [b"three"])  # a new writer starts on a fresh line after the torn one
    assert [e.line for e in driver.read(info, ReadConfig())] == ["one", "two", "three"]


def test_a_container_of_the_layer_store_logs_under_its_id(root: Path) -> None:
    state = StateDB.for_root(root)
    try:
        state.ensure_schema(SCHEMA)
        cid, image = "ab" * 32, "sha256:" + "cd" * 32
        with state.transaction() as db:
            db.execute("INSERT INTO layerstore_images VALUES (?, x'7b7d', NULL, 0)", (image,))
            db.execute(
                "INSERT INTO layerstore_containers VALUES (?, 'web', ?, 'init', 'rw', 'ready', 1, 0)", (cid, image)
            )
        driver = LogDriver(load_driver(KINDS["log"], "json-file"), root, {"tag": "{{.ID}} {{.ImageID}}"}, state)
        info = driver.info_for("web")
        assert info.container_root == root / "containers" / cid
        write_lines(driver, info, [b"hi"])
        assert (root / "containers" / cid / f"{cid}-json.log").exists()
        assert next(iter(driver.read(driver.info_for(cid), ReadConfig()))).attrs["tag"] == "abababababab cdcdcdcdcdcd"
    finally:
        state.close()
