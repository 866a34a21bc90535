"""The plugin client against a real fake plugin on a unix socket: wire format, errors,
timeouts, retries, size cap."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _fake_plugin import DROP, HANG, FakePlugin, Raw  # noqa: E402

from pynetlib.drivers.remote.client import MIMETYPE, ClientSettings, PluginClient  # noqa: E402
from pynetlib.drivers.remote.discovery import PluginAddress  # noqa: E402
from pynetlib.drivers.remote.errors import (PluginCallError,  # noqa: E402
                                            PluginNotImplementedError, PluginReplyError,
                                            PluginTimeoutError, PluginUnavailableError)
from pynetlib.errors import (InternalError, NoServiceError,  # noqa: E402
                             NotImplementedByDriverError, TimeoutError)

FAST = ClientSettings(connect_timeout=0.5, call_timeout=0.6, retries=2, backoff=0.05)


@pytest.fixture
def plugin(tmp_path):
    p = FakePlugin(str(tmp_path / "plugins" / "fp.sock")).start()
    yield p
    p.stop()


def _client(path, settings=FAST) -> PluginClient:
    return PluginClient(PluginAddress("fp", "unix", path=path), settings)


def test_call_wire_format(plugin):
    c = _client(plugin.socket_path)
    assert c.call("Plugin.Activate") == {"Implements": ["NetworkDriver"]}
    c.call("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "Options": {}})
    assert plugin.calls == [("Plugin.Activate", None),
                            ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "Options": {}})]
    assert all(h["Accept"] == MIMETYPE for h in plugin.headers)


def test_err_reply_is_a_failure_with_the_text(plugin):
    plugin.on("NetworkDriver.CreateNetwork", lambda b: {"Err": "no more VLANs\x1b[31m"})
    with pytest.raises(PluginCallError) as e:
        _client(plugin.socket_path).call("NetworkDriver.CreateNetwork", {})
    assert isinstance(e.value, InternalError)
    assert "no more VLANs" in str(e.value) and "\x1b" not in str(e.value)
    assert "'fp'" in str(e.value) and "NetworkDriver.CreateNetwork" in str(e.value)


def test_non_2xx_carries_the_body_text(plugin):
    plugin.on("NetworkDriver.Leave", lambda b: Raw(500, b"backend on fire"))
    with pytest.raises(PluginCallError, match="HTTP 500: backend on fire"):
        _client(plugin.socket_path).call("NetworkDriver.Leave", {})
    plugin.on("NetworkDriver.Leave", lambda b: Raw(400, b'{"Err": "bad network id"}'))
    with pytest.raises(PluginCallError, match="HTTP 400: bad network id"):
        _client(plugin.socket_path).call("NetworkDriver.Leave", {})


def test_404_is_not_implemented(plugin):
    with pytest.raises(PluginNotImplementedError) as e:
        _client(plugin.socket_path).call("NetworkDriver.DiscoverNew", {})
    assert isinstance(e.value, NotImplementedByDriverError)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b"\xff\xfe", b"NaN",
                                  b'{"Err": 5}', b"[" * 100000 + b"]" * 100000, b""])
def test_malformed_replies(plugin, body):
    plugin.on("NetworkDriver.Join", lambda b: Raw(200, body))
    with pytest.raises(PluginReplyError):
        _client(plugin.socket_path).call("NetworkDriver.Join", {})


@pytest.mark.parametrize("send_length", [True, False])
def test_huge_reply_is_refused(plugin, send_length):
    big = b'{"Value": "' + b"x" * (2 << 20) + b'"}'
    plugin.on("NetworkDriver.EndpointOperInfo", lambda b: Raw(200, big, send_length=send_length))
    with pytest.raises(PluginReplyError, match="larger than"):
        _client(plugin.socket_path).call("NetworkDriver.EndpointOperInfo", {})


def test_reply_just_under_the_cap_is_fine(tmp_path):
    p = FakePlugin(str(tmp_path / "cap.sock")).start()
    try:
        s = ClientSettings(call_timeout=2, max_reply_bytes=4096)
        body = b'{"Value": {"k": "' + b"y" * 3000 + b'"}}'
        p.on("NetworkDriver.EndpointOperInfo", lambda b: Raw(200, body, send_length=False))
        assert len(_client(p.socket_path, s).call("NetworkDriver.EndpointOperInfo")["Value"]["k"]) == 3000
    finally:
        p.stop()


def test_no_reply_times_out_in_bounded_time(plugin):
    plugin.on("NetworkDriver.Join", lambda b: HANG)
    t0 = time.monotonic()
    with pytest.raises(PluginTimeoutError) as e:
        _client(plugin.socket_path).call("NetworkDriver.Join", {})
    elapsed = time.monotonic() - t0
    assert isinstance(e.value, TimeoutError)
    assert elapsed < FAST.call_timeout + 1.5
    assert plugin.methods() == ["NetworkDriver.Join"]      # never repeated


def test_a_slow_drip_reply_gets_the_same_deadline(tmp_path):
    """A server that sends a byte at a time never resets the call's deadline."""
    path = str(tmp_path / "drip.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    stop = threading.Event()

    def serve():
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            for ch in b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 1000:
                if stop.wait(0.05):
                    return
                try:
                    conn.sendall(bytes([ch]))
                except OSError:
                    return

    t = threading.Thread(target=serve)
    t.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(PluginTimeoutError):
            _client(path).call("NetworkDriver.Join", {})
        assert time.monotonic() - t0 < FAST.call_timeout + 1.5
    finally:
        stop.set()
        t.join()
        srv.close()


def test_dropped_connection_after_sending_is_not_retried(plugin):
    plugin.on("NetworkDriver.CreateEndpoint", lambda b: DROP)
    with pytest.raises((PluginReplyError, PluginUnavailableError)):
        _client(plugin.socket_path).call("NetworkDriver.CreateEndpoint", {"EndpointID": "e"})
    assert plugin.methods() == ["NetworkDriver.CreateEndpoint"]


def test_socket_gone_is_retried_then_no_service(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(PluginUnavailableError) as e:
        _client(str(tmp_path / "gone.sock")).call("Plugin.Activate")
    assert isinstance(e.value, NoServiceError)
    assert "after 3 attempts" in str(e.value)
    assert 0.1 <= time.monotonic() - t0 < 2.0    # backoff 0.05 + 0.1, bounded


def test_connection_refused_is_retried_then_no_service(tmp_path):
    path = str(tmp_path / "refusing.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)                                  # bound, never listening: ECONNREFUSED
    try:
        with pytest.raises(PluginUnavailableError, match="after 3 attempts"):
            _client(path).call("Plugin.Activate")
    finally:
        s.close()


def test_a_plugin_that_comes_back_is_reached_by_a_retry(tmp_path):
    path = str(tmp_path / "late.sock")
    p = FakePlugin(path)
    timer = threading.Timer(0.08, p.start)
    timer.start()
    try:
        s = ClientSettings(connect_timeout=0.5, call_timeout=1, retries=5, backoff=0.05)
        assert _client(path, s).call("Plugin.Activate")["Implements"] == ["NetworkDriver"]
    finally:
        timer.join()
        p.stop()


def test_settings_are_validated():
    from pynetlib.errors import BadRequestError

    for kw in ({"connect_timeout": 0}, {"call_timeout": "5"}, {"retries": -1},
               {"retries": True}, {"max_reply_bytes": 10}):
        with pytest.raises(BadRequestError):
            ClientSettings(**kw)


def test_loopback_tcp_plugin():
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            data = b'{"Implements": ["NetworkDriver"]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    t.start()
    try:
        addr = PluginAddress("tcpplug", "tcp", host="127.0.0.1", port=srv.server_address[1])
        assert PluginClient(addr, FAST).call("Plugin.Activate") == {
            "Implements": ["NetworkDriver"]}
    finally:
        srv.shutdown()
        srv.server_close()
        t.join()
