"""Finding a Docker plugin by name, the way dockerd does (moby ``pkg/plugins/discovery.go``).

dockerd looks, in order, for a socket ``<name>.sock`` or ``<name>/<name>.sock``
in ``/run/docker/plugins``, then for ``<name>.spec`` or ``<name>.json`` (or
the same inside a ``<name>/`` directory) in ``/etc/docker/plugins`` and
``/usr/lib/docker/plugins``. A ``.spec`` file holds one URL
(``unix:///path.sock`` or ``tcp://host:port``); a ``.json`` file holds
``{"Name", "Addr"}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from drivebay.errors import PluginError

SOCKETS_DIR = Path("/run/docker/plugins")
SPECS_DIRS = (Path("/etc/docker/plugins"), Path("/usr/lib/docker/plugins"))


@dataclass(frozen=True)
class PluginAddress:
    """Where plugin ``name`` listens: ``url`` is ``unix:///...`` or ``tcp://...``; ``source`` is the file found."""

    name: str
    url: str
    source: Path

    @property
    def unix_path(self) -> str | None:
        return self.url[len("unix://") :] if self.url.startswith("unix://") else None


def _candidates(directory: Path, name: str, suffixes: tuple[str, ...]) -> list[Path]:
    return [directory / f"{name}{suffix}" for suffix in suffixes] + [
        directory / name / f"{name}{suffix}" for suffix in suffixes
    ]


def _read_spec(path: Path, name: str) -> PluginAddress:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PluginError(f"plugin spec {path} cannot be read: {exc.strerror}; fix its permissions") from exc
    if path.suffix == ".json":
        try:
            url = str(json.loads(text)["Addr"])
        except (ValueError, KeyError, TypeError) as exc:
            raise PluginError(
                f"plugin spec {path} is not JSON with an 'Addr'; write {{\"Addr\": \"unix:///...\"}}"
            ) from exc
    else:
        url = text.strip()
    if not url.startswith(("unix://", "tcp://", "http://")):
        raise PluginError(f"plugin spec {path} holds {url!r}, not a unix:// or tcp:// address; fix the file")
    return PluginAddress(name, url, path)


def find_plugin(
    name: str, sockets_dir: Path = SOCKETS_DIR, specs_dirs: tuple[Path, ...] = SPECS_DIRS
) -> PluginAddress:
    """The address of plugin ``name``. Raises ``PluginError`` naming every place looked in."""
    if not name or "/" in name or name in (".", ".."):
        raise PluginError(f"{name!r} is not a plugin name; use the name of its socket or spec file")
    for socket_path in _candidates(sockets_dir, name, (".sock",)):
        if socket_path.exists():
            return PluginAddress(name, f"unix://{socket_path}", socket_path)
    for directory in specs_dirs:
        for spec in _candidates(directory, name, (".spec", ".json")):
            if spec.is_file():
                return _read_spec(spec, name)
    places = ", ".join(str(p) for p in (sockets_dir, *specs_dirs))
    raise PluginError(
        f"no Docker plugin named '{name}' in {places}; start it (drivebay plugin serve --name {name} ...) "
        f"or write {specs_dirs[0]}/{name}.spec with its unix:// address"
    )
