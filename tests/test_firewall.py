"""BridgeFirewall and the libnftables binding, on the real kernel.

Everything runs in namespaces the test makes. nft state is read back with the ``nft``
CLI (``nft -j list table ...`` through ``ip netns exec``), independent of the binding;
behaviour is checked with real traffic (ping, TCP) between namespaces.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import threading
import time

import pytest

from pynetlib.testing import in_sandbox
from pynetlib.drivers.bridge.firewall import BridgeFirewall, parse_tag
from pynetlib.drivers.bridge.nftables import FirewallError, Nft
from pynetlib.errors import BadRequestError, InternalError, InvalidIDError, InvalidNameError
from pynetlib.kernel import Netns
from pynetlib.types import PortBinding

pytestmark = pytest.mark.skipif(
    not in_sandbox(), reason="needs root; the run isolates itself with unshare")

NA = "a1" * 32
NB = "b2" * 32
E1 = "e1" * 32
E2 = "e2" * 32


# --- helpers ---------------------------------------------------------------------------

def sh(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=check,
                          capture_output=True, text=True, timeout=20)


def nft_json(ns: str, family: str, table: str) -> dict | None:
    """The table as the nft CLI lists it (with handles), None when it does not exist."""
    r = sh(ns, "nft", "-j", "-a", "list", "table", family, table, check=False)
    if r.returncode != 0:
        assert "No such file or directory" in r.stderr, r.stderr
        return None
    return json.loads(r.stdout)


def nft_tables(ns: str) -> list[tuple[str, str]]:
    out = json.loads(sh(ns, "nft", "-j", "list", "tables").stdout)
    return sorted((i["table"]["family"], i["table"]["name"]) for i in out["nftables"]
                  if "table" in i)


def ours(ns: str) -> tuple:
    return nft_json(ns, "inet", "pynetlib"), nft_json(ns, "bridge", "pynetlib")


def rules(listing: dict | None, chain: str | None = None) -> list[dict]:
    return [i["rule"] for i in (listing or {}).get("nftables", [])
            if "rule" in i and (chain is None or i["rule"]["chain"] == chain)]


def ping(ns: str, addr: str) -> bool:
    return sh(ns, "ping", "-c1", "-W1", "-q", addr, check=False).returncode == 0


_SERVER = r"""
import socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(8)
print("ready", flush=True)
while True:
    c, peer = s.accept()
    c.sendall((sys.argv[3] + " " + peer[0]).encode())
    c.close()
"""

_CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    print(c.recv(200).decode())
except OSError as e:
    print("ERR", type(e).__name__)
"""


class Server:
    """A TCP server in a namespace answering '<name> <peer address>'."""

    def __init__(self, ns: str, addr: str, port: int, name: str) -> None:
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", _SERVER,
                                   addr, str(port), name],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        assert line.strip() == "ready", self.p.stderr.read()

    def stop(self) -> None:
        self.p.kill()
        self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


def connect(ns: str, addr: str, port: int) -> str:
    return sh(ns, sys.executable, "-c", _CLIENT, addr, str(port)).stdout.strip()


@pytest.fixture
def host(make_netns):
    name = make_netns("fwh")
    yield name


@pytest.fixture
def fw(host):
    f = BridgeFirewall(Nft.for_netns(host))
    yield f
    f.destroy()
    f.nft.close()
    assert ours(host) == (None, None)


