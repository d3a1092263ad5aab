"""Start-up: a command line naming a command imports only that command's module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivebay.cli.main import COMMAND_MODULES, _modules_for


@pytest.mark.parametrize(
    ("argv", "modules"),
    [
        (["image", "ls"], ("image",)),
        (["--root", "/x", "-s", "vfs", "--storage-opt", "size=1G", "graph", "create", "a"], ("graph",)),
        (["drivers"], ("info",)),
        (["--debug", "container", "--help"], ("container",)),
        (["--help"], COMMAND_MODULES),
        ([], COMMAND_MODULES),
        (["bogus"], COMMAND_MODULES),
        (["--root"], COMMAND_MODULES),
    ],
)
def test_the_modules_registered_for_a_command_line(argv: list[str], modules: tuple[str, ...]) -> None:
    assert tuple(_modules_for(argv)) == modules


def test_image_ls_imports_neither_the_bench_nor_the_plugin_server_nor_progress_bars(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from drivebay.cli.main import main\n"
        f"status = main(['--root', {str(tmp_path / 'root')!r}, '-s', 'vfs', 'image', 'ls'])\n"
        "heavy = ('drivebay.bench', 'drivebay.dockerplugin.server', 'rich.progress')\n"
        "print(status, sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == "0 []"


LAZY_FOR_IMAGE_LS = (
    "yaml",  # read only when a config file exists
    "difflib",  # suggests a config key in an error
    "drivebay.hookspecs.volume",  # each kind's hookspecs load with the first driver of that kind
    "drivebay.hookspecs.network",
    "drivebay.hookspecs.log",
    "drivebay.layers.transfer",  # image load, save and import
    "drivebay.layers.docker_archive",
    "drivebay.layers.oci_archive",
    "ctypes.util",  # find_library runs ldconfig; core binds the libc already loaded
    "zstandard",  # decompresses zstd layers only
)


def test_image_ls_imports_none_of_the_modules_it_does_not_need(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "from drivebay.cli.main import main\n"
        f"status = main(['--root', {str(tmp_path / 'root')!r}, '-s', 'vfs', 'image', 'ls'])\n"
        f"lazy = {LAZY_FOR_IMAGE_LS!r}\n"
        "print(status, sorted(m for m in lazy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == "0 []"


def test_a_config_file_is_still_read_and_checked(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"root: {tmp_path / 'root'}\nstorage-driver: vfs\nstorage-otps: {{}}\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "drivebay.cli.main", "--config", str(config), "image", "ls"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"drivebay: {config}: unknown key 'storage-otps'; did you mean 'storage-opts'? accepted keys: root, "
        "storage-driver, storage-opts, log-driver, log-opts, volume-driver, network-driver, debug\n"
    )
    config.write_text(f"root: {tmp_path / 'root'}\nstorage-driver: vfs\n", encoding="utf-8")
    listed = subprocess.run(
        [sys.executable, "-m", "drivebay.cli.main", "--config", str(config), "image", "ls", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert listed.stdout == "[]\n"
    assert (tmp_path / "root" / "vfs").is_dir()


def test_the_image_save_formats_offered_are_the_ones_transfer_writes() -> None:
    from drivebay.cli.image import FORMATS
    from drivebay.layers.transfer import FORMATS as WRITTEN

    assert FORMATS == WRITTEN
