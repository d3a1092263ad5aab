"""The HTTP server of Docker's plugin protocol, on a unix socket.

Every call is ``POST /<Interface>.<Method>`` with a JSON body (or a raw tar
for ``GraphDriver.ApplyDiff``) and a JSON answer (or a raw stream for
``GraphDriver.Diff`` and ``LogDriver.ReadLogs``). Failures answer status 500
with ``{"Err": "..."}`` as Docker's client expects; IPAM calls answer
``{"Error": "..."}`` with status 200, as libnetwork's remote IPAM reads them.
drivebay's own client also reads ``ErrType``, the drivebay exception class,
so a served driver's errors keep their type through the round trip.

One thread per connection (Docker keeps connections alive and calls
concurrently). A client that disconnects mid-stream ends only its own
connection. Closing the server removes its socket only if the path still is
the socket it bound.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import socketserver
import stat
import threading
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import parse_qsl, urlsplit

from drivebay.dockerplugin.bodies import ChunkedBody, ChunkedWriter, SizedBody, buffered_writer, drain
from drivebay.errors import DrivebayError, PluginError

LOG = logging.getLogger("drivebay.dockerplugin")

CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
"""What plugins answer JSON with (Docker accepts any type)."""

MAX_JSON_BODY = 64 << 20
"""A JSON request larger than this is refused rather than read into memory."""


@dataclass
class PluginRequest:
    """One call: ``method`` is ``Interface.Method``; ``body`` is the request body as a stream."""

    method: str
    query: Mapping[str, str]
    body: BinaryIO

    def json(self) -> dict[str, Any]:
        """The body as a JSON object; an empty body (Docker sends none for some calls) is ``{}``."""
        data = self.body.read(MAX_JSON_BODY + 1)
        if len(data) > MAX_JSON_BODY:
            raise PluginError(f"the request body of {self.method} is over {MAX_JSON_BODY} bytes of JSON")
        if not data.strip():
            return {}
        try:
            value = json.loads(data)
        except ValueError as exc:
            raise PluginError(f"the request body of {self.method} is not JSON: {exc}") from exc
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise PluginError(f"the request body of {self.method} is not a JSON object")
        return value


@dataclass
class Streamed:
    """An answer written by ``write(out)`` while it is produced, sent with chunked encoding."""

    write: Callable[[BinaryIO], None]
    content_type: str = "application/octet-stream"


Answer = dict[str, Any] | Streamed
Endpoint = Callable[[PluginRequest], Answer]


class EndpointSet(Protocol):
    """The endpoints of one driver kind, serving one opened drivebay driver."""

    implements: tuple[str, ...]

    def endpoints(self) -> dict[str, Endpoint]:
        """``Interface.Method`` to the function that answers it."""
        ...

    def close(self) -> None:
        """Stop background work (log readers) before the server exits."""
        ...


ERROR_FIELDS = {"IpamDriver": "Error"}
"""Interfaces whose error field is not ``Err``; their errors are answered with status 200."""


def error_answer(method: str, exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and JSON body that report ``exc`` to the caller of ``method``."""
    interface = method.split(".", 1)[0]
    message = str(exc) if isinstance(exc, DrivebayError) else f"{type(exc).__name__}: {exc}"
    field_name = ERROR_FIELDS.get(interface, "Err")
    body: dict[str, Any] = {field_name: message or type(exc).__name__}
    if isinstance(exc, DrivebayError):
        body["ErrType"] = type(exc).__name__
    return (200 if field_name != "Err" else 500), body


@dataclass
class _Routes:
    implements: list[str] = field(default_factory=list)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PluginServer

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("%s", format % args)

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        method = url.path.lstrip("/")
        body = self._body()
        request = PluginRequest(method, dict(parse_qsl(url.query)), io.BufferedReader(body, 1 << 16))
        try:
            status, answer = self._answer(request)
            try:
                drain(body)
            except PluginError as exc:
                # The request body was cut off: its sender is gone, so nobody is left to answer.
                LOG.info("%s: %s", method, exc)
                self.close_connection = True
                return
            if isinstance(answer, Streamed):
                self._stream(method, answer)
            else:
                self._send_json(status, answer)
        except (BrokenPipeError, ConnectionResetError) as exc:
            LOG.info("%s: the client disconnected (%s)", method, exc)
            self.close_connection = True

    def _body(self) -> io.RawIOBase:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return ChunkedBody(self.rfile)  # type: ignore[arg-type]
        return SizedBody(self.rfile, int(self.headers.get("Content-Length") or 0))  # type: ignore[arg-type]

    def _answer(self, request: PluginRequest) -> tuple[int, Answer]:
        if request.method == "Plugin.Activate":
            return 200, {"Implements": list(self.server.routes.implements)}
        endpoint = self.server.routes.endpoints.get(request.method)
        if endpoint is None:
            missing = PluginError(
                f"this plugin has no endpoint {request.method}; it implements "
                f"{', '.join(self.server.routes.implements)}"
            )
            return 404, error_answer(request.method, missing)[1]
        try:
            return 200, endpoint(request)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:
            if not isinstance(exc, DrivebayError):
                LOG.error("%s failed:\n%s", request.method, traceback.format_exc())
            return error_answer(request.method, exc)

    def _send_json(self, status: int, answer: dict[str, Any]) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _stream(self, method: str, answer: Streamed) -> None:
        self.send_response(200)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunks = ChunkedWriter(self.wfile)  # type: ignore[arg-type]
        out = buffered_writer(chunks)
        try:
            answer.write(out)
            out.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:
            # The status is sent: the only way left to say "failed" is to end the body without its last chunk.
            LOG.error("%s failed while streaming:\n%s", method, traceback.format_exc())
            self.close_connection = True
            return
        chunks.finish()


class PluginServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Serves ``Plugin.Activate`` and the endpoints of ``sets`` on the unix socket at ``path``.

    A stale socket left at ``path`` by a dead server is replaced; a live one is
    refused with ``PluginError``.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, sets: list[EndpointSet]) -> None:
        self.path = path
        self.sets = sets
        self.routes = _Routes()
        for endpoint_set in sets:
            self.routes.implements.extend(endpoint_set.implements)
            self.routes.endpoints.update(endpoint_set.endpoints())
        _remove_stale_socket(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(str(path), _Handler)
        st = os.stat(path)
        self._identity = (st.st_dev, st.st_ino)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a background thread (tests, benchmarks); :meth:`close` stops it."""
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name=f"plugin-server {self.path}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, stop the endpoint sets, and remove the socket if it is still ours."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
        for endpoint_set in self.sets:
            endpoint_set.close()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self._identity:
            self.path.unlink()


def _remove_stale_socket(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise PluginError(f"{path} exists and is not a socket; remove it or choose another --socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except ConnectionRefusedError:
        path.unlink()
        return
    finally:
        probe.close()
    raise PluginError(f"another server is listening on {path}; stop it or choose another --socket")
