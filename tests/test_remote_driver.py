"""The remote driver end to end: a controller consuming a fake plugin served by the test
on a unix socket in a temporary plugin directory, inside the test run's namespaces.
Kernel state is read back with pyroute2, never through pynetlib."""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _fake_plugin import HANG, FakePlugin, Raw  # noqa: E402
from conftest import requires_kernel  # noqa: E402

import pynetlib  # noqa: E402
from pynetlib.store import _row_sum  # noqa: E402
from pynetlib import netlabel  # noqa: E402
from pynetlib.drivers.remote import (NotANetworkDriverError, PluginCallError,  # noqa: E402
                                     PluginReplyError, PluginTimeoutError,
                                     PluginUnavailableError, RemoteDriver)
from pynetlib.errors import NoServiceError, UnknownDriverError  # noqa: E402

pytestmark = [requires_kernel, pytest.mark.kernel]

PLUGIN = "fakenet"
CALL_TIMEOUT = 0.8
HOST_END, CONT_END = "plh0", "plc0"
SUBNET_GW, EP_ADDR, EP_MAC = "10.99.0.1", "10.99.0.2/24", "02:00:0a:63:00:02"
IFF_UP = 1


# -- helpers -------------------------------------------------------------------------------

def ipr():
    from pyroute2 import IPRoute

    return IPRoute()


def host_links() -> dict[str, dict]:
    """Every device of the test run's namespace: name -> (index, kind, flags, master, addrs)."""
    with ipr() as r:
        out = {}
        for link in r.get_links():
            name = link.get("IFLA_IFNAME")
            addrs = sorted(f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                           for a in r.get_addr(index=link["index"]))
            out[name] = {"index": link["index"], "flags": link["flags"] & IFF_UP,
                         "kind": link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")),
                         "master": link.get("IFLA_MASTER"), "addrs": addrs}
        return out


def delete_link(name: str) -> None:
    with ipr() as r:
        idx = r.link_lookup(ifname=name)
        if idx:
            r.link("del", index=idx[0])


def make_veth(host_end: str = HOST_END, cont_end: str = CONT_END) -> None:
    with ipr() as r:
        r.link("add", ifname=host_end, kind="veth", peer=cont_end)
        r.link("set", index=r.link_lookup(ifname=host_end)[0], state="up")


class VethPlugin:
    """Plugin behaviour of a typical driver: addresses at CreateEndpoint, a veth pair
    made at Join (the container end handed over), the pair deleted at Leave."""

    def __init__(self, fake: FakePlugin, *, join_reply=None, make=make_veth) -> None:
        self.fake = fake
        fake.on("NetworkDriver.CreateEndpoint", lambda b: {
            "Interface": {"Address": EP_ADDR, "AddressIPv6": "", "MacAddress": EP_MAC}})
        fake.on("NetworkDriver.EndpointOperInfo", lambda b: {"Value": {"vlan": 7}})
        self.join_reply = join_reply or (lambda b: {
            "InterfaceName": {"SrcName": CONT_END, "DstPrefix": "eth"},
            "Gateway": SUBNET_GW, "GatewayIPv6": "", "StaticRoutes": None,
            "DisableGatewayService": False})
        self.make = make
        fake.on("NetworkDriver.Join", self._join)
        fake.on("NetworkDriver.Leave", self._leave)

    def _join(self, body):
        if self.make is not None:
            self.make()
        return self.join_reply(body)

    def _leave(self, body):
        delete_link(HOST_END)
        return {}


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture
def no_leaks():
    """Nothing the test made is left in the host namespace or /run/netns."""
    links_before = set(host_links())
    ns_before = set(os.listdir("/run/netns"))
    yield
    assert set(host_links()) == links_before, "devices leaked"
    assert set(os.listdir("/run/netns")) == ns_before, "namespaces leaked"


@pytest.fixture
def plugin_dir(tmp_path):
    d = tmp_path / "plugins"
    d.mkdir()
    return str(d)


@pytest.fixture
def fake(plugin_dir):
    p = FakePlugin(os.path.join(plugin_dir, PLUGIN + ".sock")).start()
    yield p
    p.stop()


def open_ctrl(state_dir: str, plugin_dir: str) -> pynetlib.Controller:
    return pynetlib.Controller(state_dir, host_routes=lambda: [], plugin_dirs=[plugin_dir],
                               plugin_call_timeout=CALL_TIMEOUT, plugin_connect_timeout=0.5,
                               plugin_retries=2)


