"""The ``pynetlib`` command line through a real daemon process (``--host``): the same
lifecycle as on a state directory, its kernel results checked with pyroute2, the same
JSON as the local backend gives, error exit codes carried over HTTP, and audit empty
at the end."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYNETLIB_") or
            k.startswith("PYNETLIB_TEST")}
    return subprocess.run([sys.executable, "-m", "pynetlib", *args], capture_output=True,
                          text=True, timeout=120, env={**base, **(env or {})})


def error_line(p: subprocess.CompletedProcess) -> str:
    lines = [l for l in p.stderr.splitlines() if l.startswith("pynetlib: error:")]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    return lines[0]


@pytest.fixture
def daemon(tmp_path):
    """A daemon process on its own state directory and socket: (host url, state dir).
    Stopped with SIGTERM afterwards; it must exit 0."""
    state = str(tmp_path / "state")
    sockets = tempfile.mkdtemp(prefix="pnl-cli-")        # 0755: anyone may reach the socket
    os.chmod(sockets, 0o755)
    sock = os.path.join(sockets, "api.sock")
    log = open(tmp_path / "daemon.log", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "pynetlib", "daemon", "--state-dir", state,
                             "--socket", sock, "--no-plugin-socket"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while cli("--host", f"unix://{sock}", "network", "ls").returncode != 0:
            assert proc.poll() is None, open(tmp_path / "daemon.log").read()
            assert time.monotonic() < deadline, "the daemon did not come up"
            time.sleep(0.1)
        yield f"unix://{sock}", state
        # leave nothing behind, through the daemon itself
        for net in json.loads(cli("--host", f"unix://{sock}", "--format", "json", "network",
                                  "ls").stdout):
            for ep in json.loads(cli("--host", f"unix://{sock}", "--format", "json",
                                     "endpoint", "ls", net["id"]).stdout):
                if ep["container_id"]:
                    cli("--host", f"unix://{sock}", "leave", net["id"], ep["id"],
                        ep["container_id"])
                cli("--host", f"unix://{sock}", "endpoint", "rm", net["id"], ep["id"])
            cli("--host", f"unix://{sock}", "network", "rm", net["id"])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        log.close()
        socket_left = os.path.exists(sock)
        shutil.rmtree(sockets, ignore_errors=True)
    assert code == 0, open(tmp_path / "daemon.log").read()
    assert not socket_left, "the daemon left its socket behind"


def run(host: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    p = cli("--host", host, *args)
    assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    if code == 0:
        assert p.stderr == "", p.stderr
    return p


def run_json(host: str, *args: str):
    return json.loads(run(host, "--format", "json", *args).stdout)


def link(ipr, name: str):
    found = ipr.link_lookup(ifname=name)
    assert found, f"no link {name}"
    return ipr.get_links(found[0])[0]


def addrs(ipr, index: int) -> set[str]:
    return {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=index, family=2)}


def test_lifecycle_through_the_daemon(daemon, ipr_in):
    host, state = daemon
    nid = run(host, "network", "create", "dweb", "--subnet", "10.51.0.0/24", "--gateway",
              "10.51.0.254", "--ip-range", "10.51.0.32/27", "--mtu", "1450",
              "-o", "BridgeName=brcld1").stdout.strip()
    ipr = ipr_in()
    bridge = link(ipr, "brcld1")
    assert bridge.get_attr("IFLA_MTU") == 1450
    assert addrs(ipr, bridge["index"]) == {"10.51.0.254/24"}

    eid = run(host, "endpoint", "create", "dweb", "ep1", "-p", "127.0.0.1:8081:80/tcp",
              "--expose", "80").stdout.strip()
    run(host, "endpoint", "create", "dweb", "ep2", "--ip", "10.51.0.40")
    key = run(host, "join", "dweb", "ep1", "dc1", "--hostname", "dc1").stdout.strip()
    inner = ipr_in(os.path.basename(key))
    eth0 = link(inner, "eth0")
    [address] = addrs(inner, eth0["index"])
    assert ipaddress.ip_interface(address).ip in ipaddress.ip_network("10.51.0.32/27")
    assert link(ipr, "pnl" + eid[:12]).get_attr("IFLA_MASTER") == bridge["index"]

    [net] = run_json(host, "network", "ls")
    assert net["id"] == nid and {e["name"] for e in net["endpoints"]} == {"ep1", "ep2"}
    ep = run_json(host, "endpoint", "inspect", "dweb", "ep1")
    assert (ep["interfaces"][0]["address"], ep["sandbox_key"], ep["container_id"],
            ep["gateway"]) == (address, key, "dc1", "10.51.0.254")
    assert ep["port_mapping"] == [{"proto": "tcp", "port": 80, "host_port": 8081,
                                   "host_ip": "127.0.0.1"}]
    assert run_json(host, "sandbox", "inspect", "dc1") == {
        "id": "dc1", "container_id": "dc1", "key": key, "endpoints": [eid]}
    assert run(host, "sandbox", "ls").stdout.splitlines()[1].split() == ["dc1", key,
                                                                         eid[:12]]
    table = run(host, "endpoint", "ls", nid[:8]).stdout.splitlines()
    assert [r.split()[1] for r in table[1:]] == ["ep1", "ep2"]

    # the local backend on the daemon's own state directory prints the same JSON
    for command in (["network", "ls"], ["endpoint", "ls", "dweb"], ["sandbox", "ls"],
                    ["network", "inspect", "dweb"]):
        local = cli("--state-dir", state, "--format", "json", *command)
        assert local.returncode == 0, local.stderr
        assert json.loads(local.stdout) == run_json(host, *command), command

    # errors carried over HTTP keep their exit codes
    run(host, "network", "create", "bad", "--subnet", "10.0.0.0/33", code=2)
    p = run(host, "network", "inspect", "nope", code=3)
    assert "pynetlib network ls" in error_line(p)
    run(host, "network", "create", "dweb", code=4)
    run(host, "endpoint", "rm", "dweb", "ep1", code=4)
    run(host, "network", "rm", "dweb", code=4)
    run(host, "sandbox", "inspect", "ghost", code=3)

    assert run(host, "audit").stdout == "no discrepancies\n"
    run(host, "leave", "dweb", "ep1", "dc1")
    assert run_json(host, "sandbox", "ls") == []
    # the daemon tears the namespace down in the background; deleting the endpoint
    # finishes the teardown of the sandbox it left
    assert run(host, "endpoint", "rm", "dweb", "ep1").stdout == "ep1\n"
    assert not os.path.exists(key)
    run(host, "endpoint", "rm", "dweb", "ep2")
    run(host, "network", "rm", nid)
    assert not ipr.link_lookup(ifname="brcld1")
    assert run_json(host, "network", "ls") == []
    assert run_json(host, "audit") == []
    assert run(host, "reconcile").stdout == "nothing to repair\n"


def test_host_from_the_environment_and_a_stopped_daemon(daemon, tmp_path):
    host, _ = daemon
    p = cli("--format", "json", "network", "ls", env={"PYNETLIB_HOST": host})
    assert p.returncode == 0 and json.loads(p.stdout) == []
    # a socket file nobody listens on: unreachable, exit 5, the path in the message
    dead = tmp_path / "dead.sock"
    import socket as _socket

    s = _socket.socket(_socket.AF_UNIX)
    s.bind(str(dead))
    s.close()
    p = cli("--host", f"unix://{dead}", "network", "ls")
    assert p.returncode == 5 and f"{dead} (nobody is listening on it)" in error_line(p)
    p = cli("--state-dir", str(tmp_path / "x"), "daemon")
    assert p.returncode == 2 and "after `daemon`" in error_line(p)


def _cli_as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run the CLI's main in a forked child that dropped to uid/gid 65534 (the
    interpreter itself is not readable by nobody, so no exec): (exit code, stderr)."""
    from pynetlib.cli import app
    from pynetlib.cli import backend_daemon  # noqa: F401 - imported before the fork

    app.cli_parser.build()                   # imports what the parser needs (pynetlib.daemon)

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                             # the child
        code = 1
        try:
            os.close(r)
            os.dup2(w, 2)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sys.stderr = os.fdopen(2, "w", closefd=False)
            code = app.main(argv)
            sys.stderr.flush()
        except BaseException as e:                          # noqa: BLE001 - reported
            os.write(2, f"child: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        err = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), err


def test_a_user_the_socket_refuses_gets_exit_5(daemon):
    host, _ = daemon
    code, err = _cli_as_nobody(["--host", host, "network", "ls"])
    assert code == 5, err
    [line] = err.splitlines()
    assert line.startswith("pynetlib: error: cannot reach the pynetlib daemon at "
                           + host[len("unix://"):])
    assert "Permission denied" in line
