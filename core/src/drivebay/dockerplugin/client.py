"""The client side of Docker's plugin protocol, with dockerd's retry behaviour.

As moby's ``pkg/plugins`` client: a call that cannot connect is retried
after 1, 2, 4, 8, 16 s... until the next wait would end 30 s after the first
try, then fails; a call that connected is never retried. Activation
(``Plugin.Activate``) is one such call, made once per client, and checks
that the plugin implements the interface asked for. Calls have no overall
time limit unless a kind sets one (Docker's volume proxy waits 2 minutes for
Create, Remove and Mount and 1 minute for the rest).

Answers that are not status 200, or that carry ``Err`` (``Error`` for IPAM),
raise: a drivebay exception of the class the server named in ``ErrType``
when a drivebay server answered, else ``PluginError`` with the plugin's
message. Connections are kept alive, one per thread.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from drivebay import errors
from drivebay.dockerplugin.discovery import PluginAddress, find_plugin
from drivebay.errors import DrivebayError, DriverNotSupported, PluginError

ACCEPT = "application/vnd.docker.plugins.v1.2+json"
"""The media type dockerd's client sends in ``Accept``."""

RETRY_SECONDS = 30.0
"""moby's ``defaultTimeOut``: how long a call keeps retrying to connect."""

BLOCK = 1 << 20
"""Bytes per chunk of a streamed upload."""


def backoff(retries: int, limit: float = RETRY_SECONDS) -> float:
    """Seconds to wait before retry number ``retries + 1``: 1, 2, 4, ... capped at ``limit``."""
    wait = 1.0
    while wait < limit and retries > 0:
        wait *= 2
        retries -= 1
    return min(wait, limit)


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("plugin.moby.localhost", timeout=timeout, blocksize=BLOCK)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def remote_error(plugin: str, method: str, body: Any, status: int) -> DrivebayError:
    """The exception for a failed call: the server's own drivebay class when it named one."""
    message = ""
    err_type = ""
    if isinstance(body, dict):
        message = str(body.get("Err") or body.get("Error") or "")
        err_type = str(body.get("ErrType") or "")
    elif isinstance(body, bytes | str):
        message = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message = message.strip() or f"HTTP status {status}"
    cls = getattr(errors, err_type, None) if err_type else None
    if isinstance(cls, type) and issubclass(cls, DrivebayError):
        if cls is DriverNotSupported:
            return DriverNotSupported(f"docker-plugin:{plugin}", message)
        if cls.__init__ is DrivebayError.__init__:
            return cls(message)
    return PluginError(f"Docker plugin '{plugin}' failed {method}: {message}")


