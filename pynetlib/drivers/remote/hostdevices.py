"""Is the host device a plugin named at Join really the endpoint's own?

The controller moves the device a plugin names (``InterfaceName.SrcName``) from the host
namespace into the container's. A confused or hostile plugin could name the host's
uplink, a bridge, ``lo``, or another container's device; moving any of those would cut
the host off or steal a device. So a device is accepted only if all of these hold:

- it exists in the host namespace and is not the loopback device;
- it is **new**: its ifindex is greater than the highest ifindex the host namespace had
  just before this endpoint's ``CreateEndpoint`` call (the *baseline*, kept with the
  endpoint's record). The kernel hands out ifindexes increasingly per namespace, so
  every device that existed before the endpoint's plugin calls (the uplink, bridges,
  other endpoints' devices) has an index at or below the baseline;
- its kind is one a plugin makes for a container: veth, macvlan, ipvlan or dummy (not a
  bridge, bond, vxlan, tunnel, physical NIC...);
- it is not enslaved to a bridge or bond (``master`` unset);
- it carries no pynetlib tag (``IFLA_IFALIAS`` ``pynetlib:...``): those are the bridge
  driver's;
- it has no address other than IPv6 link-local, and no route in the host namespace uses
  it (other than IPv6 link-local and multicast ones, which the kernel adds to every up
  device): a device that carries host traffic is not a container's.

What this cannot do: stop a plugin (which runs as root) from harming the host by
itself; it stops pynetlib from being the tool that does it. A device moved into the
host namespace from elsewhere may keep a high ifindex; the other checks still apply.
"""

from __future__ import annotations

import ipaddress
import os

from pynetlib.errors import ObjectNotFoundError

ALLOWED_KINDS = frozenset({"veth", "macvlan", "ipvlan", "dummy"})
IFF_LOOPBACK = 0x8
_TAG_PREFIX = "pynetlib:"
_LINK_LOCAL6 = ipaddress.ip_network("fe80::/10")
_MULTICAST6 = ipaddress.ip_network("ff00::/8")


class NotEndpointDevice(Exception):
    """The reason a device is refused (the driver turns it into a PluginReplyError)."""


def baseline(host) -> int:
    """The highest ifindex in the host namespace right now."""
    return max((link.index for link in host.links()), default=0)


def check_endpoint_device(host, name: str, base: int) -> int:
    """The ifindex of ``name`` if it may be moved into the endpoint's sandbox; raises
    :class:`NotEndpointDevice` with the reason otherwise. Reads only."""
    try:
        link = host.link_get(name)
    except ObjectNotFoundError:
        raise NotEndpointDevice(f"device {name!r} does not exist in the host namespace") \
            from None
    if link.flags & IFF_LOOPBACK or name == "lo":
        raise NotEndpointDevice(f"device {name!r} is the loopback device")
    if link.index <= base:
        raise NotEndpointDevice(f"device {name!r} (ifindex {link.index}) existed before the "
                                f"endpoint was created (baseline ifindex {base}): it is not "
                                "the endpoint's own")
    if link.kind not in ALLOWED_KINDS:
        raise NotEndpointDevice(f"device {name!r} is of kind {link.kind or 'none'!r}; a "
                                f"plugin hands over one of {sorted(ALLOWED_KINDS)}")
    if link.master:
        raise NotEndpointDevice(f"device {name!r} is enslaved to ifindex {link.master}")
    if link.alias.startswith(_TAG_PREFIX):
        raise NotEndpointDevice(f"device {name!r} belongs to pynetlib ({link.alias})")
    addrs = [a for a in host.addrs(link.index) if not (a.version == 6 and a.ip in _LINK_LOCAL6)]
    if addrs:
        raise NotEndpointDevice(f"device {name!r} has host addresses "
                                f"{[str(a) for a in addrs]}")
    if _has_routes(link.name):
        raise NotEndpointDevice(f"device {name!r} carries routes of the host namespace")
    return link.index


def _has_routes(ifname: str) -> bool:
    """Whether a route of the calling thread's namespace (IPv4 main table, IPv6 all
    tables) goes through ``ifname``, ignoring IPv6 link-local and multicast routes."""
    net = "/proc/thread-self/net"
    try:
        with open(os.path.join(net, "route")) as f:
            next(f, None)
            if any(line.split("\t", 1)[0] == ifname for line in f):
                return True
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(net, "ipv6_route")) as f:
            for line in f:
                fields = line.split()
                if len(fields) != 10 or fields[9] != ifname:
                    continue
                dest = ipaddress.IPv6Address(int(fields[0], 16))
                if dest in _LINK_LOCAL6 or dest in _MULTICAST6:
                    continue
                return True
    except FileNotFoundError:
        pass
    return False
