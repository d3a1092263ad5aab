"""json-file's ``log-opts``, with Docker's names, units and checks."""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from drivebay.errors import InvalidConfig
from drivebay.hookspecs.log import LogInfo
from drivebay.units import parse_size_option

KNOWN_OPTIONS = ("max-size", "max-file", "compress", "labels", "labels-regex", "env", "env-regex", "tag")
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_TAG_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


@dataclass(frozen=True)
class JsonFileOptions:
    """Parsed options: ``max_size`` in bytes (``None``: never rotate), ``max_file`` files kept in all."""

    max_size: int | None = None
    max_file: int = 1
    compress: bool = False


def _go_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidConfig(f"log-opt {key}={value!r} is not a boolean; use true or false")


def check_known(options: Mapping[str, str]) -> None:
    """Raise ``InvalidConfig`` naming the first option json-file does not know."""
    for key in options:
        if key not in KNOWN_OPTIONS:
            raise InvalidConfig(
                f"unknown log opt '{key}' for json-file log driver; known options: {', '.join(KNOWN_OPTIONS)}"
            )


def parse_options(options: Mapping[str, str]) -> JsonFileOptions:
    """Check every option and parse the rotation ones, as moby's jsonfilelog.New does."""
    check_known(options)
    max_size = None
    if "max-size" in options:
        max_size = parse_size_option(options["max-size"], "log-opt max-size", binary=False)
    max_file = 1
    if "max-file" in options:
        try:
            max_file = int(options["max-file"])
        except ValueError as exc:
            raise InvalidConfig(f"log-opt max-file={options['max-file']!r} is not a whole number") from exc
        if max_file < 1:
            raise InvalidConfig("log-opt max-file cannot be less than 1")
    compress = _go_bool("compress", options["compress"]) if "compress" in options else False
    if compress and (max_file < 2 or max_size is None):
        raise InvalidConfig("log-opt compress cannot be true when max-file is less than 2 or max-size is not set")
    for key in ("labels-regex", "env-regex"):
        if key in options:
            try:
                re.compile(options[key])
            except re.error as exc:
                raise InvalidConfig(f"log-opt {key}={options[key]!r} is not a valid regular expression: {exc}") from exc
    return JsonFileOptions(max_size=max_size, max_file=max_file, compress=compress)


def render_tag(template: str, info: LogInfo) -> str:
    """Docker's ``tag`` template, limited to its fields: ``{{.Name}}``, ``{{.ID}}``, ``{{.ImageName}}``..."""
    fields = {
        "ID": info.container_id[:12],
        "FullID": info.container_id,
        "Name": info.container_name.lstrip("/"),
        "ImageID": info.image_id.removeprefix("sha256:")[:12],
        "ImageFullID": info.image_id,
        "ImageName": info.image_name,
        "DaemonName": info.daemon_name,
    }

    def field(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "Hostname":
            return socket.gethostname()
        if name not in fields:
            raise InvalidConfig(
                f"log-opt tag uses unknown field '.{name}'; use one of: {', '.join(sorted([*fields, 'Hostname']))}"
            )
        return fields[name]

    rendered = _TAG_FIELD.sub(field, template)
    if "{{" in rendered:
        raise InvalidConfig(f"log-opt tag={template!r}: only {{{{.Field}}}} placeholders are supported")
    return rendered


def extra_attributes(info: LogInfo) -> dict[str, str]:
    """The ``attrs`` of every record: chosen labels and env variables, and the tag (moby's ExtraAttributes)."""
    options = info.options
    attrs: dict[str, str] = {}
    for name in filter(None, options.get("labels", "").split(",")):
        if name in info.labels:
            attrs[name] = info.labels[name]
    if options.get("labels-regex"):
        pattern = re.compile(options["labels-regex"])
        attrs.update({k: v for k, v in info.labels.items() if pattern.search(k)})
    for name in filter(None, options.get("env", "").split(",")):
        if name in info.env:
            attrs[name] = info.env[name]
    if options.get("env-regex"):
        pattern = re.compile(options["env-regex"])
        attrs.update({k: v for k, v in info.env.items() if pattern.search(k)})
    if options.get("tag"):
        attrs["tag"] = render_tag(options["tag"], info)
    return attrs