class PluginClient:
    """Calls plugin ``name`` (found by :func:`find_plugin` unless ``address`` is given).

    ``retry_seconds`` is how long to keep trying to connect (moby: 30 s);
    ``timeouts`` maps a method to its time limit in seconds.
    """

    def __init__(
        self,
        name: str,
        *,
        address: PluginAddress | None = None,
        retry_seconds: float = RETRY_SECONDS,
        timeouts: dict[str, float] | None = None,
        finder: Callable[[str], PluginAddress] = find_plugin,
    ) -> None:
        self.name = name
        self._address = address
        self._finder = finder
        self.retry_seconds = retry_seconds
        self.timeouts = dict(timeouts or {})
        self._local = threading.local()
        self._activated: list[str] | None = None
        self._lock = threading.Lock()

    # -- connections -------------------------------------------------------

    @property
    def address(self) -> PluginAddress:
        if self._address is None:
            self._address = self._finder(self.name)
        return self._address

    def _new_connection(self, timeout: float | None) -> http.client.HTTPConnection:
        path = self.address.unix_path
        if path is not None:
            return _UnixHTTPConnection(path, timeout)
        url = urlsplit(self.address.url)
        return http.client.HTTPConnection(url.hostname or "localhost", url.port, timeout=timeout, blocksize=BLOCK)

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_connection(timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop_connection(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def close(self) -> None:
        """Close this thread's connection."""
        self._drop_connection()

    def _send(self, method: str, body: bytes | BinaryIO) -> http.client.HTTPResponse:
        """Send one request and return the response (status not checked), retrying failed connects.

        http.client sends a stream ``body`` with chunked encoding, in :data:`BLOCK` pieces.
        """
        start, retries = time.monotonic(), 0
        headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
        while True:
            conn = self._connection(self.timeouts.get(method.split("?", 1)[0]))
            reused = conn.sock is not None
            try:
                if conn.sock is None:
                    conn.connect()
                conn.request("POST", f"/{method}", body=body, headers=headers)
                return conn.getresponse()
            except (ConnectionRefusedError, FileNotFoundError) as exc:
                self._drop_connection()
                wait = backoff(retries, self.retry_seconds)
                if wait + (time.monotonic() - start) >= self.retry_seconds:
                    raise PluginError(
                        f"cannot connect to Docker plugin '{self.name}' at {self.address.url}: {exc.strerror or exc}; "
                        "is it running?"
                    ) from exc
                retries += 1
                time.sleep(wait)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop_connection()
                # A kept-alive connection the server closed meanwhile; only a fresh one is worth retrying,
                # and only when nothing of a streamed body was consumed.
                if reused and isinstance(body, bytes):
                    continue
                raise PluginError(f"Docker plugin '{self.name}' closed the connection during {method}") from exc
            except OSError as exc:
                self._drop_connection()
                raise PluginError(f"calling {method} of Docker plugin '{self.name}' failed: {exc}") from exc

    # -- calls ----------------------------------------------------------------

    def activate(self) -> list[str]:
        """``Plugin.Activate`` once; returns what the plugin implements."""
        with self._lock:
            if self._activated is None:
                answer = self._json(self._send("Plugin.Activate", b""), "Plugin.Activate")
                self._activated = [str(x) for x in answer.get("Implements") or []]
            return self._activated

    def require(self, interface: str) -> None:
        """Activate and check the plugin implements ``interface`` (``VolumeDriver``...)."""
        implements = self.activate()
        if interface not in implements:
            raise PluginError(
                f"Docker plugin '{self.name}' implements {', '.join(implements) or 'nothing'}, not {interface}; "
                "choose a plugin of this kind"
            )

    def _json(self, response: http.client.HTTPResponse, method: str) -> dict[str, Any]:
        try:
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._drop_connection()
            raise PluginError(f"reading the answer of Docker plugin '{self.name}' to {method} failed: {exc}") from exc
        try:
            body = json.loads(data) if data.strip() else {}
        except ValueError:
            body = data
        if response.status != 200 or not isinstance(body, dict) or body.get("Err") or body.get("Error"):
            raise remote_error(self.name, method, body, response.status)
        return body

    def call(self, method: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``method`` with a JSON body; returns the JSON answer."""
        body = json.dumps(args or {}).encode()
        return self._json(self._send(method, body), method)

    @contextmanager
    def stream(self, method: str, args: dict[str, Any] | None = None) -> Iterator[BinaryIO]:
        """Call ``method`` and yield the answer body as a stream (Diff, ReadLogs)."""
        response = self._send(method, json.dumps(args or {}).encode())
        if response.status != 200:
            self._json(response, method)
        try:
            yield response
        finally:
            if not response.isclosed():
                # Unread data is still on the connection: it cannot carry another request.
                self._drop_connection()

    def copy_stream(self, method: str, args: dict[str, Any], out: BinaryIO) -> None:
        """Call ``method`` and copy its streamed answer to ``out``."""
        with self.stream(method, args) as body:
            try:
                shutil.copyfileobj(body, out, BLOCK)
            except http.client.IncompleteRead as exc:
                raise PluginError(f"Docker plugin '{self.name}' cut its answer to {method} short") from exc

    def send_file(self, method: str, data: BinaryIO) -> dict[str, Any]:
        """Call ``method`` with ``data`` as a chunked body; returns the JSON answer."""
        return self._json(self._send(method, data), method.split("?", 1)[0])
