"""Batched, asynchronous teardown: leave returns once the endpoint is unplugged and its
records are final; devices are deleted by the reaper in batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.drivers.bridge.reaper import REAP_GROUP
from pynetlib.errors import IPAlreadyAllocatedError

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]


def links():
    out = subprocess.run(["ip", "-j", "-d", "link"], capture_output=True, text=True,
                         check=True).stdout
    return {l["ifname"]: l for l in json.loads(out)}


def new_ctrl(tmp_path):
    return pynetlib.Controller(str(tmp_path / "state"), host_routes=lambda: [])


def test_leave_of_owned_sandbox_deletes_namespace_and_devices_go(tmp_path):
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "t", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.150.0.1/16"}})
    eps = [net.create_endpoint(f"e{i}") for i in range(20)]
    keys = [ep.join(f"td{i}").sandbox_key for i, ep in enumerate(eps)]
    t0 = time.perf_counter()
    for i, ep in enumerate(eps):
        ep.leave(f"td{i}")
        ep.delete()
    per = (time.perf_counter() - t0) / len(eps)
    deadline = time.monotonic() + 30                    # the teardown thread's batch
    while any(os.path.exists(k) for k in keys) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(os.path.exists(k) for k in keys)
    ctrl.flush_teardown()
    deadline = time.monotonic() + 30                    # the kernel's own async cleanup
    while time.monotonic() < deadline:
        left = [n for n in links() if n.startswith("pnl")]
        if not left:
            break
        time.sleep(0.05)
    assert left == []
    assert ctrl.audit() == []
    print(f"leave+delete per container: {per * 1e3:.2f} ms")
    net.delete()
    ctrl.close()


def _ping(ns: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", ip],
                          capture_output=True).returncode == 0


def retired_set() -> list[int]:
    """The interface indexes in the firewall's set of retired ports, read with nft."""
    out = subprocess.run(["nft", "-j", "list", "set", "bridge", "pynetlib", "retired"],
                         capture_output=True, text=True, check=True).stdout
    elems = next(o["set"] for o in json.loads(out)["nftables"] if "set" in o).get("elem", [])
    by_name = {l["ifname"]: l["ifindex"] for l in links().values()}
    return sorted(e if isinstance(e, int) else by_name.get(e, int(e) if str(e).isdigit()
                                                          else -1) for e in elems)