@pytest.fixture
def rctrl(no_leaks, tmp_path, plugin_dir, fake):
    c = open_ctrl(str(tmp_path / "state"), plugin_dir)
    yield c
    for net in c.networks():
        for ep in net.endpoints():
            if ep.joined_container:
                ep.leave(ep.joined_container)
            ep.delete()
        net.delete()
    assert c.audit() == []
    c.close()


def assert_clean_after_failed_join(ctrl, ep) -> None:
    assert ep.joined_container is None
    assert ep.info().sandbox_key is None
    assert ctrl.sandboxes() == []
    assert ctrl.audit() == []
    assert [f for f in os.listdir("/run/netns") if f.startswith("pnl")] == []


# -- activation ----------------------------------------------------------------------------

def test_unknown_type_without_plugin(rctrl):
    with pytest.raises(UnknownDriverError):
        rctrl.new_network("nosuchplugin", "n")
    with pytest.raises(UnknownDriverError):
        rctrl.new_network("../../etc/x", "n")
    assert rctrl.networks() == []


def test_lazy_activation_on_first_use_only(rctrl, fake):
    assert fake.calls == []                        # nothing at controller start
    n1 = rctrl.new_network(PLUGIN, "rn1", options={netlabel.GENERIC_DATA: {"vlan": 7}})
    assert fake.methods() == ["Plugin.Activate", "NetworkDriver.GetCapabilities",
                              "NetworkDriver.CreateNetwork"]
    assert fake.bodies("NetworkDriver.CreateNetwork") == [{
        "NetworkID": n1.id, "Options": {netlabel.GENERIC_DATA: {"vlan": 7}},
        "IPv4Data": [], "IPv6Data": []}]
    rctrl.new_network(PLUGIN, "rn2")
    assert fake.methods().count("Plugin.Activate") == 1
    assert isinstance(n1._driver, RemoteDriver) and n1._driver.capabilities.scope == "local"
    assert sorted(n.name for n in rctrl.networks()) == ["rn1", "rn2"]


def test_concurrent_first_use_activates_once(rctrl, fake):
    fake.on("Plugin.Activate", lambda b: (time.sleep(0.2), {"Implements": ["NetworkDriver"]})[1])
    errors = []

    def create(i):
        try:
            rctrl.new_network(PLUGIN, f"c{i}")
        except Exception as e:       # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.methods().count("Plugin.Activate") == 1
    assert fake.methods().count("NetworkDriver.CreateNetwork") == 4


def test_plugin_not_implementing_network_driver(no_leaks, tmp_path, plugin_dir):
    with FakePlugin(os.path.join(plugin_dir, "volplug.sock"), implements=["VolumeDriver"]) as p:
        c = open_ctrl(str(tmp_path / "s"), plugin_dir)
        try:
            with pytest.raises(NotANetworkDriverError) as e:
                c.new_network("volplug", "n")
            assert isinstance(e.value, UnknownDriverError)
            assert "VolumeDriver" in str(e.value)
            assert p.methods() == ["Plugin.Activate"]
            assert "volplug" not in c._drivers and c.networks() == []
        finally:
            c.close()


@pytest.mark.parametrize("scope", ["", "cluster", 5, None])
def test_bad_scope_aborts_registration(no_leaks, tmp_path, plugin_dir, scope):
    with FakePlugin(os.path.join(plugin_dir, "scoped.sock")) as p:
        p.on("NetworkDriver.GetCapabilities", lambda b: {"Scope": scope})
        c = open_ctrl(str(tmp_path / "s"), plugin_dir)
        try:
            with pytest.raises(PluginReplyError, match="Scope"):
                c.new_network("scoped", "n")
            assert "scoped" not in c._drivers and c.networks() == []
            assert "NetworkDriver.CreateNetwork" not in p.methods()
        finally:
            c.close()


