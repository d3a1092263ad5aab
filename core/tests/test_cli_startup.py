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