@pytest.mark.parametrize("firewall", [True, False], ids=["firewall", "no-firewall"])
def test_leave_with_a_persistent_namespace_uses_the_reaper(tmp_path, make_netns, firewall):
    """The runtime's own namespace stays: the veth's bridge port is out of service at
    once (nothing is forwarded, checked with traffic) and it is deleted in one batch
    with the others. With the firewall, its index is in the set of retired ports (no
    link change at leave); without, the port is disabled and in the reap group."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "r", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "10.151.0.1/16", "EnableIPTables": firewall}})
    names = [make_netns("ext") for _ in range(10)]
    eps = [net.create_endpoint(f"e{i}") for i in range(10)]
    for ep, ns in zip(eps, names):
        ep.join(f"rp-{ns}", netns_path=f"/run/netns/{ns}")
    drv = ctrl._drivers["bridge"]
    drv._reaper().max_delay = 60                         # keep them pending: look at them
    assert _ping(names[0], "10.151.0.1")
    assert _ping(names[0], "10.151.0.3")                 # another container, across
    assert _ping(names[1], "10.151.0.2")
    eps[0].leave(f"rp-{names[0]}")
    assert not _ping(names[0], "10.151.0.1")             # neither the host...
    assert not _ping(names[0], "10.151.0.3")             # ...nor another container
    assert not _ping(names[1], "10.151.0.2")             # nor the way back
    assert _ping(names[1], "10.151.0.3")                 # the others are untouched
    for ep, ns in zip(eps[1:], names[1:]):
        ep.leave(f"rp-{ns}")
    devs = [links()[f"pnl{ep.id[:12]}"] for ep in eps]
    for dev in devs:
        if firewall:
            assert dev.get("group") == "default"
            assert dev["linkinfo"]["info_slave_data"]["state"] == "forwarding"
        else:
            assert dev.get("group") in (str(REAP_GROUP), REAP_GROUP, "0x706e6c72")
            assert dev["linkinfo"]["info_slave_data"]["state"] == "disabled"
    if firewall:
        assert retired_set() == sorted(d["ifindex"] for d in devs)
    assert not _ping(names[2], "10.151.0.1")
    ctrl.flush_teardown()
    assert not [n for n in links() if n.startswith("pnl")]
    assert drv._reap.deleted_batches == 1                # batched, not one per device
    if firewall:
        assert retired_set() == []                       # emptied with the batch
    for ns in names:                                     # the runtime's namespaces stay
        assert os.path.exists(f"/run/netns/{ns}")
        inner = subprocess.run(["ip", "-n", ns, "-j", "link"], capture_output=True,
                               text=True, check=True).stdout
        assert [l["ifname"] for l in json.loads(inner)] == ["lo"]
    for ep in eps:
        ep.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_leave_remakes_a_missing_retired_set(tmp_path, make_netns):
    """Tables made by an older pynetlib have no retired set: the first leave makes it
    (with its chains) and uses it."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "m", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.159.0.1/16"}})
    ns = make_netns("ext")
    ep = net.create_endpoint("e")
    ep.join("mr", netns_path=f"/run/netns/{ns}")
    for chain in ("retired_in", "retired_fwd", "retired_out"):
        subprocess.run(["nft", "delete", "chain", "bridge", "pynetlib", chain], check=True)
    subprocess.run(["nft", "delete", "set", "bridge", "pynetlib", "retired"], check=True)
    ctrl._drivers["bridge"]._reaper().max_delay = 60
    ep.leave("mr")
    dev = links()[f"pnl{ep.id[:12]}"]
    assert retired_set() == [dev["ifindex"]]
    assert dev["linkinfo"]["info_slave_data"]["state"] == "forwarding"
    assert not _ping(ns, "10.159.0.1")
    ctrl.flush_teardown()
    assert retired_set() == []
    ep.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_close_drains_the_reaper(tmp_path, make_netns):
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "c", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.152.0.1/16"}})
    ns = make_netns("ext")
    ep = net.create_endpoint("e")
    ep.join("cl", netns_path=f"/run/netns/{ns}")
    ep.leave("cl")
    ep.delete()
    ctrl.close()
    assert f"pnl{ep.id[:12]}" not in links()
    c2 = new_ctrl(tmp_path)
    c2.network_by_name("c").delete()
    c2.close()


def test_kill_in_the_reaper_is_recovered(tmp_path, make_netns):
    """The process dies while its reaper deletes the group: the devices it left are
    tagged orphans, and the next controller's reconcile removes them."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "k", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.153.0.1/16"}})
    ns = make_netns("ext")
    ep = net.create_endpoint("e")
    ep.join("kr", netns_path=f"/run/netns/{ns}")
    eid = ep.id
    ctrl.close()
    child = textwrap.dedent(f"""
        import pynetlib
        c = pynetlib.Controller({state!r}, host_routes=lambda: [])
        c.network_by_name("k").endpoint_by_name("e").leave("kr")
        c.close()          # the reaper's batch: killed by the failpoint
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                       env=dict(os.environ, PYNETLIB_FAILPOINTS="link.delete=kill"))
    assert r.returncode == -9, r.stderr
    assert f"pnl{eid[:12]}" in links()                   # left behind, down
    c = pynetlib.Controller(state, host_routes=lambda: [])
    assert f"pnl{eid[:12]}" not in links()               # reconcile removed it
    assert c.audit() == []
    assert c.network_by_name("k").endpoint_by_name("e").joined_container is None
    c.network_by_name("k").endpoint_by_name("e").delete()
    c.network_by_name("k").delete()
    c.close()


