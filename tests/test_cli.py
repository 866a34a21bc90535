"""The ``pynetlib`` command line on a state directory: real ``python -m pynetlib``
processes inside the test run's namespaces, their results checked in the kernel with
pyroute2 and nft, their JSON parsed, their exit codes and error lines checked."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys

import pytest

import pynetlib
from pynetlib.cli import values
from pynetlib.cli.failures import UsageError

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

NETWORK_KEYS = {"name", "id", "type", "options", "endpoints"}
ENDPOINT_KEYS = {"name", "id", "network", "network_id", "interfaces", "gateway",
                 "gateway_ipv6", "sandbox_key", "container_id", "port_mapping"}
SANDBOX_KEYS = {"id", "container_id", "key", "endpoints"}


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """One ``python -m pynetlib`` process; PYNETLIB_* variables only as given."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PYNETLIB_") or
            k.startswith("PYNETLIB_TEST")}
    return subprocess.run([sys.executable, "-m", "pynetlib", *args], capture_output=True,
                          text=True, timeout=120, env={**base, **(env or {})})


@pytest.fixture
def state(tmp_path):
    """A state directory; afterwards everything on it is left, deleted and drained."""
    sd = str(tmp_path / "state")
    yield sd
    if not os.path.exists(sd):
        return
    c = pynetlib.Controller(sd, host_routes=lambda: [])
    try:
        for net in c.networks():
            for ep in net.endpoints():
                if ep.joined_container:
                    ep.leave(ep.joined_container)
                ep.delete()
            net.delete()
    finally:
        c.close()


