"""Attach a container to a bridge with one veth, in three netlink round trips."""

from __future__ import annotations

import ipaddress

from pynetlib._ffi import ffi, lib
from pynetlib.errors import BadRequestError
from pynetlib.kernel import validate
from pynetlib.kernel._check import check, new_err
from pynetlib.kernel.netlink import Link, NetlinkSocket
from pynetlib.kernel.netns import Netns

_STEPS = ("veth create", "container link lookup")


def attach_veth(host: NetlinkSocket, netns: Netns, host_name: str, cont_name: str = "eth0", *,
                bridge: Link | None = None, mtu: int | None = None, mac: str | None = None,
                address: "ipaddress.IPv4Interface | str | None" = None,
                gateway: "ipaddress.IPv4Address | str | None" = None,
                address6: "ipaddress.IPv6Interface | str | None" = None,
                gateway6: "ipaddress.IPv6Address | str | None" = None,
                alias: str | None = None, group: int | None = None,
                lo_up: bool = True) -> int:
    """Plumb a container: veth ``host_name`` (on ``bridge``, up) whose peer ``cont_name``
    is created inside ``netns`` (with ``mac``/``mtu``, up), then lo up, the addresses and
    the default routes inside ``netns``. Returns the container end's ifindex. On failure
    the veth is removed again and a KernelError says which step failed."""
    keep = []
    req = ffi.new("struct pnl_attach_req *")
    lib.pnl_attach_req_init(req)

    def cbuf(raw: bytes, t: str = "char[]"):
        b = ffi.new(t, raw)
        keep.append(b)
        return b

    req.host_name = cbuf(validate.ifname(host_name))
    req.cont_name = cbuf(validate.ifname(cont_name))
    req.cont_netns_fd = netns.fileno()
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
    if address is not None:
        a = validate.interface(address)
        if a.version != 4:
            raise BadRequestError(f"address {a} is not IPv4 (use address6)")
        req.family4, req.addr4, req.prefixlen4 = 2, cbuf(a.ip.packed, "unsigned char[]"), \
            a.network.prefixlen
        if gateway is not None:
            g = validate.address(gateway)
            if g.version != 4:
                raise BadRequestError(f"gateway {g} is not IPv4")
            req.gateway4 = cbuf(g.packed, "unsigned char[]")
    elif gateway is not None:
        raise BadRequestError("an IPv4 gateway needs an IPv4 address")
    if address6 is not None:
        a6 = validate.interface(address6)
        if a6.version != 6:
            raise BadRequestError(f"address6 {a6} is not IPv6")
        req.family6, req.addr6, req.prefixlen6 = 10, cbuf(a6.ip.packed, "unsigned char[]"), \
            a6.network.prefixlen
        if gateway6 is not None:
            g6 = validate.address(gateway6)
            if g6.version != 6:
                raise BadRequestError(f"gateway6 {g6} is not IPv6")
            req.gateway6 = cbuf(g6.packed, "unsigned char[]")
    elif gateway6 is not None:
        raise BadRequestError("an IPv6 gateway needs an IPv6 address")

    res = ffi.new("struct pnl_attach_result *")
    err = new_err()
    rc = lib.pnl_veth_attach(host._sock(), netns.socket()._sock(), req, res, err)
    if rc < 0:
        step = _STEPS[err.index] if 0 <= err.index < 2 else "container address/route setup"
        check(rc, err, f"attach ({step})", host_name)
    return res.cont_ifindex
