"""Attach a container to a bridge with one veth, in three netlink round trips."""

from __future__ import annotations

import ipaddress
import socket

from pynetlib._ffi import ffi, lib
from pynetlib.errors import BadRequestError
from pynetlib.kernel import validate
from pynetlib.kernel._check import check, new_err
from pynetlib.kernel.netlink import Link, NetlinkSocket
from pynetlib.kernel.netns import Netns

_STEPS = ("veth create", "container link lookup")


def _put_address(req, cbuf, version: int, address, gateway) -> None:
    """One IP version's address (and default route gateway) of the container end."""
    if address is None:
        if gateway is not None:
            raise BadRequestError(f"an IPv{version} gateway needs an IPv{version} address")
        return
    a = validate.interface(address)
    if a.version != version:
        raise BadRequestError(f"address {a} is not IPv{version}")
    fields = ("family4", "addr4", "prefixlen4", "gateway4") if version == 4 else \
        ("family6", "addr6", "prefixlen6", "gateway6")
    setattr(req, fields[0], socket.AF_INET if version == 4 else socket.AF_INET6)
    setattr(req, fields[1], cbuf(a.ip.packed, "unsigned char[]"))
    setattr(req, fields[2], a.network.prefixlen)
    if gateway is not None:
        g = validate.address(gateway)
        if g.version != version:
            raise BadRequestError(f"gateway {g} is not IPv{version}")
        setattr(req, fields[3], cbuf(g.packed, "unsigned char[]"))


def attach_veth(host: NetlinkSocket, netns: Netns, host_name: str, cont_name: str = "eth0",
                **kwargs) -> int:
    """Plumb a container: veth ``host_name`` (on ``bridge``, up) whose peer ``cont_name``
    is created inside ``netns`` (with ``mac``/``mtu``, up), then lo up, the addresses and
    the default routes inside ``netns``. Returns the container end's ifindex. On failure
    the veth is removed again and a KernelError says which step failed. Keyword
    arguments: those of :func:`attach_veth_pair`."""
    return attach_veth_pair(host, netns, host_name, cont_name, **kwargs)[0]


def attach_veth_pair(host: NetlinkSocket, netns: Netns, host_name: str,
                     cont_name: str = "eth0", *,
                     bridge: Link | None = None, mtu: int | None = None, mac: str | None = None,
                     address: "ipaddress.IPv4Interface | str | None" = None,
                     gateway: "ipaddress.IPv4Address | str | None" = None,
                     address6: "ipaddress.IPv6Interface | str | None" = None,
                     gateway6: "ipaddress.IPv6Address | str | None" = None,
                     alias: str | None = None, group: int | None = None,
                     lo_up: bool = True) -> tuple[int, int]:
    """:func:`attach_veth`; returns the ifindexes of (the container end, the host end)."""
    keep = []
    req = ffi.new("struct pnl_attach_req *")
    lib.pnl_attach_req_init(req)

    def cbuf(raw: bytes, t: str = "char[]"):
        b = ffi.new(t, raw)
        keep.append(b)
        return b

    req.host_name = cbuf(validate.ifname(host_name))
    req.cont_name = cbuf(validate.ifname(cont_name))
    req.lo_up = 1 if lo_up else 0
    if bridge is not None:
        req.master = host.index(bridge)
    if mtu is not None:
        req.mtu = validate.mtu(mtu)
    if mac is not None:
        req.cont_mac = cbuf(validate.mac(mac), "unsigned char[]")
    if alias is not None:
        req.alias = cbuf(validate.alias(alias))
    if group is not None:
        req.group = validate.u32(group, "link group")
    for version, addr, gw in ((4, address, gateway), (6, address6, gateway6)):
        _put_address(req, cbuf, version, addr, gw)

    res = ffi.new("struct pnl_attach_result *")
    err = new_err()
    with host._in_use() as hs, netns.socket()._in_use() as cs, netns._in_use() as nsfd:
        req.cont_netns_fd = nsfd
        rc = lib.pnl_veth_attach(hs, cs, req, res, err)
    if rc < 0:
        step = _STEPS[err.index] if 0 <= err.index < 2 else "container address/route setup"
        check(rc, err, f"attach ({step})", host_name)
    return res.cont_ifindex, res.host_ifindex