def test_discovery_through_spec_and_json_files(no_leaks, tmp_path, plugin_dir):
    elsewhere = str(tmp_path / "elsewhere")
    with FakePlugin(os.path.join(elsewhere, "a.sock")) as pa, \
            FakePlugin(os.path.join(elsewhere, "b.sock")) as pb:
        with open(os.path.join(plugin_dir, "specplug.spec"), "w") as f:
            f.write(f"unix://{pa.socket_path}\n")
        os.makedirs(os.path.join(plugin_dir, "jsonplug"))
        with open(os.path.join(plugin_dir, "jsonplug", "jsonplug.json"), "w") as f:
            f.write(f'{{"Name": "jsonplug", "Addr": "unix://{pb.socket_path}"}}')
        for f in ("specplug.spec", "jsonplug/jsonplug.json"):
            os.chmod(os.path.join(plugin_dir, f), 0o644)
        c = open_ctrl(str(tmp_path / "s"), plugin_dir)
        try:
            c.new_network("specplug", "s1").delete()
            c.new_network("jsonplug", "j1").delete()
            assert pa.methods()[0] == "Plugin.Activate" and pb.methods()[0] == "Plugin.Activate"
            assert "NetworkDriver.DeleteNetwork" in pa.methods()
        finally:
            c.close()


def test_stored_networks_come_back_after_a_restart(no_leaks, tmp_path, plugin_dir, fake):
    state = str(tmp_path / "state")
    c = open_ctrl(state, plugin_dir)
    net = c.new_network(PLUGIN, "kept")
    c.close()
    c2 = open_ctrl(state, plugin_dir)
    try:
        assert [n.name for n in c2.networks()] == ["kept"]      # activated at start
        assert fake.methods().count("Plugin.Activate") == 2
        c2.network_by_id(net.id).delete()
        assert c2.audit() == []
    finally:
        c2.close()


# -- the whole lifecycle -------------------------------------------------------------------

def test_full_lifecycle(rctrl, fake, ipr_in):
    VethPlugin(fake)
    net = rctrl.new_network(PLUGIN, "life")
    ep = net.create_endpoint("e1")
    assert fake.bodies("NetworkDriver.CreateEndpoint") == [{
        "NetworkID": net.id, "EndpointID": ep.id, "Options": {},
        "Interface": {"Address": "", "AddressIPv6": "", "MacAddress": ""}}]
    iface = ep.info().interfaces[0]
    assert (str(iface.address), iface.mac_address) == (EP_ADDR, EP_MAC)
    assert ep.driver_info() == {"vlan": 7}

    data = ep.join("ctr1")
    assert fake.bodies("NetworkDriver.Join") == [{
        "NetworkID": net.id, "EndpointID": ep.id, "SandboxKey": data.sandbox_key,
        "Options": {}}]
    assert ep.info().gateway is not None and str(ep.info().gateway) == SUBNET_GW
    # the container end was moved: gone from the host, eth0 in the sandbox
    assert CONT_END not in host_links() and HOST_END in host_links()
    sb = ipr_in(os.path.basename(data.sandbox_key))
    (eth0,) = sb.link_lookup(ifname="eth0")
    link = sb.get_links(eth0)[0]
    assert link.get("IFLA_ADDRESS") == EP_MAC and link["flags"] & IFF_UP
    assert link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "veth"
    addrs = [(a.get("IFA_ADDRESS"), a["prefixlen"])
             for a in sb.get_addr(family=socket.AF_INET, index=eth0)]
    assert addrs == [("10.99.0.2", 24)]
    (default,) = [r for r in sb.get_routes(family=socket.AF_INET, table=254)
                  if r["dst_len"] == 0]
    assert default.get("RTA_GATEWAY") == SUBNET_GW and default.get("RTA_OIF") == eth0
    # external connectivity: offered (the fake answers 404: ignored)
    assert "NetworkDriver.ProgramExternalConnectivity" in fake.methods()

    ep.leave("ctr1")
    m = fake.methods()
    assert m.index("NetworkDriver.RevokeExternalConnectivity") < m.index("NetworkDriver.Leave")
    assert CONT_END not in host_links() and HOST_END not in host_links()
    rctrl.flush_teardown()                 # the namespace goes on the teardown thread
    assert not os.path.exists(data.sandbox_key)
    ep.delete()
    net.delete()
    assert fake.methods()[-2:] == ["NetworkDriver.DeleteEndpoint", "NetworkDriver.DeleteNetwork"]


def test_static_address_is_sent_and_kept(rctrl, fake, ipr_in):
    VethPlugin(fake)
    fake.on("NetworkDriver.CreateEndpoint", lambda b: {"Interface": None})
    net = rctrl.new_network(PLUGIN, "static")
    ep = net.create_endpoint("e1", ipv4="10.99.0.9/24", mac="02:00:00:00:00:09")
    assert fake.bodies("NetworkDriver.CreateEndpoint")[0]["Interface"] == {
        "Address": "10.99.0.9/24", "AddressIPv6": "", "MacAddress": "02:00:00:00:00:09"}
    data = ep.join("ctr2")
    sb = ipr_in(os.path.basename(data.sandbox_key))
    (eth0,) = sb.link_lookup(ifname="eth0")
    assert [a.get("IFA_ADDRESS") for a in sb.get_addr(family=socket.AF_INET, index=eth0)] == \
        ["10.99.0.9"]