def test_kill_with_ports_in_the_retired_set_is_recovered(tmp_path, make_netns):
    """The process dies after its leaves put the ports into the firewall's retired set
    and before its reaper's batch: the devices stay out of service (traffic checked),
    and the next controller's reconcile deletes them and empties the set."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "k2", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                    "10.158.0.1/16"}})
    names = [make_netns("ext") for _ in range(3)]
    eids = []
    for i, ns in enumerate(names):
        ep = net.create_endpoint(f"e{i}")
        ep.join(f"kq{i}", netns_path=f"/run/netns/{ns}")
        eids.append(ep.id)
    ctrl.close()
    child = textwrap.dedent(f"""
        import os, signal, pynetlib
        c = pynetlib.Controller({state!r}, host_routes=lambda: [])
        c._drivers["bridge"]._reaper().max_delay = 600
        net = c.network_by_name("k2")
        for i in range(3):
            net.endpoint_by_name(f"e{{i}}").leave(f"kq{{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert r.returncode == -9, r.stderr
    left = [links()[f"pnl{eid[:12]}"] for eid in eids]
    assert retired_set() == sorted(d["ifindex"] for d in left)
    assert not _ping(names[0], "10.158.0.1")             # still out of service
    c = pynetlib.Controller(state, host_routes=lambda: [])
    assert not [n for n in links() if n.startswith("pnl")]   # reconcile removed them
    assert retired_set() == []
    assert c.audit() == []
    net = c.network_by_name("k2")
    for i in range(3):
        assert net.endpoint_by_name(f"e{i}").joined_container is None
        net.endpoint_by_name(f"e{i}").delete()
    net.delete()
    c.close()


def _ns_inode(path):
    return os.stat(path).st_ino


def test_namespace_teardown_is_deferred_and_a_rejoin_waits_for_it(tmp_path):
    """leave hands the namespace to the teardown thread; joining the same container
    again at once gets a new namespace, never the one on its way out."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "r", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.154.0.1/16"}})
    ep = net.create_endpoint("e")
    key = ep.join("again").sandbox_key
    ctrl._teardown.max_delay = 5.0                      # keep it pending for this test
    old = _ns_inode(key)
    ep.leave("again")
    assert ctrl._teardown.backlog == 1 and os.path.exists(key)
    assert ctrl.sandboxes() == []                       # the records are final already
    key2 = ep.join("again").sandbox_key
    assert key2 == key and _ns_inode(key) != old
    assert ctrl._teardown.backlog == 0
    out = subprocess.run(["ip", "-n", os.path.basename(key), "-j", "addr", "show", "eth0"],
                         capture_output=True, text=True, check=True).stdout
    assert [a["local"] for a in json.loads(out)[0]["addr_info"]
            if a["family"] == "inet"] == ["10.154.0.2"]
    ep.leave("again")
    ctrl.close()                                        # close drains the teardown
    assert not os.path.exists(key)
    c = new_ctrl(tmp_path)
    assert c.audit() == []
    c.network_by_name("r").endpoint_by_name("e").delete()
    c.network_by_name("r").delete()
    c.close()


def _addresses_in(ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", ns, "-j", "-4", "addr"], capture_output=True,
                         text=True, check=True).stdout
    return [a["local"] for l in json.loads(out) for a in l.get("addr_info", [])]


@pytest.mark.parametrize("runtime_netns", [False, True])
def test_a_deleted_endpoints_address_is_held_until_its_device_is_gone(tmp_path, make_netns,
                                                                       runtime_netns):
    """leave + delete return before the reaper and the teardown thread have removed the
    devices. While a device that carries the address exists, IPAM keeps the address;
    a request for it (a container restarted with the same static address) deletes the
    old device first, then gets it."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "q", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.158.0.1/16"}})
    ctrl._teardown.max_delay = 60                       # keep both kinds of teardown
    ctrl._drivers["bridge"]._reaper().max_delay = 60     # pending for this test
    ns = make_netns("ext") if runtime_netns else None
    pool = "LocalDefault/10.158.0.0/16"
    ep = net.create_endpoint("e", ipv4="10.158.0.9/16")
    key = ep.join("qc", netns_path=f"/run/netns/{ns}" if ns else None).sandbox_key
    ep.leave("qc")
    ep.delete()
    old_dev = f"pnl{ep.id[:12]}"
    assert old_dev in links()
    assert "10.158.0.9" in _addresses_in(os.path.basename(key))  # still on the device
    assert ctrl.ipam.is_allocated(pool, "10.158.0.9")          # so IPAM holds it
    again = net.create_endpoint("other", ipv4="10.158.0.9/16")
    assert old_dev not in links()                       # the old device went first
    if ns:
        assert "10.158.0.9" not in _addresses_in(ns)
    again.delete()
    ctrl.flush_teardown()
    assert not ctrl.ipam.is_allocated(pool, "10.158.0.9")
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_one_reaper_batch_gives_back_every_held_address(tmp_path):
    """Many endpoints deleted before one reaper batch, on a dual-stack network: when the
    batch has deleted their devices, every address of both pools is free again and no
    quarantine record is left, in IPAM's stored state too (a new controller sees it)."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "qb", {netlabel.GENERIC_DATA: {
        "AddressIPv4": "10.157.0.1/16", "EnableIPv6": True,
        "FixedCIDRv6": "2001:db8:157::/64"}})
    reaper = ctrl._drivers["bridge"]._reaper()
    reaper.max_delay = 60                               # one batch, when flushed
    pools = ("LocalDefault/10.157.0.0/16", "LocalDefault/2001:db8:157::/64")
    held = []
    for i in range(30):
        ep = net.create_endpoint(f"e{i}")
        ep.join(f"qb{i}")
        iface = ep.info().interfaces[0]
        held.append((str(iface.address.ip), str(iface.address_ipv6.ip)))
        ep.leave(f"qb{i}")
        ep.delete()
    quarantine = ctrl._drivers["bridge"]._quarantine
    assert len(quarantine.records(net.id)) == 30
    assert all(ctrl.ipam.is_allocated(p, a) for v4, v6 in held
               for p, a in zip(pools, (v4, v6)))
    ctrl.flush_teardown()
    assert quarantine.records(net.id) == {}
    assert not any(ctrl.ipam.is_allocated(p, a) for v4, v6 in held
                   for p, a in zip(pools, (v4, v6)))
    assert ctrl.audit() == []
    ctrl.close()
    again = new_ctrl(tmp_path)                          # what the store says
    assert not any(again.ipam.is_allocated(p, a) for v4, v6 in held
                   for p, a in zip(pools, (v4, v6)))
    again.network_by_name("qb").delete()
    again.close()


@pytest.mark.parametrize("failing", [
    "link.delete=errno:EBUSY*1",        # the group delete
    "nl.send=errno:EBUSY*1",            # the reaper's first request: moving the port
], ids=["group-delete", "move-into-group"])
def test_a_failed_reaper_batch_keeps_the_port_out_of_service(tmp_path, make_netns, failing):
    """A reaper batch fails (injected EBUSY), in its group delete or while moving the
    retired port into the group: the device may still exist, so it stays in the
    retired set (no traffic) and its address stays held; the next batch deletes it
    and only then lets both go."""
    from pynetlib import failpoints

    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "f", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.163.0.1/16"}})
    ns = make_netns("ext")
    pool = "LocalDefault/10.163.0.0/16"
    ep = net.create_endpoint("e", ipv4="10.163.0.5/16")
    ep.join("fr", netns_path=f"/run/netns/{ns}")
    reaper = ctrl._drivers["bridge"]._reaper()
    reaper.max_delay = 60
    ep.leave("fr")
    ep.delete()
    index = links()[f"pnl{ep.id[:12]}"]["ifindex"]
    assert retired_set() == [index]
    failpoints.arm(failing)
    try:
        reaper.flush()                                   # the failing batch
        assert reaper.deleted_batches == 1
        assert f"pnl{ep.id[:12]}" in links()
        assert retired_set() == [index]                  # still out of service
        assert not _ping(ns, "10.163.0.1")
        assert ctrl.ipam.is_allocated(pool, "10.163.0.5")
    finally:
        failpoints.disarm_all()
    ctrl.flush_teardown()                                # the next batch succeeds
    assert f"pnl{ep.id[:12]}" not in links()
    assert retired_set() == []
    assert not ctrl.ipam.is_allocated(pool, "10.163.0.5")
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_a_live_endpoints_address_is_refused_without_touching_held_ones(tmp_path):
    """A static request for an address a live endpoint has fails at once; it does not
    delete the devices whose addresses are held (they are not what stands in its way)."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "h", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.164.0.1/16"}})
    ctrl._teardown.max_delay = 60
    ctrl._drivers["bridge"]._reaper().max_delay = 60
    live = net.create_endpoint("live", ipv4="10.164.0.8/16")
    gone = net.create_endpoint("gone", ipv4="10.164.0.9/16")
    gone.join("hg")
    gone.leave("hg")
    gone.delete()
    assert f"pnl{gone.id[:12]}" in links()                # held, pending
    with pytest.raises(IPAlreadyAllocatedError):
        net.create_endpoint("other", ipv4="10.164.0.8/16")
    assert f"pnl{gone.id[:12]}" in links()                # still pending: not settled
    assert ctrl.ipam.is_allocated("LocalDefault/10.164.0.0/16", "10.164.0.9")
    live.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_a_crash_with_addresses_held_is_recovered(tmp_path, make_netns):
    """The process dies after delete with the device still pending: the next
    controller deletes the device and only then releases the address."""
    state = str(tmp_path / "state")
    ns = make_netns("ext")
    child = textwrap.dedent(f"""
        import os, pynetlib
        from pynetlib import netlabel
        c = pynetlib.Controller({state!r}, host_routes=lambda: [])
        net = c.new_network("bridge", "k", {{netlabel.GENERIC_DATA: {{
            "AddressIPv4": "10.159.0.1/16"}}}})
        c._drivers["bridge"]._reaper().max_delay = 60
        ep = net.create_endpoint("e", ipv4="10.159.0.7/16")
        ep.join("kq", netns_path="/run/netns/{ns}")
        ep.leave("kq")
        ep.delete()
        os._exit(0)                                     # no close: the batch never runs
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "10.159.0.7" in _addresses_in(ns)            # left behind, held
    c = pynetlib.Controller(state, host_routes=lambda: [])     # reconcile
    assert "10.159.0.7" not in _addresses_in(ns)
    assert c.audit() == []
    net = c.network_by_name("k")
    net.create_endpoint("again", ipv4="10.159.0.7/16").delete()
    net.delete()
    c.close()


def test_a_leftover_namespace_at_the_sandbox_path_is_replaced(tmp_path):
    """Another process's teardown still pending (or a crash) left the file; the new
    sandbox's record is ours, so the file is replaced, not used."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "l", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.155.0.1/16"}})
    ep = net.create_endpoint("e")
    from pynetlib.sandbox import netns_name_for
    name = netns_name_for(ctrl.store_id, "stale")
    subprocess.run(["ip", "netns", "add", name], check=True)
    subprocess.run(["ip", "-n", name, "link", "add", "marker0", "type", "dummy"],
                   capture_output=True)
    old = _ns_inode(f"/run/netns/{name}")
    key = ep.join("stale").sandbox_key
    assert key == f"/run/netns/{name}" and _ns_inode(key) != old
    out = subprocess.run(["ip", "-n", name, "-j", "link"], capture_output=True, text=True,
                         check=True).stdout
    assert sorted(l["ifname"] for l in json.loads(out)) == ["eth0", "lo"]
    ep.leave("stale")
    ep.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_a_death_with_namespace_teardown_pending_is_recovered(tmp_path):
    """The process dies right after leave, its teardown thread's batch not run: the
    namespace left behind has no record, and the next controller removes it."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "d", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                   "10.156.0.1/16"}})
    net.create_endpoint("e")
    ctrl.close()
    child = textwrap.dedent(f"""
        import os, pynetlib
        c = pynetlib.Controller({state!r}, host_routes=lambda: [])
        c._teardown.max_delay = 60
        ep = c.network_by_name("d").endpoint_by_name("e")
        print(ep.join("dies").sandbox_key, flush=True)
        ep.leave("dies")
        os._exit(0)        # no close(), no atexit: the teardown never runs
    """)
    r = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert os.path.exists(key)                         # left behind
    c = pynetlib.Controller(state, host_routes=lambda: [])
    assert not os.path.exists(key)                     # reconcile removed it
    assert c.audit() == []
    c.network_by_name("d").endpoint_by_name("e").delete()
    c.network_by_name("d").delete()
    c.close()


def test_a_full_bridge_waits_for_the_ports_on_their_way_out(tmp_path, make_netns):
    """A bridge takes at most 1023 ports. When the ports waiting in the reaper's batch
    are what fills it, a join deletes that batch at once and gets its port."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "full", {netlabel.GENERIC_DATA: {
        "BridgeName": "pnlfull0", "AddressIPv4": "10.157.0.1/16"}})
    e1, e2 = net.create_endpoint("e1"), net.create_endpoint("e2")
    ns = make_netns("fullext")                     # kept: e1's port waits in the reaper
    e1.join("f1", netns_path=f"/run/netns/{ns}")
    reaper = net._driver._reaper()
    reaper.max_delay = 60.0                         # e1's port stays pending
    e1.leave("f1")
    n = 1030
    add = "".join(f"link add fl{i} group 99 type veth peer name fr{i} group 99\n"
                  for i in range(n))
    subprocess.run(["ip", "-batch", "-"], input=add, text=True, check=True)
    try:
        enslave = "".join(f"link set fl{i} master pnlfull0\n" for i in range(n))
        r = subprocess.run(["ip", "-force", "-batch", "-"], input=enslave, text=True,
                           capture_output=True)
        assert "Exchange full" in r.stderr              # the bridge is full now
        assert f"pnl{e1.id[:12]}" in links()            # partly with e1's pending port
        key = e2.join("f2").sandbox_key                  # room made by the reaper's batch
        assert f"pnl{e1.id[:12]}" not in links()
        out = subprocess.run(["ip", "-n", os.path.basename(key), "-j", "addr", "show",
                              "eth0"], capture_output=True, text=True, check=True).stdout
        assert json.loads(out)[0]["addr_info"][0]["local"].startswith("10.157.")
        e2.leave("f2")
    finally:
        subprocess.run(["ip", "link", "del", "group", "99"], check=True)
    e1.delete()
    e2.delete()
    ctrl.flush_teardown()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_every_reaper_batch_runs_within_its_delay(tmp_path, make_netns):
    """Not only the first: a device left after an earlier batch is deleted within
    max_delay too, without a flush and without a full backlog."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "delay", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                       "10.158.0.1/16"}})
    ns = make_netns("delayext")
    for i in range(3):
        ep = net.create_endpoint(f"e{i}")
        ep.join(f"d{i}", netns_path=f"/run/netns/{ns}")
        ep.leave(f"d{i}")
        name = f"pnl{ep.id[:12]}"
        deadline = time.monotonic() + 10                # max_delay is 250 ms
        while name in links() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert name not in links(), f"batch {i} did not run"
        ep.delete()
    assert ctrl.audit() == []
    net.delete()
    ctrl.close()


def test_every_namespace_teardown_batch_runs_within_its_delay(tmp_path):
    """Not only the first batch: a namespace left after an earlier batch goes within
    max_delay too, without a flush."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("null", "nsdelay")
    for i in range(3):
        ep = net.create_endpoint(f"e{i}")
        key = ep.join(f"nd{i}").sandbox_key
        ep.leave(f"nd{i}")
        deadline = time.monotonic() + 10                # max_delay is 50 ms
        while os.path.exists(key) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(key), f"batch {i} did not run"
        ep.delete()
    net.delete()
    ctrl.close()


