"""The daemon serves the Docker plugin protocol on its plugin socket, on the same
controller as the HTTP API, with the same socket rules."""

from __future__ import annotations

import os
import stat
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _daemon_helpers import (cleanup_state, connect_as, jbody, raw, rmtree,  # noqa: E402
                             socket_dir, start_daemon)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

PLUGIN_JSON = "application/vnd.docker.plugins.v1+json"


@pytest.fixture
def daemon(tmp_path):
    sockets = socket_dir()
    plugin = os.path.join(sockets, "plugins", "pynetlib.sock")
    d = start_daemon(str(tmp_path / "state"), os.path.join(sockets, "api.sock"),
                     "--plugin-socket", plugin)
    d.plugin_path = plugin
    yield d
    assert d.stop() == 0, d.log_text()
    assert not os.path.exists(d.socket_path) and not os.path.exists(plugin)
    assert cleanup_state(d.state_dir) == []
    rmtree(sockets)


def _call(d, method: str, body: dict | None = None) -> tuple[int, dict]:
    status, reply, headers = raw(d.plugin_path, "POST", f"/{method}",
                                 jbody(body if body is not None else {}),
                                 {"Content-Type": PLUGIN_JSON})
    assert headers["Content-Type"].startswith(PLUGIN_JSON)
    return status, reply


def test_plugin_socket_answers_activate_and_shares_the_controller(daemon):
    st = os.lstat(daemon.plugin_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == 0
    assert _call(daemon, "Plugin.Activate") == (200, {"Implements": ["NetworkDriver",
                                                                     "IpamDriver"]})
    status, reply = _call(daemon, "NetworkDriver.NoSuchMethod")
    assert status == 404 and "Err" in reply

    # A Docker engine creates a network through the plugin; the HTTP API sees it.
    status, pool = _call(daemon, "IpamDriver.RequestPool", {
        "AddressSpace": "LocalDefault", "Pool": "10.50.0.0/24", "SubPool": "",
        "Options": {}, "V6": False})
    assert status == 200, pool
    status, gw = _call(daemon, "IpamDriver.RequestAddress", {
        "PoolID": pool["PoolID"], "Address": "",
        "Options": {"RequestAddressType": "com.docker.network.gateway"}})
    assert status == 200, gw
    docker_nid = "d0" * 32
    status, reply = _call(daemon, "NetworkDriver.CreateNetwork", {
        "NetworkID": docker_nid, "Options": {"com.docker.network.generic": {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool["Pool"],
                      "Gateway": gw["Address"]}], "IPv6Data": []})
    assert (status, reply) == (200, {})
    names = [n["name"] for n in daemon.client.networks()]
    assert len(names) == 1 and names[0].startswith("docker-d0d0")
    assert _call(daemon, "NetworkDriver.DeleteNetwork", {"NetworkID": docker_nid}) == (200, {})
    assert daemon.client.networks() == []
    assert _call(daemon, "IpamDriver.ReleaseAddress", {
        "PoolID": pool["PoolID"], "Address": gw["Address"].split("/")[0]})[0] == 200
    assert _call(daemon, "IpamDriver.ReleasePool", {"PoolID": pool["PoolID"]})[0] == 200

    plugin_lines = [e for e in daemon.logs()
                    if e["event"] == "request" and e["listener"] == "plugin"]
    assert [e["path"] for e in plugin_lines][:2] == ["/Plugin.Activate",
                                                     "/NetworkDriver.NoSuchMethod"]
    assert all(e["peer_uid"] == 0 for e in plugin_lines)


def test_plugin_socket_refuses_non_root_peers(daemon):
    assert connect_as(daemon.plugin_path, 65534, 65534)["connect"] == "EACCES"
    out = connect_as(daemon.plugin_path, 65534, 65534, keep_dac_override=True)
    assert out["connect"] == "ok" and out["status"] == 403
    assert "permission denied" in out["body"]["Err"]
    refused = [e for e in daemon.logs() if e["event"] == "refused"]
    assert [(e["listener"], e["uid"]) for e in refused] == [("plugin", 65534)]