# -- hostile CreateEndpoint replies --------------------------------------------------------

@pytest.mark.parametrize("reply", [
    {"Interface": {"Address": "10.99.0.50/24"}},
    {"Interface": {"MacAddress": "02:00:00:00:00:50"}},
    {"Interface": {"AddressIPv6": "fd00::50/64"}},
])
def test_addresses_returned_when_supplied_roll_back(rctrl, fake, reply):
    fake.on("NetworkDriver.CreateEndpoint", lambda b: reply)
    net = rctrl.new_network(PLUGIN, "sup")
    with pytest.raises(PluginReplyError, match="supplied"):
        net.create_endpoint("e1", ipv4="10.99.0.9/24")
    assert fake.methods()[-1] == "NetworkDriver.DeleteEndpoint"
    eid = fake.bodies("NetworkDriver.CreateEndpoint")[0]["EndpointID"]
    assert fake.bodies("NetworkDriver.DeleteEndpoint") == [{"NetworkID": net.id,
                                                           "EndpointID": eid}]
    assert net.endpoints() == []


def test_mac_returned_when_a_mac_was_requested_rolls_back(rctrl, fake):
    fake.on("NetworkDriver.CreateEndpoint", lambda b: {
        "Interface": {"Address": EP_ADDR, "MacAddress": "02:00:00:00:00:51"}})
    net = rctrl.new_network(PLUGIN, "macreq")
    with pytest.raises(PluginReplyError):
        net.create_endpoint("e1", mac="02:00:00:00:00:99")
    assert "NetworkDriver.DeleteEndpoint" in fake.methods() and net.endpoints() == []


def test_err_reply_fails_create_without_rollback_call(rctrl, fake):
    fake.on("NetworkDriver.CreateEndpoint", lambda b: {"Err": "pool exhausted"})
    net = rctrl.new_network(PLUGIN, "err")
    with pytest.raises(PluginCallError, match="pool exhausted"):
        net.create_endpoint("e1")
    assert "NetworkDriver.DeleteEndpoint" not in fake.methods()   # it failed: nothing to undo
    assert net.endpoints() == []


@pytest.mark.parametrize("reply", [
    Raw(200, b"{not json"),
    Raw(200, b'{"Interface": {"Address": "10.99.0.0/24"}}'),       # the network address
    Raw(200, b'{"Interface": {"Address": "10.99.0.7"}}'),          # no prefix
    Raw(200, b'{"Interface": {"Address": "fd00::1/64"}}'),         # wrong family
    Raw(200, b'{"Interface": {"MacAddress": "ff:ff:ff:ff:ff:ff"}}'),
    Raw(200, b'{"Interface": "eth0"}'),
    HANG,
])
def test_unusable_create_endpoint_replies_roll_back(rctrl, fake, reply):
    fake.on("NetworkDriver.CreateEndpoint", lambda b: reply)
    net = rctrl.new_network(PLUGIN, "bad")
    with pytest.raises((PluginReplyError, PluginTimeoutError)):
        net.create_endpoint("e1")
    assert fake.methods()[-1] == "NetworkDriver.DeleteEndpoint"
    assert net.endpoints() == []


def test_err_on_create_network(rctrl, fake):
    fake.on("NetworkDriver.CreateNetwork", lambda b: {"Err": "vlan 7 in use"})
    with pytest.raises(PluginCallError, match="vlan 7 in use"):
        rctrl.new_network(PLUGIN, "n")
    assert rctrl.networks() == []
    assert "NetworkDriver.DeleteNetwork" not in fake.methods()


# -- hostile Join replies ------------------------------------------------------------------

