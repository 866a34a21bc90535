"""Who may talk to the daemon: socket owner and mode, the peer-credential check, stale
and foreign socket files, and the TCP listener that only exists with TLS client
authentication."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _daemon_helpers import (cleanup_state, connect_as, daemon_argv, rmtree,  # noqa: E402
                             socket_dir, start_daemon)

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

NOBODY = 65534
GROUP = 4242                 # a group no test user is in unless the test puts it there


@pytest.fixture
def sockets():
    d = socket_dir()
    yield d
    rmtree(d)


@pytest.fixture
def run_daemon(tmp_path, sockets):
    """Start daemons for one test; each is stopped (and must stop cleanly) afterwards."""
    started = []

    def run(*extra: str, name: str = "api.sock", **kw):
        d = start_daemon(str(tmp_path / f"state{len(started)}"), os.path.join(sockets, name),
                         *extra, **kw)
        started.append(d)
        return d

    yield run
    for d in started:
        assert d.stop() == 0, d.log_text()
        assert not os.path.exists(d.socket_path)
        assert cleanup_state(d.state_dir) == []


def _refusals(d) -> list[dict]:
    return [e for e in d.logs() if e["event"] == "refused"]


# -- socket owner and mode -------------------------------------------------------------

def test_default_socket_is_root_0600_in_a_new_0755_directory(run_daemon, sockets):
    nested = os.path.join(sockets, "run", "pynetlib")
    d = run_daemon(name="run/pynetlib/pynetlib.sock")
    st = os.lstat(d.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (0, 0)
    assert stat.S_IMODE(os.stat(nested).st_mode) == 0o755
    assert d.client.ping() == "OK"


def test_non_root_peer_cannot_connect_to_a_0600_socket(run_daemon):
    d = run_daemon()
    out = connect_as(d.socket_path, NOBODY, NOBODY)
    assert out["uid"] == NOBODY
    assert out["connect"] == "EACCES"


def test_peer_check_refuses_a_non_root_peer_that_got_past_the_mode(run_daemon):
    # CAP_DAC_OVERRIDE lets the child connect despite mode 0600: the peer-credential
    # check is what refuses it.
    d = run_daemon()
    out = connect_as(d.socket_path, NOBODY, NOBODY, keep_dac_override=True)
    assert out["connect"] == "ok"
    assert out["status"] == 403
    assert out["body"]["category"] == "Forbidden"
    assert "uid 65534" in out["body"]["message"]
    refused = _refusals(d)
    assert len(refused) == 1 and refused[0]["uid"] == NOBODY
    req = [e for e in d.logs() if e["event"] == "request" and e["status"] == 403]
    assert req and req[0]["peer_uid"] == NOBODY


def test_group_socket_is_0660_and_admits_members_only(run_daemon):
    d = run_daemon("--socket-group", str(GROUP))
    st = os.lstat(d.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660
    assert (st.st_uid, st.st_gid) == (0, GROUP)

    member = connect_as(d.socket_path, NOBODY, NOBODY, groups=(GROUP,))
    assert member["connect"] == "ok" and member["status"] == 200, member
    assert member["body"] == []
    primary = connect_as(d.socket_path, NOBODY, GROUP)
    assert primary["connect"] == "ok" and primary["status"] == 200, primary

    outsider = connect_as(d.socket_path, NOBODY, NOBODY)
    assert outsider["connect"] == "EACCES"
    # An outsider that bypasses the file mode is refused by the peer check.
    bypass = connect_as(d.socket_path, NOBODY, NOBODY, keep_dac_override=True)
    assert bypass["connect"] == "ok" and bypass["status"] == 403, bypass
    assert f"member of group {GROUP}" in bypass["body"]["message"]
    assert [e["uid"] for e in _refusals(d)] == [NOBODY]


# -- socket files that are already there ---------------------------------------------

def test_a_stale_socket_file_is_replaced(run_daemon, sockets):
    path = os.path.join(sockets, "api.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()                                # a socket file nobody listens on
    d = run_daemon()
    assert d.client.ping() == "OK"


def _refused_to_start(tmp_path, socket_path, *extra) -> tuple[int, list[dict], str]:
    out = subprocess.run(daemon_argv(str(tmp_path / "state"), socket_path, *extra),
                         capture_output=True, text=True, timeout=60)
    lines = [json.loads(l) for l in out.stderr.splitlines() if l.startswith("{")]
    return out.returncode, lines, out.stderr


def test_a_socket_someone_listens_on_is_left_alone(tmp_path, sockets):
    path = os.path.join(sockets, "api.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    try:
        code, lines, _ = _refused_to_start(tmp_path, path)
        assert code == 1
        assert "already listens" in lines[-1]["message"]
        assert os.path.exists(path)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(path)                  # still the original listener's
        probe.close()
    finally:
        s.close()


def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path, sockets):
    path = os.path.join(sockets, "api.sock")
    with open(path, "w") as f:
        f.write("precious")
    code, lines, _ = _refused_to_start(tmp_path, path)
    assert code == 1 and "is not a socket" in lines[-1]["message"]
    with open(path) as f:
        assert f.read() == "precious"


# -- TCP only with TLS client authentication -----------------------------------------

@pytest.mark.parametrize("extra, needle", [
    (["--tcp", "127.0.0.1:2377"], "give --tls-cert, --tls-key, --tls-client-ca"),
    (["--tcp", "127.0.0.1:2377", "--tls-cert", "/etc/hostname"], "give --tls-key"),
    (["--tls-cert", "/etc/hostname"], "only go with --tcp"),
    (["--tcp", "127.0.0.1:2377", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent",
      "--tls-client-ca", "/nonexistent"], "not a readable file"),
    (["--workers", "0"], "--workers"),
    (["--netns-pool-size", "-1"], "--netns-pool-size"),
    (["--netns-pool-size", "5000"], "--netns-pool-size"),
])
def test_refuses_to_start_without_the_whole_tls_trio(tmp_path, sockets, extra, needle):
    path = os.path.join(sockets, "api.sock")
    code, _, err = _refused_to_start(tmp_path, path, *extra)
    assert code == 2, err
    assert needle in err
    assert not os.path.exists(path)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, and a client certificate, all signed by
    the CA; and a second CA's client certificate that the daemon must refuse."""
    d = tmp_path_factory.mktemp("pki")
    p = {k: str(d / k) for k in ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem",
                                 "cli.key", "cli.csr", "cli.pem", "ext", "evil.key",
                                 "evil.pem")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=pynetlib test CA", "-keyout", p["ca.key"], "-out", p["ca.pem"])
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=someone else", "-keyout", p["evil.key"], "-out", p["evil.pem"])
    with open(p["ext"], "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    for who, cn in (("srv", "127.0.0.1"), ("cli", "operator")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", p[f"{who}.key"], "-out", p[f"{who}.csr"])
        _openssl("x509", "-req", "-in", p[f"{who}.csr"], "-CA", p["ca.pem"],
                 "-CAkey", p["ca.key"], "-CAcreateserial", "-days", "2",
                 "-extfile", p["ext"], "-out", p[f"{who}.pem"])
    return p


