"""Docker's plugin protocol served by drivebay, checked with real HTTP over unix sockets.

Requests are written the way dockerd writes them (JSON bodies, a chunked tar
for ApplyDiff) and answers are checked field by field against moby's types.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from plugin_fixtures import PluginFactory, ServedPlugin, needs_root

from drivebay.dockerplugin.client import PluginClient, backoff, remote_error
from drivebay.dockerplugin.discovery import PluginAddress, find_plugin
from drivebay.dockerplugin.logentry import (
    PartialMetadata,
    WireLogEntry,
    decode_entry,
    encode_entry,
    read_frame,
    write_frame,
)
from drivebay.dockerplugin.server import PluginServer, error_answer
from drivebay.errors import InvalidConfig, LayerNotFound, PluginError, VolumeNotFound


class UnixHTTP(http.client.HTTPConnection):
    """A bare HTTP connection to a unix socket, to send exactly what a test wants."""

    def __init__(self, path: Path) -> None:
        super().__init__("plugin.moby.localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self.path))


def post(plugin: ServedPlugin, method: str, body: object = None) -> tuple[int, dict[str, object]]:
    conn = UnixHTTP(plugin.socket)
    try:
        conn.request("POST", f"/{method}", body=b"" if body is None else json.dumps(body).encode(),
                     headers={"Accept": "application/vnd.docker.plugins.v1.2+json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


# -- activation and errors ------------------------------------------------------------


def test_activate_answers_what_each_kind_implements(serve_plugin: PluginFactory) -> None:
    assert serve_plugin(("volume", "local")).client.activate() == ["VolumeDriver"]
    assert serve_plugin(("graph", "vfs")).client.activate() == ["GraphDriver"]
    assert serve_plugin(("log", "json-file")).client.activate() == ["LogDriver"]


def test_errors_are_err_with_status_500_and_the_drivebay_class(serve_plugin: PluginFactory) -> None:
    plugin = serve_plugin(("volume", "local"))
    status, body = post(plugin, "VolumeDriver.Get", {"Name": "missing"})
    assert status == 500
    assert body["ErrType"] == "VolumeNotFound" and "missing" in str(body["Err"])
    with pytest.raises(VolumeNotFound, match="missing"):
        plugin.client.call("VolumeDriver.Get", {"Name": "missing"})


def test_unknown_endpoint_is_404_naming_what_is_implemented(serve_plugin: PluginFactory) -> None:
    status, body = post(serve_plugin(("volume", "local")), "GraphDriver.Get", {"ID": "x"})
    assert status == 404 and "VolumeDriver" in str(body["Err"])


def test_ipam_errors_use_the_error_field() -> None:
    assert error_answer("IpamDriver.RequestPool", InvalidConfig("no IPv6 pools")) == (
        200, {"Error": "no IPv6 pools", "ErrType": "InvalidConfig"}
    )
    assert error_answer("NetworkDriver.Join", InvalidConfig("bad")) == (500, {"Err": "bad", "ErrType": "InvalidConfig"})


def test_remote_errors_keep_drivebay_classes_and_name_foreign_plugins() -> None:
    assert isinstance(remote_error("p", "GraphDriver.Get", {"Err": "gone", "ErrType": "LayerNotFound"}, 500),
                      LayerNotFound)
    foreign = remote_error("p", "VolumeDriver.Mount", {"Err": "device busy"}, 500)
    assert type(foreign) is PluginError and "'p'" in str(foreign) and "device busy" in str(foreign)


# -- volume ---------------------------------------------------------------------------


@needs_root
def test_volume_endpoints_answer_dockers_json(serve_plugin: PluginFactory) -> None:
    plugin = serve_plugin(("volume", "local"))
    assert post(plugin, "VolumeDriver.Capabilities") == (200, {"Capabilities": {"Scope": "local"}})
    assert post(plugin, "VolumeDriver.Create", {"Name": "vol1", "Opts": {}}) == (200, {})
    mountpoint = str(plugin.root / "volumes" / "vol1" / "_data")
    status, got = post(plugin, "VolumeDriver.Get", {"Name": "vol1"})
    assert status == 200 and set(got["Volume"]) == {"Name", "Mountpoint", "CreatedAt", "Status"}  # type: ignore[arg-type]
    assert got["Volume"]["Mountpoint"] == mountpoint  # type: ignore[index]
    assert post(plugin, "VolumeDriver.Mount", {"Name": "vol1", "ID": "c1"}) == (200, {"Mountpoint": mountpoint})
    assert post(plugin, "VolumeDriver.Path", {"Name": "vol1"}) == (200, {"Mountpoint": mountpoint})
    status, listed = post(plugin, "VolumeDriver.List", {})
    assert [v["Name"] for v in listed["Volumes"]] == ["vol1"]  # type: ignore[attr-defined]
    status, busy = post(plugin, "VolumeDriver.Remove", {"Name": "vol1"})
    assert status == 500 and busy["ErrType"] == "VolumeInUse"
    assert post(plugin, "VolumeDriver.Unmount", {"Name": "vol1", "ID": "c1"}) == (200, {})
    assert post(plugin, "VolumeDriver.Remove", {"Name": "vol1"}) == (200, {})
    assert not Path(mountpoint).exists()


@needs_root
def test_concurrent_calls_are_served_in_parallel(serve_plugin: PluginFactory) -> None:
    plugin = serve_plugin(("volume", "local"))
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        client = PluginClient(plugin.name, address=plugin.client.address, retry_seconds=0)
        try:
            for i in range(5):
                client.call("VolumeDriver.Create", {"Name": f"v{n}-{i}", "Opts": {}})
                client.call("VolumeDriver.List")
        except BaseException as exc:
            failures.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(plugin.client.call("VolumeDriver.List")["Volumes"]) == 40


# -- graph ----------------------------------------------------------------------------


def chunked_apply(plugin: ServedPlugin, layer_id: str, parent: str, data: bytes, piece: int) -> dict[str, object]:
    """ApplyDiff as dockerd sends it: the tar in many chunks, ``id`` and ``parent`` in the query."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(plugin.socket))
    with sock, sock.makefile("rwb") as stream:
        stream.write(
            f"POST /GraphDriver.ApplyDiff?id={layer_id}&parent={parent} HTTP/1.1\r\nHost: plugin\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for start in range(0, len(data), piece):
            chunk = data[start : start + piece]
            stream.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        stream.write(b"0\r\n\r\n")
        stream.flush()
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200
        return dict(json.loads(response.read()))


@needs_root
@pytest.mark.parametrize("driver", ["vfs", "overlay2"])
def test_graph_endpoints_round_trip_layers(serve_plugin: PluginFactory, driver: str) -> None:
    plugin = serve_plugin(("graph", driver))
    call = plugin.client.call
    assert call("GraphDriver.Init", {"Home": "/var/lib/docker/x", "Opts": [], "UIDMaps": None, "GIDMaps": None}) == {}
    caps = call("GraphDriver.Capabilities")
    assert caps["Capabilities"] == {"ReproducesExactDiffs": False}
    base = layer_tar({"etc/motd": b"hello\n", "bin/tool": b"x" * 70_000})
    assert call("GraphDriver.Create", {"ID": "base", "Parent": "", "MountLabel": ""}) == {}
    assert chunked_apply(plugin, "base", "", base, 1000) == {"Size": 70_006}
    assert call("GraphDriver.Create", {"ID": "child", "Parent": "base"}) == {}
    child = layer_tar({"etc/.wh.motd": b"", "new": b"n"})
    assert chunked_apply(plugin, "child", "base", child, 333)["Size"] == 1
    assert call("GraphDriver.Exists", {"ID": "child"}) == {"Exists": True}
    assert call("GraphDriver.Exists", {"ID": "nope"}) == {"Exists": False}
    changes = call("GraphDriver.Changes", {"ID": "child", "Parent": "base"})["Changes"]
    assert changes == [{"Path": "/etc", "Kind": 0}, {"Path": "/etc/motd", "Kind": 2}, {"Path": "/new", "Kind": 1}]
    assert call("GraphDriver.DiffSize", {"ID": "child", "Parent": "base"}) == {"Size": 1}
    out = io.BytesIO()
    plugin.client.copy_stream("GraphDriver.Diff", {"ID": "child", "Parent": "base"}, out)
    assert tar_names(out.getvalue()) == ["etc", "etc/.wh.motd", "new"]
    directory = Path(str(call("GraphDriver.Get", {"ID": "child", "MountLabel": ""})["Dir"]))
    assert (directory / "bin" / "tool").stat().st_size == 70_000 and not (directory / "etc" / "motd").exists()
    assert call("GraphDriver.Put", {"ID": "child"}) == {}
    assert call("GraphDriver.Put", {"ID": "child"}) == {}, "Put of an unmounted layer succeeds, as in Docker"
    assert isinstance(call("GraphDriver.Status")["Status"], list)
    assert isinstance(call("GraphDriver.GetMetadata", {"ID": "base"})["Metadata"], dict)
    with pytest.raises(LayerNotFound):
        call("GraphDriver.Get", {"ID": "nope"})
    assert call("GraphDriver.CreateReadWrite", {"ID": "rw", "Parent": "child"}) == {}
    for layer_id in ("rw", "child", "base"):
        assert call("GraphDriver.Remove", {"ID": layer_id}) == {}
    assert call("GraphDriver.Cleanup") == {}


@needs_root
def test_a_client_leaving_mid_diff_does_not_hurt_the_server(serve_plugin: PluginFactory) -> None:
    plugin = serve_plugin(("graph", "vfs"))
    call = plugin.client.call
    call("GraphDriver.Create", {"ID": "big", "Parent": ""})
    big = layer_tar({f"f{i}": os.urandom(1 << 20) for i in range(24)})
    assert chunked_apply(plugin, "big", "", big, 1 << 16)["Size"] == 24 << 20
    for _ in range(3):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(plugin.socket))
        body = b'{"ID": "big"}'
        sock.sendall(b"POST /GraphDriver.Diff HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.close()
    out = io.BytesIO()
    plugin.client.copy_stream("GraphDriver.Diff", {"ID": "big"}, out)
    assert len(tar_names(out.getvalue())) == 24
    assert call("GraphDriver.Remove", {"ID": "big"}) == {}


@needs_root
def test_a_client_leaving_mid_apply_leaves_no_layer(
    serve_plugin: PluginFactory, wait_for: Callable[[Callable[[], bool], float, str], None]
) -> None:
    plugin = serve_plugin(("graph", "vfs"))
    plugin.client.call("GraphDriver.Create", {"ID": "cut", "Parent": ""})
    data = layer_tar({f"f{i}": os.urandom(1 << 16) for i in range(64)})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(plugin.socket))
    sock.sendall(
        b"POST /GraphDriver.ApplyDiff?id=cut&parent= HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    half = data[: len(data) // 2]
    sock.sendall(b"%x\r\n%s\r\n" % (len(half), half))
    sock.close()
    wait_for(lambda: plugin.client.call("GraphDriver.Exists", {"ID": "cut"}) == {"Exists": False}, 30,
             "the half-applied layer to be removed")
    assert plugin.client.call("GraphDriver.Create", {"ID": "cut", "Parent": ""}) == {}


# -- sockets --------------------------------------------------------------------------


def test_a_stale_socket_is_replaced_and_a_live_one_refused(serve_plugin: PluginFactory, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))
    leftover.close()
    server = PluginServer(stale, [])
    server.close()
    live = serve_plugin(("volume", "local"))
    with pytest.raises(PluginError, match="another server is listening"):
        PluginServer(live.socket, [])
    assert live.client.activate() == ["VolumeDriver"]