@pytest.fixture
def host_devices():
    """Devices of the host that existed before any endpoint: an uplink (a veth, as this
    kernel has no dummy driver, with an address and a route) and a bridge. Removed after
    the test."""
    with ipr() as r:
        r.link("add", ifname="uplink0", kind="veth", peer="uplink0p")
        r.link("set", index=r.link_lookup(ifname="uplink0p")[0], state="up")
        up = r.link_lookup(ifname="uplink0")[0]
        r.link("set", index=up, state="up")
        r.addr("add", index=up, address="192.0.2.10", prefixlen=24)
        r.route("add", dst="198.51.100.0/24", gateway="192.0.2.1")
        r.link("add", ifname="brx0", kind="bridge")
        r.link("set", index=r.link_lookup(ifname="brx0")[0], state="up")
    yield
    delete_link("uplink0")
    delete_link("brx0")


def _make_new_bridge():
    with ipr() as r:
        r.link("add", ifname=HOST_END, kind="bridge")


def _make_addressed_veth():
    make_veth()
    with ipr() as r:
        idx = r.link_lookup(ifname=CONT_END)[0]
        r.addr("add", index=idx, address="203.0.113.5", prefixlen=24)


def _make_enslaved_veth():
    make_veth()
    with ipr() as r:
        r.link("set", index=r.link_lookup(ifname=CONT_END)[0],
               master=r.link_lookup(ifname="brx0")[0])


def _make_routed_veth():
    make_veth()
    with ipr() as r:
        idx = r.link_lookup(ifname=CONT_END)[0]
        r.link("set", index=idx, state="up")
        r.route("add", dst="203.0.113.0/24", oif=idx)


@pytest.mark.parametrize("src,make,why", [
    ("uplink0", None, "existed before"),
    ("brx0", None, "existed before"),
    ("lo", None, "loopback"),
    ("ghost0", None, "does not exist"),
    (HOST_END, _make_new_bridge, "kind 'bridge'"),
    (CONT_END, _make_addressed_veth, "host addresses"),
    (CONT_END, _make_routed_veth, "routes"),
    (CONT_END, _make_enslaved_veth, "enslaved"),
])
def test_join_naming_a_device_that_is_not_the_endpoints_own(rctrl, fake, host_devices,
                                                             src, make, why):
    VethPlugin(fake, make=make, join_reply=lambda b: {
        "InterfaceName": {"SrcName": src, "DstPrefix": "eth"}, "Gateway": SUBNET_GW})
    net = rctrl.new_network(PLUGIN, "hostile")
    ep = net.create_endpoint("e1")
    before = host_links()
    before.pop(HOST_END, None)
    before.pop(CONT_END, None)
    with pytest.raises(PluginReplyError, match=why):
        ep.join("ctr")
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    after = host_links()
    for name, state in before.items():       # uplink, bridge, lo: untouched
        assert after.get(name) == state, name
    assert "eth0" not in after
    assert_clean_after_failed_join(rctrl, ep)
    with ipr() as r:                          # the uplink's route is still there
        assert any(rt.get("RTA_DST") == "198.51.100.0" for rt in r.get_routes(family=2))


@pytest.mark.parametrize("prefix", ["1eth", "eth/", "a-very-long-prefix", "eth 0", "", "ét"])
def test_join_with_a_bad_prefix(rctrl, fake, prefix):
    VethPlugin(fake, join_reply=lambda b: {
        "InterfaceName": {"SrcName": CONT_END, "DstPrefix": prefix}})
    ep = rctrl.new_network(PLUGIN, "pfx").create_endpoint("e1")
    with pytest.raises(PluginReplyError, match="DstPrefix"):
        ep.join("ctr")
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    assert_clean_after_failed_join(rctrl, ep)


@pytest.mark.parametrize("gw,why", [
    ("10.100.0.1", "not a host address of the endpoint's subnet"),
    ("10.99.0.2", "not a host address"),                # the endpoint's own address
    ("10.99.0.255", "not a host address"),              # broadcast
    ("fd00::1", "not an IPv4"),
    ("not-an-ip", "not an IP address"),
    ("127.0.0.1", "cannot be a gateway"),
])
def test_join_with_a_bad_gateway(rctrl, fake, gw, why):
    VethPlugin(fake, join_reply=lambda b: {
        "InterfaceName": {"SrcName": CONT_END, "DstPrefix": "eth"}, "Gateway": gw})
    ep = rctrl.new_network(PLUGIN, "gw").create_endpoint("e1")
    with pytest.raises(PluginReplyError, match=why):
        ep.join("ctr")
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    assert_clean_after_failed_join(rctrl, ep)


