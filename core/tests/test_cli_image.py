"""``drivebay image`` and ``drivebay container`` end to end: real processes, outputs and exit codes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from layer_fixtures import (
    BASE_LAYER,
    BASIC_DIFF_IDS,
    BASIC_IMAGE_ID,
    BASIC_TAG,
    WHITEOUT_LAYER,
    ImageSpec,
    archive_members,
    fixture,
    layer_tar,
    needs_root,
    rewrite_archive,
    run_cli,
    write_oci_archive,
)

pytestmark = needs_root


def test_image_commands_on_the_docker_fixture(tmp_path: Path) -> None:
    root = tmp_path / "root"
    loaded = run_cli(root, "vfs", "image", "load", "-i", fixture("basic-docker.tar"))
    assert loaded.stdout == f"Loaded image: {BASIC_TAG}\n"
    assert loaded.stderr == ""  # not a terminal: no progress bar

    rows = json.loads(run_cli(root, "vfs", "image", "ls", "--json").stdout)
    assert [(r["repository"], r["tag"], r["id"], r["layers"]) for r in rows] == [
        ("drivebay-fixture/basic", "1", BASIC_IMAGE_ID, 3)
    ]
    table = run_cli(root, "vfs", "image", "ls").stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert table[1].split()[:3] == ["drivebay-fixture/basic", "1", BASIC_IMAGE_ID[7:19]]

    history = run_cli(root, "vfs", "image", "history", BASIC_TAG).stdout.splitlines()
    assert history[0].split()[:2] == ["IMAGE", "CREATED"]
    assert history[1].startswith(BASIC_IMAGE_ID[7:19]) and "sh -c" in history[1]
    assert history[3].startswith("<missing>") and history[3].rstrip().endswith("Imported from -")
    entries = json.loads(run_cli(root, "vfs", "image", "history", "--json", BASIC_TAG).stdout)
    assert [e["comment"] for e in entries] == ["", "", "Imported from -"]

    saved = tmp_path / "saved.tar"
    run_cli(root, "vfs", "image", "save", BASIC_TAG, "-o", saved)
    manifest = json.loads(archive_members(saved)["manifest.json"])
    assert manifest[0]["RepoTags"] == [BASIC_TAG]

    run_cli(root, "vfs", "container", "create", "box", BASIC_TAG)
    refused = run_cli(root, "vfs", "image", "rm", BASIC_TAG, check=False)
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and "container box" in refused.stderr

    mounted = Path(run_cli(root, "vfs", "container", "mount", "box").stdout.strip())
    assert (mounted / "bin" / "busybox").is_file()
    (mounted / "data" / "cli.txt").write_text("from the cli\n")
    assert run_cli(root, "vfs", "container", "diff", "box").stdout == "C /data\nA /data/cli.txt\n"
    listed = json.loads(run_cli(root, "vfs", "container", "ls", "--json").stdout)
    assert [(c["name"], c["image"], c["mounts"]) for c in listed] == [("box", BASIC_TAG, 1)]
    run_cli(root, "vfs", "container", "unmount", "box")

    image_id = run_cli(root, "vfs", "container", "commit", "box", "example/box:1").stdout.strip()
    rows = json.loads(run_cli(root, "vfs", "image", "ls", "--json").stdout)
    assert {r["id"] for r in rows} == {BASIC_IMAGE_ID, image_id}
    exported = tmp_path / "box.tar"
    run_cli(root, "vfs", "container", "export", "box", "-o", exported)
    assert "data/cli.txt" in archive_members(exported)

    assert run_cli(root, "vfs", "container", "rm", "box").stdout == "box\n"
    removed = run_cli(root, "vfs", "image", "rm", "example/box:1").stdout.splitlines()
    assert removed[:2] == ["Untagged: example/box:1", f"Deleted: {image_id}"]
    assert len(removed) == 3  # the committed layer; the fixture's stay with the fixture image

    fresh = tmp_path / "fresh"
    run_cli(fresh, "vfs", "image", "load", "-i", saved)
    rows = json.loads(run_cli(fresh, "vfs", "image", "ls", "--json").stdout)
    assert [r["id"] for r in rows] == [BASIC_IMAGE_ID]
    diff_ids = json.loads(archive_members(saved)[f"{BASIC_IMAGE_ID[7:]}.json"])["rootfs"]["diff_ids"]
    assert diff_ids == BASIC_DIFF_IDS


def test_import_and_oci_save(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(layer_tar(BASE_LAYER))
    image_id = run_cli(root, "vfs", "image", "import", "-i", rootfs, "example/imported:1").stdout.strip()
    assert image_id.startswith("sha256:")
    history = json.loads(run_cli(root, "vfs", "image", "history", "--json", "example/imported:1").stdout)
    assert [(h["id"], h["comment"]) for h in history] == [(image_id, "Imported from -")]
    saved = tmp_path / "oci.tar"
    run_cli(root, "vfs", "image", "save", "--format", "oci", "example/imported:1", "-o", saved)
    members = archive_members(saved)
    assert json.loads(members["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert members[f"blobs/sha256/{json.loads(members['manifest.json'])[0]['Layers'][0][13:]}"] == rootfs.read_bytes()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["image", "rm", "example/none:1"], 1, "drivebay: no image named 'example/none:1'"),
        (["image", "history", "Bad:Ref"], 2, "drivebay: invalid image reference 'Bad:Ref'"),
        (["container", "create", "c1", "example/none:1"], 1, "drivebay: no image named"),
        (["container", "create", "bad/name", "example/none:1"], 2, "drivebay: invalid container name"),
        (["container", "mount", "nobody"], 1, "drivebay: no container named 'nobody'"),
        (["image", "load"], 2, "-i"),
        (["image", "save", "x", "-o", "out.tar", "--format", "zip"], 2, "invalid choice"),
    ],
)
def test_errors_are_one_line_with_the_exit_code(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = run_cli(tmp_path / "root", "vfs", *args, check=False)
    assert result.returncode == code
    assert message in result.stderr
    if message.startswith("drivebay:"):
        assert result.stderr.count("\n") == 1


def test_load_of_a_corrupt_oci_archive_fails_and_registers_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    spec = ImageSpec(["example/app:1"], [layer_tar(BASE_LAYER), layer_tar(WHITEOUT_LAYER)])
    archive = write_oci_archive(tmp_path / "app.tar", [spec], "zstd")
    members = archive_members(archive)
    config_name = next(n for n, d in members.items() if b'"rootfs"' in d)
    config = json.loads(members[config_name])
    config["rootfs"]["diff_ids"][1] = "sha256:" + "0" * 64
    # The config no longer matches its own digest either; the loader must say which check failed.
    members[config_name] = json.dumps(config).encode()
    rewrite_archive(archive, members)
    result = run_cli(root, "vfs", "image", "load", "-i", archive, check=False)
    assert result.returncode == 1 and "config" in result.stderr
    assert json.loads(run_cli(root, "vfs", "image", "ls", "--json").stdout) == []


def _load_on_a_terminal(root: Path, archive: Path, *extra: str) -> tuple[int, str, bytes]:
    """Run ``image load`` with stderr on a pseudo-terminal; return exit code, stdout and what the terminal got."""
    primary, secondary = pty.openpty()
    command = [
        sys.executable,
        "-m",
        "drivebay.cli.main",
        "--root",
        str(root),
        "-s",
        "vfs",
        "image",
        "load",
        "-i",
        str(archive),
        *extra,
    ]
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary, text=True)
        os.close(secondary)
        stdout, _ = process.communicate(timeout=120)
        seen = b""
        while select.select([primary], [], [], 0.5)[0]:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            seen += chunk
        return process.returncode, stdout, seen
    finally:
        os.close(primary)


def test_progress_bar_only_on_a_terminal_and_not_with_quiet(tmp_path: Path) -> None:
    spec = ImageSpec(["example/app:1"], [layer_tar(BASE_LAYER), layer_tar(WHITEOUT_LAYER)])
    archive = write_oci_archive(tmp_path / "app.tar", [spec], "gzip")
    code, stdout, terminal = _load_on_a_terminal(tmp_path / "root", archive)
    assert code == 0 and stdout == "Loaded image: example/app:1\n"
    assert b"Loading example/app:1" in terminal
    code, stdout, terminal = _load_on_a_terminal(tmp_path / "quiet", archive, "--quiet")
    assert code == 0 and stdout == "Loaded image: example/app:1\n"
    assert terminal == b""


def test_import_reads_a_pipe(tmp_path: Path) -> None:
    root = tmp_path / "root"
    data = layer_tar(BASE_LAYER)
    command = [
        sys.executable,
        "-m",
        "drivebay.cli.main",
        "--root",
        str(root),
        "-s",
        "vfs",
        "image",
        "import",
        "-i",
        "/dev/stdin",
        "example/piped:1",
    ]
    result = subprocess.run(command, input=data, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    history = json.loads(run_cli(root, "vfs", "image", "history", "--json", "example/piped:1").stdout)
    assert history[0]["comment"] == "Imported from -"
    rows = json.loads(run_cli(root, "vfs", "image", "ls", "--json").stdout)
    assert [r["id"] for r in rows] == [result.stdout.decode().strip()]