def test_leave_after_the_runtime_removed_its_namespace(tmp_path):
    """The runtime deleted its own namespace before the leave, after this controller
    started and before it ever opened it: the leave still completes."""
    state = str(tmp_path / "state")
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    net = ctrl.new_network("bridge", "gone", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                      "10.159.0.1/16"}})
    subprocess.run(["ip", "netns", "add", "rtgone"], check=True)
    ep = net.create_endpoint("e")
    ep.join("rg", netns_path="/run/netns/rtgone")
    ctrl.close()
    c = pynetlib.Controller(state, host_routes=lambda: [])
    subprocess.run(["ip", "netns", "del", "rtgone"], check=True)
    e = c.network_by_name("gone").endpoint_by_name("e")
    e.leave("rg")
    e.delete()
    c.flush_teardown()
    deadline = time.monotonic() + 30                    # the kernel's own async cleanup
    while f"pnl{ep.id[:12]}" in links() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"pnl{ep.id[:12]}" not in links()
    assert c.audit() == []
    c.network_by_name("gone").delete()
    c.close()


def test_network_deleted_before_the_reapers_batch(tmp_path, caplog):
    """The last firewalled network is deleted (its nftables table with it) while the
    reaper still holds retired ports of its containers: the batch deletes them and has
    nothing to take out of a set that is gone. Nothing is reported, nothing is left."""
    ctrl = new_ctrl(tmp_path)
    net = ctrl.new_network("bridge", "gone", {netlabel.GENERIC_DATA: {"AddressIPv4":
                                                                      "10.161.0.1/16"}})
    reaper = ctrl._drivers["bridge"]._reaper()
    reaper.max_delay = 60                     # the batch waits until it is flushed
    eps = [net.create_endpoint(f"e{i}") for i in range(4)]
    for i, ep in enumerate(eps):
        ep.join(f"gn{i}")
    for i, ep in enumerate(eps):
        ep.leave(f"gn{i}")
        ep.delete()
    assert retired_set() != []                # the ports wait in the set for the batch
    net.delete()
    assert subprocess.run(["nft", "list", "table", "bridge", "pynetlib"],
                          capture_output=True).returncode != 0      # the table is gone
    with caplog.at_level("WARNING", logger="pynetlib"):
        ctrl.flush_teardown()
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    assert [n for n in links() if n.startswith("pnl")] == []
    assert ctrl.audit() == []
    ctrl.close()