@pytest.mark.parametrize("routes,why", [
    ([{"Destination": "10.0.0.0/8", "RouteType": 0}], "needs a NextHop"),
    ([{"Destination": "10.0.0.1/8", "RouteType": 1}], "not a network"),
    ([{"Destination": "10.0.0.0/8", "RouteType": 1, "NextHop": "10.99.0.1"}], "no NextHop"),
    ([{"Destination": "10.0.0.0/8", "RouteType": 7}], "RouteType"),
    ([{"Destination": "10.0.0.0/8", "RouteType": 0, "NextHop": "10.99.0.1"}], "not supported"),
])
def test_join_with_static_routes(rctrl, fake, routes, why):
    VethPlugin(fake, join_reply=lambda b: {
        "InterfaceName": {"SrcName": CONT_END, "DstPrefix": "eth"}, "StaticRoutes": routes})
    ep = rctrl.new_network(PLUGIN, "routes").create_endpoint("e1")
    with pytest.raises(PluginReplyError, match=why):
        ep.join("ctr")
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    assert_clean_after_failed_join(rctrl, ep)


@pytest.mark.parametrize("reply,error", [
    (Raw(200, b'{"InterfaceName": {"SrcName": "x"' + b" " * (2 << 20) + b"}}"),
     PluginReplyError),
    (Raw(200, b"{not json"), PluginReplyError),
    (Raw(200, b'{"InterfaceName": ["plc0"]}'), PluginReplyError),
    (HANG, PluginTimeoutError),
])
def test_join_with_an_unusable_reply(rctrl, fake, reply, error):
    VethPlugin(fake, join_reply=lambda b: reply)
    ep = rctrl.new_network(PLUGIN, "unusable").create_endpoint("e1")
    t0 = time.monotonic()
    with pytest.raises(error):
        ep.join("ctr")
    assert time.monotonic() - t0 < CALL_TIMEOUT + 2.0       # bounded
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    assert CONT_END not in host_links()                     # the plugin's Leave removed it
    assert_clean_after_failed_join(rctrl, ep)


def test_join_err_reply(rctrl, fake):
    VethPlugin(fake, make=None, join_reply=lambda b: {"Err": "sandbox unreachable"})
    ep = rctrl.new_network(PLUGIN, "joinerr").create_endpoint("e1")
    with pytest.raises(PluginCallError, match="sandbox unreachable"):
        ep.join("ctr")
    assert fake.methods()[-1] == "NetworkDriver.Join"        # it failed: nothing to undo
    assert_clean_after_failed_join(rctrl, ep)


def test_a_failed_join_can_be_retried(rctrl, fake, ipr_in):
    plugin = VethPlugin(fake, join_reply=lambda b: {
        "InterfaceName": {"SrcName": CONT_END, "DstPrefix": "eth"}, "Gateway": "10.1.1.1"})
    ep = rctrl.new_network(PLUGIN, "retry").create_endpoint("e1")
    with pytest.raises(PluginReplyError):
        ep.join("ctr")
    plugin.join_reply = lambda b: {"InterfaceName": {"SrcName": CONT_END, "DstPrefix": "eth"},
                                   "Gateway": SUBNET_GW}
    data = ep.join("ctr")
    sb = ipr_in(os.path.basename(data.sandbox_key))
    assert sb.link_lookup(ifname="eth0")


# -- an unreachable plugin -----------------------------------------------------------------

def test_plugin_socket_gone(rctrl, fake):
    net = rctrl.new_network(PLUGIN, "gone")
    fake.stop()                                           # the socket file is removed
    t0 = time.monotonic()
    with pytest.raises(PluginUnavailableError) as e:
        net.create_endpoint("e1")
    assert isinstance(e.value, NoServiceError)
    assert time.monotonic() - t0 < 3.0
    assert net.endpoints() == []
    fake.start()                                          # back, so the fixture can clean up


def test_plugin_refusing_connections(rctrl, fake):
    net = rctrl.new_network(PLUGIN, "refused")
    fake.stop()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(fake.socket_path)                              # bound but not listening
    try:
        with pytest.raises(PluginUnavailableError, match="attempts"):
            net.create_endpoint("e1")
    finally:
        s.close()
        os.unlink(fake.socket_path)
    assert net.endpoints() == []
    fake.start()


# -- the rest of the driver contract -------------------------------------------------------