@pytest.fixture
def topo(make_netns, host):
    """host netns with bridges bra (10.77.1.1/24) and brb (10.77.2.1/24), containers
    c1, c2 on bra and c3 on brb, and an outside netns on 198.51.100.0/24."""
    t = {"host": host}
    run = lambda *a: subprocess.run(["ip", "-n", host, *a], check=True)  # noqa: E731
    sh(host, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for br, net in (("bra", "10.77.1.1/24"), ("brb", "10.77.2.1/24")):
        run("link", "add", br, "type", "bridge")
        run("addr", "add", net, "dev", br)
        run("link", "set", br, "up")
    for cname, br, addr, gw in (("c1", "bra", "10.77.1.2/24", "10.77.1.1"),
                                ("c2", "bra", "10.77.1.3/24", "10.77.1.1"),
                                ("c3", "brb", "10.77.2.2/24", "10.77.2.1")):
        ns = make_netns(cname)
        t[cname] = ns
        veth = "v" + cname
        run("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("link", "set", veth, "master", br, "up")
        # hairpin on the port, as libnetwork sets it without the userland proxy: with
        # br_netfilter a DNAT back to the sender is bridged out of its own port
        run("link", "set", veth, "type", "bridge_slave", "hairpin", "on")
        subprocess.run(["ip", "-n", ns, "addr", "add", addr, "dev", "eth0"], check=True)
        subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        subprocess.run(["ip", "-n", ns, "route", "add", "default", "via", gw], check=True)
    out = make_netns("out")
    t["out"] = out
    run("link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", out)
    run("addr", "add", "198.51.100.1/24", "dev", "vout")
    run("link", "set", "vout", "up")
    subprocess.run(["ip", "-n", out, "addr", "add", "198.51.100.2/24", "dev", "eth0"],
                   check=True)
    subprocess.run(["ip", "-n", out, "link", "set", "eth0", "up"], check=True)
    # (the outside has no route to the container subnets: replies need the masquerade)
    return t


# --- the binding -----------------------------------------------------------------------

def test_nft_context_is_bound_to_its_creation_netns(make_netns):
    a, b = make_netns("nfa"), make_netns("nfb")
    nft = Nft.for_netns(a)
    try:
        # used from a thread that sits in namespace b: the change lands in a
        with Netns.named(b) as nsb, nsb.enter():
            nft.run_json([{"add": {"table": {"family": "inet", "name": "where"}}}])
        # and from this thread (the test run's own namespace)
        nft.run_json([{"add": {"table": {"family": "inet", "name": "where2"}}}])
        assert nft_tables(a) == [("inet", "where"), ("inet", "where2")]
        assert nft_tables(b) == []
        listing = nft.list_table("inet", "where")
        assert {"table": {"family": "inet", "name": "where", "handle":
                          listing["nftables"][1]["table"]["handle"]}} in listing["nftables"]
        assert nft.list_table_or_none("inet", "nope") is None
    finally:
        nft.close()


def test_nft_errors_carry_nft_text_and_batches_are_atomic(make_netns):
    ns = make_netns("nfe")
    with Nft.for_netns(ns) as nft:
        with pytest.raises(FirewallError) as ei:
            nft.run_json([
                {"add": {"table": {"family": "inet", "name": "x"}}},
                {"add": {"chain": {"family": "inet", "table": "x", "name": "c"}}},
                {"add": {"rule": {"family": "inet", "table": "x", "chain": "c", "expr": [
                    {"match": {"op": "==", "left": {"meta": {"key": "iifname"}},
                               "right": "@missing_set"}}, {"accept": None}]}}},
            ])
        assert isinstance(ei.value, InternalError)
        assert "missing_set" in ei.value.nft_msg or "No such file" in ei.value.nft_msg
        assert nft_tables(ns) == []          # the table of the same batch was not made
        with pytest.raises(BadRequestError):
            nft.run_json("add table inet x")  # type: ignore[arg-type]
        assert nft.run_json([]) == {}
    with pytest.raises(FirewallError, match="closed"):
        nft.run_json([{"list": {"tables": None}}])


def test_nft_context_is_safe_across_threads(make_netns):
    ns = make_netns("nft")
    errors = []
    with Nft.for_netns(ns) as nft:
        nft.run_json([{"add": {"table": {"family": "inet", "name": "t"}}},
                      {"add": {"chain": {"family": "inet", "table": "t", "name": "c"}}}])

        def work(i):
            try:
                for j in range(20):
                    nft.run_json([{"add": {"rule": {
                        "family": "inet", "table": "t", "chain": "c",
                        "comment": f"w{i}-{j}", "expr": [{"accept": None}]}}}])
                    nft.list_table("inet", "t")
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert len(rules(nft_json(ns, "inet", "t"))) == 120


# --- structure, idempotency, ownership ---------------------------------------------------

def _other_table(ns: str) -> dict:
    sh(ns, "nft", "add", "table", "inet", "other")
    sh(ns, "nft", "add", "chain", "inet", "other", "fchain",
       "{ type filter hook forward priority 10; policy accept; }")
    sh(ns, "nft", "add", "rule", "inet", "other", "fchain", "iifname", "x0", "counter", "accept")
    return nft_json(ns, "inet", "other")


def test_ensure_add_remove_idempotent_and_only_our_tables(host, fw):
    other = _other_table(host)
    fw.ensure()
    first = ours(host)
    fw.ensure()
    assert ours(host) == first                      # no change at all, handles included
    base = [r.get("comment") for r in rules(first[0], "forward")]
    assert base == ["pynetlib base:ct", "pynetlib base:user", "pynetlib base:isolation",
                    "pynetlib base:ports", "pynetlib base:networks"]
    assert rules(first[0], "forward")[0]["expr"][0]["match"]["left"] == {"ct": {"key": "state"}}
    chains = {i["chain"]["name"]: i["chain"] for i in first[0]["nftables"] if "chain" in i}
    assert chains["forward"]["hook"] == "forward" and chains["forward"]["type"] == "filter"
    assert chains["postrouting"]["type"] == "nat" and chains["postrouting"]["prio"] == 100
    assert chains["prerouting"]["prio"] == -100 and chains["output"]["hook"] == "output"
    assert chains["output"]["type"] == "nat"
    # the retired bridge ports: a set filled from C and three chains that drop their frames
    bchains = {i["chain"]["name"]: i["chain"] for i in first[1]["nftables"] if "chain" in i}
    assert {n: (bchains[n]["hook"], bchains[n]["prio"]) for n in
            ("retired_in", "retired_fwd", "retired_out")} == {
        "retired_in": ("prerouting", -300), "retired_fwd": ("forward", -300),
        "retired_out": ("output", -300)}
    bsets = {i["set"]["name"]: i["set"] for i in first[1]["nftables"] if "set" in i}
    assert bsets["retired"]["type"] == "iface_index"
    for chain, key in (("retired_in", "iif"), ("retired_fwd", "oif"), ("retired_out", "oif")):
        (rule,) = rules(first[1], chain)
        assert rule["comment"] == f"pynetlib base:{chain}"
        assert rule["expr"][0]["match"]["left"] == {"meta": {"key": key}}
        assert rule["expr"][0]["match"]["right"] == "@retired"
        assert "drop" in rule["expr"][1]

    fw.add_network(NA, "bra", "10.77.1.0/24", "fd77:1::/64", icc=False)
    after_a = ours(host)
    fw.add_network(NA, "bra", ipaddress.ip_network("10.77.1.0/24"), "fd77:1::/64", icc=False)
    again = ours(host)
    # same rules (contents and tags); handles are renewed because they are replaced whole
    strip = lambda l: sorted(json.dumps({k: v for k, v in r.items() if k != "handle"},  # noqa
                                        sort_keys=True) for r in rules(l))
    assert strip(again[0]) == strip(after_a[0]) and strip(again[1]) == strip(after_a[1])
    fw.add_network(NB, "brb", "10.77.2.0/24")
    fw.add_port(NA, "vc1")
    fw.add_port(NA, "vc1")
    fw.add_port_mappings(NA, E1, "bra", "10.77.1.2", None, [PortBinding("tcp", 80, 8080)])
    fw.add_port_mappings(NA, E1, "bra", "10.77.1.2", None, [PortBinding("tcp", 80, 8080)])
    inet, br = ours(host)
    tags = [r.get("comment", "") for r in rules(inet) + rules(br)]
    assert all(t.startswith("pynetlib ") for t in tags)
    assert sum(t == f"pynetlib n={NA}" for t in tags) == 7   # 2 isolation, 2 networks,
    #                                                           2 masquerade, 1 icc drop
    assert sum(t == f"pynetlib n={NB}" for t in tags) == 5   # no icc drop
    ep = [t for t in tags if "e=" in t]
    assert len(ep) == 4 and set(ep) == {f"pynetlib n={NA[:32]} e={E1}"}

    owned = fw.owned_rules()
    assert {o["tag_kind"] for o in owned} == {"base", "network", "endpoint"}
    elems = [(o["set"], o["elem"]) for o in owned if o["kind"] == "element"]
    assert sorted(elems) == [("bridges", "bra"), ("bridges", "brb"), (f"ports_{NA}", "vc1")]
    assert {o["endpoint"] for o in owned if o["tag_kind"] == "endpoint"} == {E1}

    fw.remove_network(NA)
    after_rm = ours(host)
    fw.remove_network(NA)                             # unknown now: a no-op
    fw.remove_network("c0ffee")
    assert ours(host) == after_rm
    tags = [r.get("comment", "") for r in rules(after_rm[0]) + rules(after_rm[1])]
    assert not any(NA[:32] in t for t in tags)
    assert sum(t == f"pynetlib n={NB}" for t in tags) == 5
    sets = [i["set"]["name"] for i in after_rm[1]["nftables"] if "set" in i]
    assert sets == ["retired", f"ports_{NB}"]
    bridges = [i["set"] for i in after_rm[0]["nftables"] if "set" in i][0]
    assert [e["elem"]["val"] for e in bridges["elem"]] == ["brb"]

    fw.remove_port_mappings(NB, E2)                   # none: no-op
    fw.remove_port(NB, "vc9")                         # not there: no-op
    fw.remove_port(NA, "vc1")                         # network gone: no-op
    assert ours(host) == after_rm
    fw.destroy()
    assert ours(host) == (None, None)
    assert nft_json(host, "inet", "other") == other
    assert nft_tables(host) == [("inet", "other")]


def test_ensure_repairs_missing_base_rules(host, fw):
    fw.ensure()
    inet = nft_json(host, "inet", "pynetlib")
    handle = rules(inet, "forward")[2]["handle"]      # jump isolation
    sh(host, "nft", "delete", "rule", "inet", "pynetlib", "forward", "handle", str(handle))
    fw.ensure()
    base = [r.get("comment") for r in rules(nft_json(host, "inet", "pynetlib"), "forward")]
    assert base == ["pynetlib base:ct", "pynetlib base:user", "pynetlib base:isolation",
                    "pynetlib base:ports", "pynetlib base:networks"]


def test_rejected_input_and_failed_batches_leave_tables_unchanged(host, fw, monkeypatch):
    fw.add_network(NA, "bra", "10.77.1.0/24")
    fw.add_port_mappings(NA, E1, "bra", "10.77.1.2", None, [PortBinding("tcp", 80, 8080)])
    before = ours(host)
    bad_calls = [
        (InvalidNameError, lambda: fw.add_network(NB, "br*", "10.77.2.0/24")),
        (InvalidNameError, lambda: fw.add_network(NB, "@bridges", "10.77.2.0/24")),
        (InvalidNameError, lambda: fw.add_network(NB, 'b"r', "10.77.2.0/24")),
        (InvalidNameError, lambda: fw.add_network(NB, "x" * 16, "10.77.2.0/24")),
        (InvalidIDError, lambda: fw.add_network("NOT-HEX", "brb", "10.77.2.0/24")),
        (InvalidIDError, lambda: fw.add_network("a" * 65, "brb", "10.77.2.0/24")),
        (BadRequestError, lambda: fw.add_network(NB, "brb", "10.77.2.1/24")),
        (BadRequestError, lambda: fw.add_network(NB, "brb", "fd00::/64")),
        (BadRequestError, lambda: fw.add_network(NB, "brb", None, "10.0.0.0/8")),
        (BadRequestError, lambda: fw.add_network(NB, "brb", None, icc="no")),
        (InvalidNameError, lambda: fw.add_port(NA, "a b")),
        (BadRequestError, lambda: fw.add_port_mappings(NA, E2, "bra", "10.77.1.3", None,
                                                       [PortBinding("tcp", 80)])),
        (BadRequestError, lambda: fw.add_port_mappings(NA, E2, "bra", "fd00::1", None, [])),
        (BadRequestError, lambda: fw.add_port_mappings(NA, E2, "bra", "10.77.1.3", None,
                                                       [("tcp", 80, 8080)])),
    ]
    for exc, call in bad_calls:
        with pytest.raises(exc):
            call()
    assert ours(host) == before
    # a batch the kernel refuses after pynetlib built it: nothing of it is installed
    real = fw.nft.run_json

    def broken(cmds, **kw):
        if all("list" in c for c in cmds):
            return real(cmds, **kw)
        return real(cmds + [{"add": {"rule": {"family": "inet", "table": "pynetlib",
                                              "chain": "no_such_chain",
                                              "expr": [{"accept": None}]}}}], **kw)

    monkeypatch.setattr(fw.nft, "run_json", broken)
    with pytest.raises(FirewallError):
        fw.add_port_mappings(NA, E2, "bra", "10.77.1.3", None,
                             [PortBinding("tcp", 80, 8081), PortBinding("udp", 53, 5353)])
    with pytest.raises(FirewallError):
        fw.add_network(NB, "brb", "10.77.2.0/24", icc=False)
    with pytest.raises(FirewallError):
        fw.remove_network(NA)
    monkeypatch.undo()
    assert ours(host) == before
    with pytest.raises(FirewallError, match="add_network first"):
        fw.add_port(NB, "vc3")
    assert ours(host) == before


def test_parse_tag():
    assert parse_tag("pynetlib base:ct") == {"kind": "base", "name": "ct"}
    assert parse_tag(f"pynetlib n={NA}") == {"kind": "network", "network": NA}
    assert parse_tag(f"pynetlib n={NA[:32]} e={E1}") == {
        "kind": "endpoint", "network": NA[:32], "endpoint": E1}
    assert parse_tag("someone else") is None and parse_tag("") is None


# --- traffic -----------------------------------------------------------------------------

def test_traffic_icc_isolation_gateway(topo, fw):
    c1, c2, c3 = topo["c1"], topo["c2"], topo["c3"]
    # without rules the host routes between the bridges
    assert ping(c1, "10.77.2.2")
    fw.add_network(NA, "bra", "10.77.1.0/24", icc=True)
    fw.add_network(NB, "brb", "10.77.2.0/24")
    assert ping(c1, "10.77.1.3")                      # icc on
    assert not ping(c1, "10.77.2.2")                  # isolation A -> B
    assert not ping(c3, "10.77.1.2")                  # and B -> A
    assert ping(c3, "10.77.2.1")                      # B reaches its gateway
    # icc off: same-bridge traffic dropped, the gateway still reachable (local delivery)
    fw.add_network(NA, "bra", "10.77.1.0/24", icc=False)
    fw.add_port(NA, "vc1")
    fw.add_port(NA, "vc2")
    assert not ping(c1, "10.77.1.3")
    assert ping(c1, "10.77.1.1") and ping(c2, "10.77.1.1")
    # a port leaving the set gets icc back for that pair
    fw.remove_port(NA, "vc2")
    assert ping(c1, "10.77.1.3")
    # removing B leaves A's rules working, and A's removal restores plain routing
    fw.remove_network(NB)
    assert not ping(c3, "10.77.1.2")                  # A still refuses unsolicited inbound
    fw.remove_network(NA)
    assert ping(c1, "10.77.2.2")


def test_traffic_masquerade_internal_and_port_mapping(topo, fw):
    host, c1, c2, out = topo["host"], topo["c1"], topo["c2"], topo["out"]
    fw.add_network(NA, "bra", "10.77.1.0/24", masquerade=False)
    assert not ping(c1, "198.51.100.2")               # no route back without masquerade
    fw.add_network(NA, "bra", "10.77.1.0/24")
    assert ping(c1, "198.51.100.2")
    srv_out = Server(out, "0.0.0.0", 7000, "outside")
    srv_c1 = Server(c1, "0.0.0.0", 80, "c1")
    try:
        # the outside sees the host's address as the source
        assert connect(c1, "198.51.100.2", 7000) == "outside 198.51.100.1"

        fw.add_port_mappings(NA, E1, "bra", "10.77.1.2", None,
                             [PortBinding("tcp", 80, 8080),
                              PortBinding("tcp", 80, 8081, "198.51.100.1")])
        assert connect(out, "198.51.100.1", 8080) == "c1 198.51.100.2"
        assert connect(out, "198.51.100.1", 8081) == "c1 198.51.100.2"
        # the exact match: another port or another destination is not forwarded
        assert connect(out, "198.51.100.1", 8082).startswith("ERR")
        assert connect(out, "10.77.1.2", 80).startswith("ERR")     # no route / no DNAT
        # locally originated (output chain), to a non-loopback local address
        assert connect(host, "198.51.100.1", 8080).startswith("c1 ")
        assert connect(host, "10.77.1.1", 8080).startswith("c1 ")
        # hairpin: c1 reaches its own mapped port via the host and sees the gateway
        assert connect(c1, "198.51.100.1", 8080) == "c1 10.77.1.1"
        assert connect(c1, "10.77.1.1", 8080) == "c1 10.77.1.1"
        # a sibling reaches it too (not masqueraded: the outside keeps its own address)
        assert connect(c2, "198.51.100.1", 8080).startswith("c1 ")

        fw.remove_port_mappings(NA, E1)
        assert connect(out, "198.51.100.1", 8080).startswith("ERR")
        assert connect(out, "198.51.100.1", 8081).startswith("ERR")
        assert not [r for r in fw.owned_rules() if r.get("endpoint") == E1]

        # internal: nothing leaves or enters the bridge, bridge-local traffic still works
        fw.add_network(NA, "bra", "10.77.1.0/24", internal=True)
        assert connect(c1, "198.51.100.2", 7000).startswith("ERR")
        assert ping(c1, "10.77.1.3") and ping(c1, "10.77.1.1")
    finally:
        srv_out.stop()
        srv_c1.stop()


def test_many_small_batches(host, fw):
    """Many one-element batches and port additions all land (their cost is printed, not
    asserted: speed lives in the benchmarks)."""
    fw.ensure()
    nft = fw.nft
    n = 200
    t = time.perf_counter()
    for i in range(n):
        nft.run_json([{"add": {"element": {"family": "bridge", "table": "pynetlib",
                                           "name": f"ports_{NA}", "elem": [f"p{i}"]}}}]
                     if i else [{"add": {"set": {"family": "bridge", "table": "pynetlib",
                                                 "name": f"ports_{NA}", "type": "ifname"}}}])
    per_batch = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for i in range(20):
        fw.add_port(NA, f"q{i}")
    per_port = (time.perf_counter() - t) / 20
    print(f"\nnft batch {per_batch * 1e6:.0f} us, add_port {per_port * 1e6:.0f} us")
    out = subprocess.run(["ip", "netns", "exec", host, "nft", "-j", "list", "set", "bridge",
                          "pynetlib", f"ports_{NA}"],
                         capture_output=True, text=True, check=True).stdout
    text = json.dumps(json.loads(out)["nftables"][1]["set"].get("elem", []))
    assert all(f'"p{i}"' in text for i in range(1, n))


def test_changes_behind_its_back_are_recovered(host, fw):
    """The in-memory view is refreshed when a batch built from it fails."""
    fw.add_network(NA, "bra", "10.77.1.0/24")
    fw.add_port_mappings(NA, E1, "bra", "10.77.1.2", None, [PortBinding("tcp", 80, 8080)])
    ep = [r for r in rules(nft_json(host, "inet", "pynetlib")) if "e=" in r.get("comment", "")]
    victim = ep[0]
    sh(host, "nft", "delete", "rule", "inet", "pynetlib", victim["chain"], "handle",
       str(victim["handle"]))
    fw.remove_port_mappings(NA, E1)                   # stale handle: relisted and retried
    assert not [r for r in rules(nft_json(host, "inet", "pynetlib"))
                if "e=" in r.get("comment", "")]
    sh(host, "nft", "delete", "table", "bridge", "pynetlib")
    with pytest.raises(FirewallError, match="add_network first"):
        fw.add_port(NA, "vc1")
    fw.add_network(NA, "bra", "10.77.1.0/24", icc=False)   # recreates what is missing
    fw.add_port(NA, "vc1")
    assert [o["elem"] for o in fw.owned_rules() if o.get("set") == f"ports_{NA}"] == ["vc1"]
