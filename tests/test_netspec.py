"""pynetlib.netspec: the CLI's and the HTTP API's network settings as driver options."""

from __future__ import annotations

import pytest

from pynetlib import netlabel
from pynetlib.errors import BadRequestError
from pynetlib.netspec import NetworkSpec, network_options


def generic(**kw):
    return network_options(NetworkSpec(**kw)).get(netlabel.GENERIC_DATA)


def test_bridge_settings_map_to_bridge_options():
    assert generic(subnet="10.20.0.0/16") == {"AddressIPv4": "10.20.0.1/16"}
    assert generic(subnet="10.20.0.0/16", gateway="10.20.0.254", ip_range="10.20.1.0/24",
                   subnet_v6="fd00:20::/64", mtu=1400, internal=True,
                   driver_opts={"BridgeName": "br-x"}) == {
        "BridgeName": "br-x", "AddressIPv4": "10.20.0.254/16", "FixedCIDR": "10.20.1.0/24",
        "FixedCIDRv6": "fd00:20::/64", "EnableIPv6": True, "Mtu": 1400, "Internal": True}
    assert generic(ipv6=True) == {"EnableIPv6": True}
    assert network_options(NetworkSpec()) == {}


@pytest.mark.parametrize("kw, text", [
    (dict(subnet="10.20.0.1/16"), "host bits"),
    (dict(subnet="fd00::/64"), "IPv4"),
    (dict(subnet="10.20.0.0/31"), "too small"),
    (dict(gateway="10.20.0.1"), "needs a subnet"),
    (dict(ip_range="10.20.0.0/24"), "needs a subnet"),
    (dict(subnet="10.20.0.0/16", gateway="10.21.0.1"), "not a host address"),
    (dict(subnet="10.20.0.0/16", gateway="10.20.0.0"), "not a host address"),
    (dict(subnet="10.20.0.0/16", ip_range="10.21.0.0/24"), "not inside"),
    (dict(subnet_v6="10.0.0.0/8"), "IPv6"),
    (dict(mtu=67), "MTU"),
    (dict(mtu=True), "MTU"),
    (dict(mtu="1500"), "MTU"),
    (dict(driver="null", subnet="10.20.0.0/16"), "takes no subnet"),
    (dict(driver="host", internal=True), "takes no subnet"),
    (dict(driver_opts=[("a", 1)]), "mapping"),
])
def test_bad_settings_are_refused(kw, text):
    with pytest.raises(BadRequestError, match=text):
        network_options(NetworkSpec(**kw))


def test_other_drivers_take_their_options_as_they_are():
    assert network_options(NetworkSpec(driver="null")) == {}
    assert network_options(NetworkSpec(driver="remote-x", driver_opts={"k": "v"})) == {
        netlabel.GENERIC_DATA: {"k": "v"}}