def test_join_into_the_hosts_own_namespace_is_refused(rctrl, fake):
    from pynetlib.errors import BadRequestError

    VethPlugin(fake)
    ep = rctrl.new_network(PLUGIN, "hostns").create_endpoint("e1")
    with pytest.raises(BadRequestError, match="use_default_sandbox"):
        ep.join("ctr", use_default_sandbox=True)
    assert "NetworkDriver.Join" not in fake.methods()
    assert_clean_after_failed_join(rctrl, ep)


def test_external_connectivity_failure_fails_the_join(rctrl, fake):
    VethPlugin(fake)
    fake.on("NetworkDriver.ProgramExternalConnectivity", lambda b: {"Err": "no NAT today"})
    ep = rctrl.new_network(PLUGIN, "ext").create_endpoint(
        "e1", options={netlabel.PORT_MAP: [pynetlib.PortBinding("tcp", 80, 8080)]})
    with pytest.raises(PluginCallError, match="no NAT today"):
        ep.join("ctr")
    (prog,) = fake.bodies("NetworkDriver.ProgramExternalConnectivity")
    assert prog["Options"][netlabel.PORT_MAP] == [
        {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}]
    assert fake.methods()[-1] == "NetworkDriver.Leave"
    assert CONT_END not in host_links()
    assert_clean_after_failed_join(rctrl, ep)


def test_configuring_a_plugin_driver_is_not_implemented(rctrl, fake):
    from pynetlib.errors import NotImplementedByDriverError

    rctrl.new_network(PLUGIN, "cfg")
    with pytest.raises(NotImplementedByDriverError):
        rctrl.configure_network_driver(PLUGIN, {"x": 1})


def test_audit_reports_driver_records_without_endpoints(rctrl, fake):
    from pynetlib.store import dumps

    net = rctrl.new_network(PLUGIN, "audited")
    net.create_endpoint("e1")
    assert rctrl.audit() == []
    stale = "f" * 64
    with rctrl.store.tx() as c:
        c.execute("INSERT INTO kv VALUES ('remote', ?, ?)", (f"ep/{net.id}/{stale}",
                                                            dumps({"baseline": 1})))
    assert rctrl.audit() == [f"remote endpoint record {stale} of network {net.id}: "
                             "no such endpoint"]
    with rctrl.store.tx() as c:
        c.execute("DELETE FROM kv WHERE owner='remote' AND key=?", (f"ep/{net.id}/{stale}",))


def test_a_rolled_back_endpoint_transaction_tells_the_plugin(rctrl, fake, monkeypatch):
    """The plugin created the endpoint, then the controller's transaction failed: the
    plugin gets DeleteEndpoint, and no record is left on either side."""
    import pynetlib.network

    def broken(ifaces):
        raise RuntimeError("the store write failed")

    net = rctrl.new_network(PLUGIN, "txfail")
    monkeypatch.setattr(pynetlib.network, "interfaces_to_json", broken)
    with pytest.raises(RuntimeError, match="store write failed"):
        net.create_endpoint("e1")
    monkeypatch.undo()
    (created,) = fake.bodies("NetworkDriver.CreateEndpoint")
    assert fake.bodies("NetworkDriver.DeleteEndpoint") == [
        {"NetworkID": net.id, "EndpointID": created["EndpointID"]}]
    assert net.endpoints() == [] and rctrl.audit() == []


def test_dual_stack_lifecycle(rctrl, fake, ipr_in):
    VethPlugin(fake, join_reply=lambda b: {
        "InterfaceName": {"SrcName": CONT_END, "DstPrefix": "net"},
        "Gateway": SUBNET_GW, "GatewayIPv6": "fd99::1"})
    fake.on("NetworkDriver.CreateEndpoint", lambda b: {
        "Interface": {"Address": EP_ADDR, "AddressIPv6": "fd99::2/64", "MacAddress": ""}})
    ep = rctrl.new_network(PLUGIN, "dual").create_endpoint("e1")
    assert str(ep.info().interfaces[0].address_ipv6) == "fd99::2/64"
    data = ep.join("ctr6")
    sb = ipr_in(os.path.basename(data.sandbox_key))
    (net0,) = sb.link_lookup(ifname="net0")                  # the plugin's prefix + index
    v6 = [a.get("IFA_ADDRESS") for a in sb.get_addr(family=socket.AF_INET6, index=net0)]
    assert "fd99::2" in v6
    (d6,) = [r for r in sb.get_routes(family=socket.AF_INET6, table=254) if r["dst_len"] == 0]
    assert d6.get("RTA_GATEWAY") == "fd99::1" and d6.get("RTA_OIF") == net0


