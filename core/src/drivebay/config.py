"""drivebay's configuration: one YAML file with Docker daemon.json's key names.

Where each setting comes from, strongest first: command-line flags,
environment variables (``DRIVEBAY_ROOT``, ``DRIVEBAY_STORAGE_DRIVER``), the
file, the built-in defaults. The file is ``--config FILE``, else
``$DRIVEBAY_CONFIG``, else ``/etc/drivebay/config.yaml``; only the last may be
absent. Every mistake is an ``InvalidConfig`` of one line that names the file,
the key and what is accepted.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivebay.errors import InvalidConfig

DEFAULT_CONFIG_PATH = Path("/etc/drivebay/config.yaml")
DEFAULT_ROOT = Path("/var/lib/drivebay")
ENV_CONFIG = "DRIVEBAY_CONFIG"
ENV_ROOT = "DRIVEBAY_ROOT"
ENV_STORAGE_DRIVER = "DRIVEBAY_STORAGE_DRIVER"


@dataclass(frozen=True)
class Config:
    """The resolved settings. ``storage_driver`` ``None`` means auto-select.

    ``source`` is the file that was read, or ``None`` when defaults applied.
    """

    root: Path = DEFAULT_ROOT
    storage_driver: str | None = None
    storage_opts: dict[str, str] = field(default_factory=dict)
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    volume_driver: str = "local"
    network_driver: str = "bridge"
    debug: bool = False
    source: Path | None = None


def _text(where: str, key: str, value: object) -> str:
    if isinstance(value, str) and value:
        return value
    raise InvalidConfig(f"{where}: key '{key}' must be a non-empty string (got {_shown(value)})")


def _optional_text(where: str, key: str, value: object) -> str | None:
    if value is None or value == "":
        return None
    return _text(where, key, value)


def _flag(where: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidConfig(f"{where}: key '{key}' must be true or false (got {_shown(value)})")


def _options(where: str, key: str, value: object) -> dict[str, str]:
    """A ``{name: value}`` mapping, or daemon.json's list of ``"name=value"`` strings."""
    if value is None:
        return {}
    if isinstance(value, list):
        pairs = {}
        for item in value:
            if not isinstance(item, str) or "=" not in item or item.startswith("="):
                raise InvalidConfig(f"{where}: key '{key}' has entry {_shown(item)}; entries are 'name=value' strings")
            name, _, text = item.partition("=")
            pairs[name] = text
        return pairs
    if not isinstance(value, dict):
        raise InvalidConfig(f"{where}: key '{key}' must be a mapping of option names to values (got {_shown(value)})")
    options = {}
    for name, item in value.items():
        # YAML reads 3 and true unquoted; Docker's own files quote them. Both mean the same option.
        if not isinstance(name, str) or isinstance(item, dict | list) or item is None:
            raise InvalidConfig(
                f"{where}: key '{key}' option {_shown(name)} must map a name to a string, number or boolean "
                f"(got {_shown(item)})"
            )
        options[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return options


def _root(where: str, key: str, value: object, base: Path) -> Path:
    text = _text(where, key, value if not isinstance(value, Path) else str(value))
    return Path(os.path.abspath(base / os.path.expanduser(text)))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_Parser = Callable[[str, str, object], object]
KEYS: dict[str, tuple[str, _Parser]] = {
    "storage-driver": ("storage_driver", _optional_text),
    "storage-opts": ("storage_opts", _options),
    "log-driver": ("log_driver", _text),
    "log-opts": ("log_opts", _options),
    "volume-driver": ("volume_driver", _text),
    "network-driver": ("network_driver", _text),
    "debug": ("debug", _flag),
}
"""Every key but ``root`` (which resolves against a base directory): attribute and parser."""
ACCEPTED_KEYS = ("root", *KEYS)


def _apply(values: dict[str, Any], settings: Mapping[str, object], where: str, base: Path) -> None:
    for key, value in settings.items():
        if key == "root":
            values["root"] = _root(where, key, value, base)
            continue
        if key not in KEYS:
            import difflib  # only to suggest a key in an error

            close = difflib.get_close_matches(str(key), ACCEPTED_KEYS, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise InvalidConfig(f"{where}: unknown key '{key}'; {hint}accepted keys: {', '.join(ACCEPTED_KEYS)}")
        attribute, parse = KEYS[key]
        values[attribute] = parse(where, key, value)


def read_config_file(path: Path) -> dict[str, object]:
    """The mapping a config file holds; an empty file is an empty mapping."""
    # Most invocations have no config file; importing yaml costs them a tenth of a small command's start-up.
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidConfig(
            f"config file {path} cannot be read: {exc.strerror}; fix the path or the permissions"
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InvalidConfig(f"{path}:{line} is not valid YAML: {problem}; fix the syntax") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidConfig(
            f"{path}: the top level must be a mapping of keys ({', '.join(ACCEPTED_KEYS)}), not {type(data).__name__}"
        )
    return data


def load_config_from(
    path: Path | None, overrides: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Resolve the config without argparse, for executables that take no flags (the CNI plugin).

    ``path`` is the file to read; ``None`` means ``$DRIVEBAY_CONFIG``, else the
    default file if it exists. ``overrides`` use the file's key names and win
    over everything (they are what flags would say). ``environ`` defaults to
    ``os.environ``.
    """
    env = os.environ if environ is None else environ
    if path is None and env.get(ENV_CONFIG):
        path = Path(env[ENV_CONFIG])
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(os.path.abspath(path))
        # A relative root in a file means relative to the file, so a file works wherever it is used from.
        _apply(values, read_config_file(path), str(path), path.parent)
        values["source"] = path
    from_env = {
        key: env[name] for key, name in (("root", ENV_ROOT), ("storage-driver", ENV_STORAGE_DRIVER)) if env.get(name)
    }
    for key, value in from_env.items():
        _apply(
            values,
            {key: value},
            f"environment variable {ENV_ROOT if key == 'root' else ENV_STORAGE_DRIVER}",
            Path.cwd(),
        )
    flags = dict(overrides or {})
    if "storage-opts" in flags:
        # --storage-opt adds to (and overrides) the file's options instead of replacing them all.
        flags["storage-opts"] = {
            **values.get("storage_opts", {}),
            **_options("command line", "storage-opts", flags["storage-opts"]),
        }
    _apply(values, flags, "command line", Path.cwd())
    return Config(**values)


def parse_storage_opts(items: list[str]) -> dict[str, str]:
    """``--storage-opt K=V`` values as a mapping; a value without ``=`` is an error."""
    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InvalidConfig(
                f"command line: --storage-opt '{item}' is not KEY=VALUE (for example --storage-opt size=10G)"
            )
        options[name] = value
    return options


def load_config(args: argparse.Namespace) -> Config:
    """Resolve the config for the CLI from its global flags (see :func:`load_config_from`)."""
    overrides: dict[str, object] = {}
    if getattr(args, "root", None):
        overrides["root"] = str(args.root)
    if getattr(args, "storage_driver", None):
        overrides["storage-driver"] = args.storage_driver
    opts = getattr(args, "storage_opt", None)
    if opts:
        overrides["storage-opts"] = parse_storage_opts(list(opts))
    if getattr(args, "debug", False):
        overrides["debug"] = True
    config_path = getattr(args, "config", None)
    return load_config_from(Path(config_path) if config_path else None, overrides)