def run(state_dir: str, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    p = cli("--state-dir", state_dir, *args)
    assert p.returncode == code, (args, p.returncode, p.stdout, p.stderr)
    if code == 0:
        assert p.stderr == "", p.stderr
    return p


def run_json(state_dir: str, *args: str):
    return json.loads(run(state_dir, "--format", "json", *args).stdout)


def error_line(p: subprocess.CompletedProcess) -> str:
    """The single error line (no traceback)."""
    lines = [l for l in p.stderr.splitlines() if l.startswith("pynetlib: error:")]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    return lines[0]


def link(ipr, name: str):
    found = ipr.link_lookup(ifname=name)
    assert found, f"no link {name}"
    return ipr.get_links(found[0])[0]


def addrs(ipr, index: int) -> set[str]:
    return {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in ipr.get_addr(index=index, family=2)}


# -- --help everywhere --------------------------------------------------------------------

COMMANDS = [[], ["network"], ["network", "create"], ["network", "ls"], ["network", "inspect"],
            ["network", "rm"], ["endpoint"], ["endpoint", "create"], ["endpoint", "ls"],
            ["endpoint", "inspect"], ["endpoint", "rm"], ["join"], ["leave"], ["sandbox"],
            ["sandbox", "ls"], ["sandbox", "inspect"], ["audit"], ["reconcile"], ["daemon"],
            ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "pynetlib")
def test_help_of_every_command_exits_0(command):
    p = cli(*command, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("usage: pynetlib" + "".join(" " + c for c in command))
    assert p.stderr == ""


def test_command_without_subcommand_is_a_usage_error():
    for command in ([], ["network"], ["endpoint"], ["sandbox"]):
        p = cli(*command)
        assert p.returncode == 2, (command, p.stderr)
        assert "pynetlib: error:" in p.stderr and "Traceback" not in p.stderr


# -- value parsers (in process: pure functions) ------------------------------------------

def test_driver_option_values_are_typed():
    assert values.driver_options(["a=true", "b=FALSE", "c=42", "d=-3", "e=x=y", "f=",
                                  "g=1.5"]) == {"a": True, "b": False, "c": 42, "d": -3,
                                                "e": "x=y", "f": "", "g": "1.5"}
    for bad in (["noequals"], ["=v"], ["a=1", "a=2"]):
        with pytest.raises(UsageError):
            values.driver_options(bad)


def test_publish_specs():
    assert values.publish("8080:80") == {"proto": "tcp", "port": 80, "host_port": 8080,
                                         "host_ip": None}
    assert values.publish("127.0.0.1:53:5353/udp") == {
        "proto": "udp", "port": 5353, "host_port": 53, "host_ip": "127.0.0.1"}
    assert values.publish("[::1]:8443:443/tcp")["host_ip"] == "::1"
    assert values.publish("10.0.0.1::80")["host_port"] == 0
    for bad in ("80", "a:80", "1:2:3:4", "8080:0", "8080:80/icmp", "70000:80", ":8080:80",
                "[::1:80:80"):
        with pytest.raises(UsageError):
            values.publish(bad)
    assert values.expose("53/udp") == {"proto": "udp", "port": 53}
    assert values.extra_host("db:fd00::5") == {"name": "db", "address": "fd00::5"}


# -- the lifecycle, local --------------------------------------------------------------------

def test_lifecycle_on_a_state_directory(state, ipr_in):
    nid = run(state, "network", "create", "web", "--subnet", "10.41.0.0/24",
              "-o", "BridgeName=brcli1").stdout.strip()
    assert len(nid) == 64
    ipr = ipr_in()
    bridge = link(ipr, "brcli1")
    assert bridge.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "bridge"
    assert "10.41.0.1/24" in addrs(ipr, bridge["index"])

    table = run(state, "network", "ls").stdout.splitlines()
    assert table[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "ENDPOINTS"]
    assert table[1].split() == [nid[:12], "web", "bridge", "0"]

    eid = run(state, "endpoint", "create", "web", "ep1", "-p", "8080:80",
              "--expose", "53/udp").stdout.strip()
    key = run(state, "join", "web", "ep1", "c1", "--hostname", "one").stdout.strip()
    assert key.startswith("/run/netns/") and os.path.exists(key)
    inner = ipr_in(os.path.basename(key))
    eth0 = link(inner, "eth0")
    [address] = addrs(inner, eth0["index"])
    assert ipaddress.ip_interface(address).network == ipaddress.ip_network("10.41.0.0/24")
    assert address != "10.41.0.1/24"
    routes = inner.get_default_routes(family=2)
    assert [r.get_attr("RTA_GATEWAY") for r in routes] == ["10.41.0.1"]
    host_veth = link(ipr, "pnl" + eid[:12])
    assert host_veth.get_attr("IFLA_MASTER") == bridge["index"]

    # JSON: the HTTP API's shapes
    [net] = run_json(state, "network", "ls")
    assert set(net) == NETWORK_KEYS and net["id"] == nid
    assert net["endpoints"] == [{"name": "ep1", "id": eid, "network": "web"}]
    assert net["options"] == {"com.docker.network.generic": {"AddressIPv4": "10.41.0.1/24",
                                                             "BridgeName": "brcli1"}}
    [ep] = run_json(state, "endpoint", "ls", "web")
    assert set(ep) == ENDPOINT_KEYS
    assert ep["interfaces"][0]["address"] == address
    assert ep["interfaces"][0]["mac_address"] == eth0.get_attr("IFLA_ADDRESS")
    assert (ep["gateway"], ep["sandbox_key"], ep["container_id"]) == ("10.41.0.1", key, "c1")
    assert ep["port_mapping"] == [{"proto": "tcp", "port": 80, "host_port": 8080,
                                   "host_ip": None}]
    assert run_json(state, "endpoint", "inspect", "web", eid[:10]) == ep
    [sb] = run_json(state, "sandbox", "ls")
    assert sb == {"id": "c1", "container_id": "c1", "key": key, "endpoints": [eid]}
    assert run_json(state, "sandbox", "inspect", "c1") == sb

    # a network by name, full id or unique prefix; filters
    for ref in ("web", nid, nid[:6]):
        [got] = json.loads(run(state, "network", "inspect", ref).stdout)
        assert got["id"] == nid
    assert [n["name"] for n in run_json(state, "network", "ls", "--name", "web")] == ["web"]
    assert run_json(state, "network", "ls", "--name", "nope") == []
    assert [n["id"] for n in run_json(state, "network", "ls", "--partial-id", nid[:5])] == [nid]

    ls = run(state, "endpoint", "ls", "web").stdout.splitlines()
    assert ls[1].split() == [eid[:12], "ep1", address, "-", ep["interfaces"][0]["mac_address"],
                             "c1", "8080->80/tcp"]
    assert run(state, "audit").stdout == "no discrepancies\n"
    assert run_json(state, "audit") == []

    assert run(state, "leave", "web", "ep1", "c1").stdout == ""
    assert not os.path.exists(key)
    assert run_json(state, "sandbox", "ls") == []
    assert run(state, "endpoint", "rm", "web", "ep1").stdout == "ep1\n"
    assert run(state, "network", "rm", "web").stdout == "web\n"
    assert not ipr.link_lookup(ifname="brcli1")
    assert not ipr.link_lookup(ifname="pnl" + eid[:12])
    assert run_json(state, "network", "ls") == []


def test_network_created_with_addressing_options_has_them(state, ipr_in):
    nid = run(state, "network", "create", "props", "--subnet", "10.42.0.0/24", "--gateway",
              "10.42.0.254", "--ip-range", "10.42.0.64/26", "--mtu", "1400", "--internal",
              "-o", "BridgeName=brcli2", "-o", "EnableICC=true").stdout.strip()
    ipr = ipr_in()
    bridge = link(ipr, "brcli2")
    assert bridge.get_attr("IFLA_MTU") == 1400
    assert addrs(ipr, bridge["index"]) == {"10.42.0.254/24"}
    rng = ipaddress.ip_network("10.42.0.64/26")
    keys = []
    for i in range(3):
        run(state, "endpoint", "create", "props", f"e{i}")
        keys.append(run(state, "join", "props", f"e{i}", f"p{i}").stdout.strip())
    for key in keys:
        inner = ipr_in(os.path.basename(key))
        eth0 = link(inner, "eth0")
        assert eth0.get_attr("IFLA_MTU") == 1400
        [a] = addrs(inner, eth0["index"])
        iface = ipaddress.ip_interface(a)
        assert iface.ip in rng and iface.network == ipaddress.ip_network("10.42.0.0/24")
        assert [r.get_attr("RTA_GATEWAY") for r in inner.get_default_routes(family=2)] == \
            ["10.42.0.254"]
    # internal: the network's forward rules drop both directions, nothing is accepted,
    # and there is no masquerade for its subnet
    rules = json.loads(subprocess.run(["nft", "-j", "list", "table", "inet", "pynetlib"],
                                      capture_output=True, text=True, check=True).stdout)
    mine = [r["rule"] for r in rules["nftables"] if "rule" in r and
            r["rule"].get("comment", "").find(nid[:12]) >= 0]
    verdicts = [e for r in mine if r["chain"] == "networks" for e in r["expr"]
                if set(e) & {"accept", "drop"}]
    assert verdicts and all("drop" in v for v in verdicts), mine
    assert not [r for r in mine if r["chain"] == "postrouting"]
    # the gateway outside the range is not a discrepancy; a static address outside it neither
    run(state, "endpoint", "create", "props", "static", "--ip", "10.42.0.9")
    assert run(state, "audit").stdout == "no discrepancies\n"
    [net] = run_json(state, "network", "inspect", "props")
    assert net["options"]["com.docker.network.generic"] == {
        "AddressIPv4": "10.42.0.254/24", "FixedCIDR": "10.42.0.64/26", "Mtu": 1400,
        "Internal": True, "BridgeName": "brcli2", "EnableICC": True}


def test_ipv6_network(state, ipr_in):
    run(state, "network", "create", "six", "--subnet", "10.47.0.0/24", "--subnet-v6",
        "fd00:47::/64", "-o", "BridgeName=brcli6")
    run(state, "endpoint", "create", "six", "ep")
    key = run(state, "join", "six", "ep", "c6").stdout.strip()
    ipr = ipr_in()
    bridge = link(ipr, "brcli6")
    v6 = {f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
          for a in ipr.get_addr(index=bridge["index"], family=10)}
    assert "fd00:47::1/64" in v6
    inner = ipr_in(os.path.basename(key))
    eth0 = link(inner, "eth0")
    inner_v6 = [ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}")
                for a in inner.get_addr(index=eth0["index"], family=10)]
    assert any(i.network == ipaddress.ip_network("fd00:47::/64") for i in inner_v6)
    assert [r.get_attr("RTA_GATEWAY") for r in inner.get_default_routes(family=10)] == \
        ["fd00:47::1"]
    [ep] = run_json(state, "endpoint", "ls", "six")
    assert ipaddress.ip_interface(ep["interfaces"][0]["address_ipv6"]) in inner_v6
    assert ep["gateway_ipv6"] == "fd00:47::1"
    assert run(state, "audit").stdout == "no discrepancies\n"


def test_join_a_namespace_the_runtime_made_with_static_addresses(state, make_netns, ipr_in):
    run(state, "network", "create", "rt", "--subnet", "10.43.0.0/24", "-o",
        "BridgeName=brcli3")
    run(state, "endpoint", "create", "rt", "ep", "--ip", "10.43.0.77", "--mac",
        "02:42:0a:2b:00:4d")
    ns = make_netns("rt")
    path = f"/run/netns/{ns}"
    key = run(state, "join", "rt", "ep", "ctr-1", "--netns", path, "--hostname", "box",
              "--domainname", "example.org", "--dns", "192.0.2.53", "--dns-search", "corp",
              "--add-host", "db:10.9.9.9").stdout.strip()
    assert key == path
    inner = ipr_in(ns)
    eth0 = link(inner, "eth0")
    assert addrs(inner, eth0["index"]) == {"10.43.0.77/24"}
    assert eth0.get_attr("IFLA_ADDRESS") == "02:42:0a:2b:00:4d"
    files = os.path.join(state, "containers")
    hosts = open(os.path.join(files, "ctr-1.hosts")).read()
    resolv = open(os.path.join(files, "ctr-1.resolv.conf")).read()
    assert "10.9.9.9\tdb" in hosts.replace(" ", "\t") or "10.9.9.9 db" in hosts
    assert "box" in hosts and "nameserver 192.0.2.53" in resolv and "corp" in resolv
    run(state, "leave", "rt", "ep", "ctr-1")
    assert os.path.exists(path)             # the runtime's namespace is never deleted
    assert not inner.link_lookup(ifname="eth0")


# -- exit codes and error lines ---------------------------------------------------------------

def test_exit_codes_and_error_lines(state, tmp_path):
    p = run(state, "network", "create", "x", "--subnet", "10.0.0.0/33", code=2)
    assert "subnet" in error_line(p) and "pynetlib network create --help" in p.stderr
    run(state, "network", "create", "x", "--gateway", "10.0.0.1", code=2)
    run(state, "network", "create", "x", "--mtu", "10", "--subnet", "10.44.0.0/24", code=2)
    run(state, "network", "create", "bad/name", code=2)
    run(state, "network", "create", "x", "-o", "nonsense", code=2)
    run(state, "network", "create", "x", "-o", "NoSuchBridgeOption=1", code=2)
    run(state, "network", "create", "x", "--mtu", "abc", code=2)        # argparse
    assert run_json(state, "network", "ls") == []                        # nothing changed

    p = run(state, "network", "inspect", "nope", code=3)
    assert error_line(p) == ("pynetlib: error: network nope not found; list the networks "
                             "with `pynetlib network ls`")
    run(state, "network", "rm", "nope", code=3)
    run(state, "endpoint", "ls", "nope", code=3)
    p = run(state, "sandbox", "inspect", "ghost", code=3)
    assert "pynetlib sandbox ls" in error_line(p)
    run(state, "network", "create", "-d", "nosuchdriver", "y", code=3)

    run(state, "network", "create", "dup", "--subnet", "10.45.0.0/24", "-o",
        "BridgeName=brcli4")
    p = run(state, "network", "create", "dup", code=4)
    assert "already exists" in error_line(p) and "pynetlib network rm" in p.stderr
    p = run(state, "endpoint", "inspect", "dup", "nope", code=3)
    assert "pynetlib endpoint ls NET" in error_line(p)
    run(state, "endpoint", "create", "dup", "ep")
    run(state, "endpoint", "create", "dup", "ep", code=4)
    run(state, "endpoint", "create", "dup", "ep2", "--ip", "10.99.0.5", code=2)
    run(state, "join", "dup", "ep", "c9")
    p = run(state, "endpoint", "rm", "dup", "ep", code=4)
    assert "pynetlib leave NET EP CONTAINER_ID" in error_line(p)
    p = run(state, "network", "rm", "dup", code=4)
    assert "endpoint rm" in error_line(p)
    run(state, "join", "dup", "ep", "c10", code=4)
    run(state, "leave", "dup", "ep", "c10", code=2)     # not the container joined
    run(state, "join", "dup", "ep", "bad id!", code=2)
    run(state, "leave", "dup", "ep", "c9")

    p = cli("--host", f"unix://{tmp_path}/no.sock", "network", "ls")
    assert p.returncode == 5
    line = error_line(p)
    assert f"{tmp_path}/no.sock" in line and "pynetlib daemon" in line and "--state-dir" in line
    p = cli("network", "ls", env={"PYNETLIB_HOST": f"unix://{tmp_path}/no.sock"})
    assert p.returncode == 5
    p = cli("--host", "unix:///x.sock", "--state-dir", state, "network", "ls")
    assert p.returncode == 2 and "exclude each other" in error_line(p)
    p = cli("--host", "tcp://127.0.0.1:1", "network", "ls")
    assert p.returncode == 2
    p = cli("network", "ls", env={"PYNETLIB_HOST": "unix:///x.sock",
                                  "PYNETLIB_STATE_DIR": state})
    assert p.returncode == 2
    p = cli("network", "ls", "--bogus")
    assert p.returncode == 2 and "pynetlib: error:" in p.stderr

    # the environment names the state directory; options also after the command
    p = cli("network", "ls", "--format", "json", env={"PYNETLIB_STATE_DIR": state})
    assert p.returncode == 0 and [n["name"] for n in json.loads(p.stdout)] == ["dup"]

    # an internal error: one line, a traceback only with --debug
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    p = cli("--state-dir", str(not_a_dir), "network", "ls")
    assert p.returncode == 1 and str(not_a_dir) in error_line(p)
    p = cli("--debug", "--state-dir", str(not_a_dir), "network", "ls")
    assert p.returncode == 1 and "Traceback" in p.stderr


def test_ambiguous_prefix_is_bad_input_and_partial_failures_report_each(state):
    ids = []
    for i in range(17):      # 17 ids, 16 hex digits: two share their first digit
        ids.append(run(state, "network", "create", f"n{i}", "-d", "null").stdout.strip())
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    p = run(state, "network", "inspect", shared, code=2)
    assert "ambiguous" in error_line(p)
    run(state, "network", "inspect", "", code=2)
    p = run(state, "network", "rm", "n0", "ghost", "n1", code=3)
    assert p.stdout.split() == ["n0", "n1"]
    assert "network ghost not found" in error_line(p)
    left = {n["name"] for n in run_json(state, "network", "ls")}
    assert left == {f"n{i}" for i in range(2, 17)}


def test_audit_finds_damage_and_reconcile_repairs_it(state, ipr_in):
    run(state, "network", "create", "dmg", "--subnet", "10.46.0.0/24", "-o",
        "BridgeName=brcli5")
    ipr = ipr_in()
    ipr.link("del", index=link(ipr, "brcli5")["index"])       # someone removes our bridge
    p = run(state, "audit", code=1)
    assert "bridge brcli5 is missing" in p.stdout
    assert "pynetlib reconcile" in error_line(p)
    p = cli("--state-dir", state, "--format", "json", "audit")
    assert p.returncode == 1 and any("brcli5" in d for d in json.loads(p.stdout))
    repairs = run(state, "reconcile").stdout
    assert repairs.strip() and repairs != "nothing to repair\n"
    assert ipr.link_lookup(ifname="brcli5")
    assert run(state, "audit").stdout == "no discrepancies\n"
    assert run(state, "reconcile").stdout == "nothing to repair\n"
    assert run_json(state, "reconcile") == []


def test_internal_errors_are_one_line_and_roll_back(state):
    p = cli("--state-dir", state, "network", "create", "boom", "--subnet", "10.48.0.0/24",
            env={"PYNETLIB_FAILPOINTS": "network.create.before_kernel=raise*1"})
    assert p.returncode == 1
    assert "failpoint network.create.before_kernel" in error_line(p)
    assert run_json(state, "network", "ls") == []           # rolled back


def test_an_unexpected_exception_is_a_short_message(state, monkeypatch, capsys):
    from pynetlib.cli import app, commands

    def broken(args, backend):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(commands, "network_ls", broken)
    assert app.main(["--state-dir", state, "network", "ls"]) == 1
    err = capsys.readouterr().err
    assert err == ("pynetlib: error: internal error (ZeroDivisionError: division by zero); "
                   "run again with --debug for the traceback\n")
    assert app.main(["--state-dir", state, "--debug", "network", "ls"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err


def test_demo_still_runs():
    p = cli("demo", "--containers", "1")
    assert p.returncode == 2 and "--containers must be from 2 to 200" in error_line(p)
    p = cli("demo", "--containers", "2")
    assert p.returncode == 0, p.stderr
    assert "TCP round trips from demo0 to the others: 1/1 answered" in p.stdout
    assert "left behind: devices none, namespaces none" in p.stdout