def test_activation_while_another_thread_holds_the_controller_lock(no_leaks, tmp_path,
                                                                   plugin_dir, fake):
    """A stored network looked up by id (the controller's lock held while its driver is
    resolved) and a new network of the same type, at once: no deadlock, one activation."""
    state = str(tmp_path / "state")
    c = open_ctrl(state, plugin_dir)
    nid = c.new_network(PLUGIN, "stored").id
    c.close()
    fake.calls.clear()
    fake.on("NetworkDriver.GetCapabilities", lambda b: (time.sleep(0.3), {"Scope": "local"})[1])
    fake.stop()                                 # not there at start: nothing activated
    c = open_ctrl(state, plugin_dir)
    try:
        fake.start()
        results, errors = [], []

        def run(fn):
            try:
                results.append(fn())
            except Exception as e:   # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(lambda: c.new_network(PLUGIN, "new"),)),
                   threading.Thread(target=run, args=(lambda: c.network_by_id(nid),))]
        threads[0].start()                      # activating, inside GetCapabilities...
        time.sleep(0.1)
        threads[1].start()                      # ...when the lookup takes the lock
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads), "deadlock"
        assert errors == [] and len(results) == 2
        assert fake.methods().count("Plugin.Activate") == 1
        for n in c.networks():
            n.delete()
        assert c.audit() == []
    finally:
        c.close()


def test_a_slow_activation_does_not_hold_up_the_controller(no_leaks, tmp_path, plugin_dir,
                                                          fake):
    """A stored network's plugin activated by a lookup (slowly: the plugin takes 1.5 s
    to answer) does not make other users of the controller wait for it."""
    state = str(tmp_path / "state")
    c = open_ctrl(state, plugin_dir)
    nid = c.new_network(PLUGIN, "stored").id
    c.close()
    fake.calls.clear()
    fake.on("Plugin.Activate", lambda b: (time.sleep(1.5), {"Implements": ["NetworkDriver"]})[1])
    fake.stop()                                 # not there at start: nothing activated
    c = pynetlib.Controller(state, host_routes=lambda: [], plugin_dirs=[plugin_dir],
                            plugin_call_timeout=10)
    try:
        fake.start()
        found = []
        t = threading.Thread(target=lambda: found.append(c.network_by_id(nid)))
        t.start()
        deadline = time.monotonic() + 5
        while "Plugin.Activate" not in fake.methods():      # the lookup is activating
            assert time.monotonic() < deadline, "the lookup never asked the plugin"
            time.sleep(0.01)
        t0 = time.monotonic()
        c.host_socket()                         # takes the controller's lock
        bridges = [n.name for n in c.networks()]
        took = time.monotonic() - t0
        activating = t.is_alive()
        t.join(timeout=20)
        assert took < 0.5, f"the controller waited {took:.2f} s for the plugin"
        assert activating, "the activation was not slow: the test proves nothing"
        assert bridges == [] and [n.id for n in found] == [nid]
        for n in c.networks():
            n.delete()
        assert c.audit() == []
    finally:
        c.close()


def test_a_plugin_refusing_a_rollback_does_not_stop_the_controller(no_leaks, tmp_path,
                                                                    plugin_dir, fake):
    """A network create interrupted by a crash is rolled back by the next controller's
    reconcile; if the plugin refuses DeleteNetwork the controller still starts, reports
    it, keeps the record, and a later reconcile finishes the rollback."""
    state = str(tmp_path / "state")
    c = open_ctrl(state, plugin_dir)
    net = c.new_network(PLUGIN, "half")
    nid = net.id
    c.close()
    with sqlite3.connect(os.path.join(state, "pynetlib.db")) as db:   # as a crash leaves it
        db.create_function("pnl_sum", -1, _row_sum, deterministic=True)
        db.execute("UPDATE networks SET state='creating' WHERE id=?", (nid,))
    fake.on("NetworkDriver.DeleteNetwork", lambda b: {"Err": "busy, try later"})
    c = open_ctrl(state, plugin_dir)
    try:
        assert c.store.read().execute("SELECT name, state FROM networks").fetchall() == [
            ("half", "creating")]                  # kept for the next reconcile
        fake.on("NetworkDriver.DeleteNetwork", lambda b: {})
        actions = c.reconcile()
        assert any("rolled back an interrupted create" in a for a in actions), actions
        assert c.networks() == [] and c.audit() == []
    finally:
        c.close()