def test_close_removes_only_its_own_socket(tmp_path: Path) -> None:
    path = tmp_path / "p.sock"
    server = PluginServer(path, [])
    server.start()
    path.unlink()
    path.write_text("someone else's file")
    server.close()
    assert path.read_text() == "someone else's file"
    second = PluginServer(tmp_path / "q.sock", [])
    second.close()
    assert not (tmp_path / "q.sock").exists()


# -- client: retries and discovery --------------------------------------------------------


def test_backoff_doubles_from_one_second_up_to_thirty() -> None:
    assert [backoff(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_the_client_retries_until_the_plugin_listens(tmp_path: Path) -> None:
    path = tmp_path / "late.sock"
    servers: list[PluginServer] = []

    def start_late() -> None:
        time.sleep(1.5)
        server = PluginServer(path, [])
        server.start()
        servers.append(server)

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        client = PluginClient("late", address=PluginAddress("late", f"unix://{path}", path))
        assert client.activate() == []
        client.close()
    finally:
        starter.join()
        for server in servers:
            server.close()
    impatient = PluginClient("gone", address=PluginAddress("gone", f"unix://{path}", path), retry_seconds=0)
    with pytest.raises(PluginError, match="cannot connect to Docker plugin 'gone'"):
        impatient.activate()


def test_discovery_looks_where_dockerd_looks(tmp_path: Path) -> None:
    sockets, etc, lib = tmp_path / "run", tmp_path / "etc", tmp_path / "lib"
    for directory in (sockets, etc, lib):
        directory.mkdir()
    dirs = {"sockets_dir": sockets, "specs_dirs": (etc, lib)}
    (lib / "a.json").write_text(json.dumps({"Name": "a", "Addr": "unix:///x/a.sock"}))
    assert find_plugin("a", **dirs).url == "unix:///x/a.sock"  # type: ignore[arg-type]
    (etc / "a.spec").write_text("unix:///y/a.sock\n")
    assert find_plugin("a", **dirs).url == "unix:///y/a.sock"  # type: ignore[arg-type]
    (sockets / "a").mkdir()
    (sockets / "a" / "a.sock").touch()
    assert find_plugin("a", **dirs).url == f"unix://{sockets}/a/a.sock"  # type: ignore[arg-type]
    (etc / "b.spec").write_text("ftp://nowhere")
    with pytest.raises(PluginError, match="not a unix:// or tcp://"):
        find_plugin("b", **dirs)  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="no Docker plugin named 'c'"):
        find_plugin("c", **dirs)  # type: ignore[arg-type]


# -- log entries ------------------------------------------------------------------------


def test_log_entries_encode_as_protobuf_does() -> None:
    entry = WireLogEntry("stdout", 1, b"hi")
    assert encode_entry(entry) == b"\x0a\x06stdout\x10\x01\x1a\x02hi"
    split = WireLogEntry("stderr", -5, b"part", True, PartialMetadata(last=False, id="abc", ordinal=2))
    assert decode_entry(encode_entry(split)) == split
    assert decode_entry(encode_entry(split)).continues
    unknown_field = b"\x30\x07" + encode_entry(entry)
    assert decode_entry(unknown_field) == entry


def test_log_frames_are_length_prefixed_and_truncation_is_an_error() -> None:
    stream = io.BytesIO()
    write_frame(stream, WireLogEntry("stdout", 10, b"one"))
    write_frame(stream, WireLogEntry("stdout", 11, b"two"))
    data = stream.getvalue()
    assert data[:4] == len(encode_entry(WireLogEntry("stdout", 10, b"one"))).to_bytes(4, "big")
    reader = io.BytesIO(data)
    assert [read_frame(reader), read_frame(reader), read_frame(reader)] == [
        WireLogEntry("stdout", 10, b"one"), WireLogEntry("stdout", 11, b"two"), None
    ]
    truncated = io.BytesIO(data[:-2])
    assert read_frame(truncated) == WireLogEntry("stdout", 10, b"one")
    with pytest.raises(PluginError, match="ended 2 bytes into"):
        read_frame(truncated)


def test_log_endpoints_read_a_fifo_and_stream_logs_back(serve_plugin: PluginFactory, tmp_path: Path) -> None:
    plugin = serve_plugin(("log", "json-file"))
    assert plugin.client.call("LogDriver.Capabilities") == {"Cap": {"ReadLogs": True}}
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    info = {"ContainerID": "c" * 64, "ContainerName": "/web", "Config": {}, "ContainerEnv": ["A=1"]}
    assert plugin.client.call("LogDriver.StartLogging", {"File": str(fifo), "Info": info}) == {}
    with open(fifo, "wb") as writer:
        write_frame(writer, WireLogEntry("stdout", 1_000, b"hello"))
        write_frame(writer, WireLogEntry("stdout", 2_000, b"ab", True, PartialMetadata(False, "p1", 1)))
        write_frame(writer, WireLogEntry("stdout", 2_000, b"cd", True, PartialMetadata(True, "p1", 2)))
        write_frame(writer, WireLogEntry("stderr", 3_000, b"oops"))
        assert plugin.client.call("LogDriver.StopLogging", {"File": str(fifo)}) == {}
    read = {"Info": info, "Config": {"Since": "0001-01-01T00:00:00Z", "Until": "0001-01-01T00:00:00Z",
                                     "Tail": -1, "Follow": False}}
    with plugin.client.stream("LogDriver.ReadLogs", read) as body:
        entries = []
        while (entry := read_frame(body)) is not None:
            entries.append((entry.source, entry.line))
    assert entries == [("stdout", b"hello\n"), ("stdout", b"abcd\n"), ("stderr", b"oops\n")]
    records = (plugin.root / "containers" / ("c" * 64) / f"{'c' * 64}-json.log").read_text().splitlines()
    assert [json.loads(r)["log"] for r in records] == ["hello\n", "ab", "cd\n", "oops\n"]
