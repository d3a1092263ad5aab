"""Config: file lookup, precedence (flags > environment > file > defaults) and one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from drivebay import config as config_module
from drivebay.config import Config, load_config, load_config_from
from drivebay.errors import InvalidConfig


@pytest.fixture(autouse=True)
def no_system_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the host's /etc/drivebay/config.yaml or its DRIVEBAY_* variables."""
    monkeypatch.setattr(config_module, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "config.yaml")
    for name in ("DRIVEBAY_CONFIG", "DRIVEBAY_ROOT", "DRIVEBAY_STORAGE_DRIVER"):
        monkeypatch.delenv(name, raising=False)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def args(**flags: object) -> argparse.Namespace:
    values: dict[str, object] = {"config": None, "root": None, "storage_driver": None, "storage_opt": []}
    values["debug"] = False
    values.update(flags)
    return argparse.Namespace(**values)


def one_line_error(path: Path | None = None, **flags: object) -> str:
    with pytest.raises(InvalidConfig) as info:
        if path is None:
            load_config(args(**flags))
        else:
            load_config_from(path)
    message = str(info.value)
    assert "\n" not in message, f"config errors are one line: {message!r}"
    return message


def test_no_file_gives_the_defaults() -> None:
    assert load_config(args()) == Config(root=Path("/var/lib/drivebay"))
    config = load_config(args())
    assert (config.storage_driver, config.log_driver, config.volume_driver, config.network_driver) == (
        None,
        "json-file",
        "local",
        "bridge",
    )
    assert config.source is None


def test_every_documented_key_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path / "config.yaml",
        """
root: /srv/drivebay
storage-driver: vfs
storage-opts: {size: 10G}
log-driver: json-file
log-opts: {max-size: 10m, max-file: 3, compress: true}
volume-driver: local
network-driver: bridge
debug: true
""",
    )
    config = load_config_from(path)
    assert config == Config(
        root=Path("/srv/drivebay"),
        storage_driver="vfs",
        storage_opts={"size": "10G"},
        log_driver="json-file",
        log_opts={"max-size": "10m", "max-file": "3", "compress": "true"},
        volume_driver="local",
        network_driver="bridge",
        debug=True,
        source=path,
    )


def test_daemon_json_list_form_of_options(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", 'storage-opts: ["size=1G", "overlay2.override_kernel_check=true"]\n')
    assert load_config_from(path).storage_opts == {"size": "1G", "overlay2.override_kernel_check": "true"}


def test_file_found_through_env_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    default = write(tmp_path / "etc" / "config.yaml", "root: /from/default\n")
    assert load_config(args()).root == Path("/from/default")
    assert load_config(args()).source == default
    env_file = write(tmp_path / "env.yaml", "root: /from/env-file\n")
    monkeypatch.setenv("DRIVEBAY_CONFIG", str(env_file))
    assert load_config(args()).root == Path("/from/env-file")
    flag_file = write(tmp_path / "flag.yaml", "root: /from/flag-file\n")
    assert load_config(args(config=str(flag_file))).root == Path("/from/flag-file")


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "c.yaml", "root: /file\nstorage-driver: overlay2\nstorage-opts: {size: 1G, a: b}\n")
    assert (load_config_from(path).root, load_config_from(path).storage_driver) == (Path("/file"), "overlay2")
    monkeypatch.setenv("DRIVEBAY_ROOT", "/env")
    monkeypatch.setenv("DRIVEBAY_STORAGE_DRIVER", "btrfs")
    config = load_config(args(config=str(path)))
    assert (config.root, config.storage_driver) == (Path("/env"), "btrfs")
    config = load_config(args(config=str(path), root="/flag", storage_driver="vfs", storage_opt=["size=2G"]))
    assert (config.root, config.storage_driver) == (Path("/flag"), "vfs")
    assert config.storage_opts == {"size": "2G", "a": "b"}, "--storage-opt overrides one option, keeps the others"


def test_relative_root_in_a_file_is_relative_to_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "conf" / "c.yaml", "root: data\n")
    assert load_config_from(path).root == tmp_path / "conf" / "data"


def test_load_config_from_without_argparse(tmp_path: Path) -> None:
    config = load_config_from(None, {"root": str(tmp_path)}, environ={"DRIVEBAY_STORAGE_DRIVER": "vfs"})
    assert (config.root, config.storage_driver) == (tmp_path, "vfs")


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "# nothing set\n")
    assert load_config_from(path) == Config(source=path)


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "storage-drivr: vfs\n")
    message = one_line_error(path)
    assert str(path) in message
    assert "'storage-drivr'" in message
    assert "did you mean 'storage-driver'?" in message
    assert "log-opts" in message, "the accepted keys are listed"


def test_bad_value_type_names_file_key_and_accepted_values(tmp_path: Path) -> None:
    message = one_line_error(write(tmp_path / "a.yaml", "debug: maybe\n"))
    assert str(tmp_path / "a.yaml") in message and "'debug'" in message and "true or false" in message
    message = one_line_error(write(tmp_path / "b.yaml", "storage-opts: 10G\n"))
    assert "'storage-opts'" in message and "mapping" in message
    message = one_line_error(write(tmp_path / "c.yaml", "log-opts: {max-size: [1, 2]}\n"))
    assert "'log-opts'" in message and "max-size" in message
    message = one_line_error(write(tmp_path / "d.yaml", "volume-driver: 3\n"))
    assert "'volume-driver'" in message and "string" in message
    message = one_line_error(write(tmp_path / "e.yaml", "- root\n"))
    assert "top level must be a mapping" in message


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "root: /x\nstorage-opts: {size: 1G\nlog-driver: json-file\n")
    message = one_line_error(path)
    assert f"{path}: line 3" in message, message
    assert "not valid YAML" in message


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    message = one_line_error(config=str(tmp_path / "nope.yaml"))
    assert str(tmp_path / "nope.yaml") in message and "cannot be read" in message


def test_storage_opt_flag_without_equals(tmp_path: Path) -> None:
    message = one_line_error(storage_opt=["size"])
    assert "--storage-opt 'size' is not KEY=VALUE" in message