def _tls_get(port: int, pki: dict, cert: str | None, key: str | None) -> tuple[int, object]:
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    if cert:
        ctx.load_cert_chain(cert, key)
    with urllib.request.urlopen(f"https://127.0.0.1:{port}/networks", context=ctx,
                                timeout=30) as r:
        return r.status, json.loads(r.read())


def test_tcp_listener_requires_a_client_certificate(run_daemon, pki):
    port = 23750
    d = run_daemon("--tcp", f"127.0.0.1:{port}", "--tls-cert", pki["srv.pem"],
                   "--tls-key", pki["srv.key"], "--tls-client-ca", pki["ca.pem"])
    assert _tls_get(port, pki, pki["cli.pem"], pki["cli.key"]) == (200, [])
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _tls_get(port, pki, None, None)                      # no client certificate
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        _tls_get(port, pki, pki["evil.pem"], pki["evil.key"])  # signed by another CA
    with pytest.raises((ConnectionError, OSError)):                # plain HTTP
        urllib.request.urlopen(f"http://127.0.0.1:{port}/networks", timeout=30).read()
    served = [e for e in d.logs() if e["event"] == "request" and e["transport"] == "tcp"]
    assert [(e["status"], e["peer_cert"]) for e in served] == [(200, "commonName=operator")]
    assert d.client.ping() == "OK"                              # the unix socket too
