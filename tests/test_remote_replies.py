"""Reply validation alone: what Go plugins really send is accepted, wrong shapes are not."""

from __future__ import annotations

import ipaddress

import pytest

from pynetlib.drivers.remote import replies
from pynetlib.drivers.remote.errors import PluginReplyError


def test_go_style_empty_replies_are_accepted():
    # encoding/json writes every field of the response structs, empty or null
    assert replies.create_endpoint("p", {"Err": "", "Interface": None}).empty()
    assert replies.create_endpoint("p", {"Interface": {"Address": "", "AddressIPv6": "",
                                                       "MacAddress": "", "IPAliases": None}}
                                   ).empty()
    j = replies.join("p", {"Err": "", "InterfaceName": None, "Gateway": "", "GatewayIPv6": "",
                           "StaticRoutes": None, "DisableGatewayService": False})
    assert j == replies.JoinReply()
    assert replies.oper_info("p", {"Value": None}) == {}


def test_a_full_join_reply():
    j = replies.join("p", {
        "InterfaceName": {"SrcName": "veth1", "DstPrefix": "eth", "DstName": ""},
        "Gateway": "10.0.0.1", "GatewayIPv6": "fd00::1",
        "StaticRoutes": [{"Destination": "10.1.0.0/16", "RouteType": 0, "NextHop": "10.0.0.254"},
                         {"Destination": "fd01::/64", "RouteType": 1}],
        "DisableGatewayService": True, "SomethingNewer": {"x": 1}})
    assert (j.src_name, j.dst_prefix) == ("veth1", "eth")
    assert j.gateway == ipaddress.ip_address("10.0.0.1")
    assert j.gateway_ipv6 == ipaddress.ip_address("fd00::1")
    assert [r.route_type for r in j.static_routes] == [0, 1]
    assert j.static_routes[0].next_hop == ipaddress.ip_address("10.0.0.254")
    assert j.disable_gateway_service is True


@pytest.mark.parametrize("reply,field", [
    ({"InterfaceName": {"DstPrefix": "eth"}}, "SrcName"),
    ({"InterfaceName": {"SrcName": "a/b", "DstPrefix": "eth"}}, "SrcName"),
    ({"InterfaceName": {"SrcName": "x" * 16, "DstPrefix": "eth"}}, "SrcName"),
    ({"InterfaceName": {"SrcName": 5, "DstPrefix": "eth"}}, "SrcName"),
    ({"InterfaceName": {"SrcName": "v", "DstPrefix": "eth", "DstName": "eth0"}}, "DstName"),
    ({"Gateway": 10}, "Gateway"),
    ({"GatewayIPv6": "10.0.0.1"}, "GatewayIPv6"),
    ({"StaticRoutes": {"Destination": "10.0.0.0/8"}}, "StaticRoutes"),
    ({"StaticRoutes": ["10.0.0.0/8"]}, r"StaticRoutes\[0\]"),
    ({"StaticRoutes": [{"Destination": "10.0.0.0/8", "RouteType": True}]}, "RouteType"),
    ({"StaticRoutes": [{"Destination": "10.0.0.0/8", "NextHop": "fd00::1"}]}, "IP version"),
    ({"DisableGatewayService": "yes"}, "DisableGatewayService"),
])
def test_wrong_join_replies(reply, field):
    with pytest.raises(PluginReplyError, match=field):
        replies.join("p", reply)


def test_too_many_static_routes():
    routes = [{"Destination": f"10.{i // 256}.{i % 256}.0/24", "RouteType": 1}
              for i in range(replies.MAX_STATIC_ROUTES + 1)]
    with pytest.raises(PluginReplyError, match="more than"):
        replies.join("p", {"StaticRoutes": routes})


@pytest.mark.parametrize("reply", [{"Implements": "NetworkDriver"},
                                   {"Implements": ["NetworkDriver", 3]}])
def test_wrong_activation_replies(reply):
    with pytest.raises(PluginReplyError, match="Implements"):
        replies.activate("p", reply)


def test_capabilities():
    assert replies.capabilities("p", {"Scope": "global", "ConnectivityScope": "local"}) == \
        replies.Capabilities("global", "local")
    with pytest.raises(PluginReplyError, match="ConnectivityScope"):
        replies.capabilities("p", {"Scope": "local", "ConnectivityScope": "swarm"})


@pytest.mark.parametrize("iface", [
    {"Address": "0.0.0.0/0"}, {"Address": "127.0.0.5/8"}, {"Address": "224.0.0.1/24"},
    {"Address": "10.0.0.255/24"}, {"AddressIPv6": "::1/128"}, {"AddressIPv6": "ff02::1/64"},
    {"MacAddress": "00:00:00:00:00:00"}, {"MacAddress": "01:00:5e:00:00:01"},
    {"MacAddress": "zz:zz:zz:zz:zz:zz"}, {"Address": ["10.0.0.2/24"]},
])
def test_addresses_a_container_cannot_have(iface):
    with pytest.raises(PluginReplyError, match="Interface"):
        replies.create_endpoint("p", {"Interface": iface})


def test_point_to_point_prefixes_are_fine():
    r = replies.create_endpoint("p", {"Interface": {"Address": "10.0.0.0/31",
                                                    "MacAddress": "02:AA:00:00:00:01"}})
    assert str(r.address) == "10.0.0.0/31" and r.mac == "02:aa:00:00:00:01"
