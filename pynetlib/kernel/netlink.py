"""A netlink (rtnetlink) socket bound to one network namespace.

Open it once per namespace and use it from any thread: the C library serialises each
transaction on the socket and checks sequence numbers, so concurrent callers never see
each other's replies. Devices are named by index (``int``) or name (``str``); lookups
by name happen in the kernel, never by dumping and filtering.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket as _socket
from dataclasses import dataclass
from typing import Iterable, Union

from pynetlib import forksafe
from pynetlib._ffi import ffi, lib
from pynetlib.errors import BadRequestError, DumpInterruptedError
from pynetlib.kernel import validate
from pynetlib.kernel._check import check, new_err, raise_for
from pynetlib.kernel.holds import Holds
from pynetlib.kernel.netns import Netns, held_fd

Link = Union[int, str]
Interface = Union[ipaddress.IPv4Interface, ipaddress.IPv6Interface]

IFF_UP = 0x1
DUMP_RETRIES = 5
_MACVLAN_MODES = {"private": 1, "vepa": 2, "bridge": 4, "passthru": 8, "source": 16}


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """A network device as the kernel reports it."""

    index: int
    name: str
    kind: str
    flags: int
    mtu: int
    mac: str
    master: int
    link: int
    link_netnsid: int
    group: int
    operstate: int
    alias: str

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


def _mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _link_info(c) -> LinkInfo:
    return LinkInfo(
        index=c.ifindex, name=ffi.string(c.name).decode(), kind=ffi.string(c.kind).decode(),
        flags=c.flags, mtu=c.mtu, mac=_mac_str(bytes(c.mac[0:c.mac_len])), master=c.master,
        link=c.link, link_netnsid=c.link_netnsid, group=c.group, operstate=c.operstate,
        alias=ffi.string(c.alias).decode("utf-8", "replace"))


class _Req:
    """A struct pnl_link_req, the buffers its pointers refer to (kept alive) and the
    namespace fds it names (held until the ``with`` block ends)."""

    __slots__ = ("c", "keep", "_held")

    def __init__(self) -> None:
        self.c = ffi.new("struct pnl_link_req *")
        lib.pnl_link_req_init(self.c)
        self.keep: list = []
        self._held = contextlib.ExitStack()

    def __enter__(self) -> "_Req":
        return self

    def __exit__(self, *exc) -> None:
        self._held.close()

    def netns_fd(self, ns: "Netns | int") -> int:
        return self._held.enter_context(held_fd(ns))

    def buf(self, raw: bytes):
        b = ffi.new("char[]", raw)
        self.keep.append(b)
        return b

    def ubuf(self, raw: bytes):
        b = ffi.new("unsigned char[]", raw)
        self.keep.append(b)
        return b


class SocketLifetime:
    """A C ``struct pnl_sock`` owned by a Python object: closed once, by ``close()``,
    the ``with`` block or garbage collection; any use after that raises ValueError.

    Every C call holds the socket (:meth:`_in_use`, see pynetlib/kernel/holds.py):
    ``close()`` frees it after the calls in flight (a controller closed while requests
    run)."""

    _holds: Holds | None = None         # None until the socket is open

    def _open(self, opener, netns, timeout: float, what: str) -> None:
        """Open with ``opener`` (a C ``pnl_*_sock_open``) inside ``netns``."""
        if not (0 < timeout <= 3600):
            raise BadRequestError(f"invalid timeout {timeout!r}: seconds, 0 < t <= 3600")
        p = ffi.new("struct pnl_sock **")
        with contextlib.nullcontext(-1) if netns is None else held_fd(netns) as fd:
            rc = opener(fd, int(timeout * 1000), p)
        check(rc, None, what, getattr(netns, "path", "") or "")
        self._own(p[0])

    def _own(self, sock) -> None:
        self._holds = Holds(sock, "netlink socket is closed")
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): its fd closed, the C struct left alone (a
        thread of the parent may have held its lock)."""
        s = self._holds.take_in_forked_child()
        if s is not None:
            try:
                os.close(lib.pnl_sock_fd(s))
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self._holds is None or self._holds.value is None

    def close(self) -> None:
        """Refuse new calls at once; free the socket once the calls in flight are done
        (each ends within the socket's timeout)."""
        h = self._holds
        s = h.take() if h is not None else None
        if s is not None:
            h.wait_idle()
            lib.pnl_sock_close(s)

    def _in_use(self):
        """``with sock._in_use() as s:`` the C socket, not freed before the block ends."""
        return self._holds.hold()

    def fileno(self) -> int:
        with self._in_use() as s:
            return lib.pnl_sock_fd(s)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_holds", None) is not None:
            self.close()


class NetlinkSocket(SocketLifetime):
    """An rtnetlink socket inside one namespace (the caller's when ``netns`` is None)."""

    def __init__(self, netns: "Netns | int | None" = None, *, timeout: float = 5.0) -> None:
        self._open(lib.pnl_sock_open, netns, timeout, "netlink socket")
        self.netns = netns

    @classmethod
    def _adopt(cls, sock, netns) -> "NetlinkSocket":
        self = cls.__new__(cls)
        self._own(sock)
        self.netns = netns
        return self

    # -- links ----------------------------------------------------------------------
    def _common(self, r: _Req, *, mtu, mac, up, master, alias, group, netns) -> None:
        c = r.c
        if mtu is not None:
            c.mtu = validate.mtu(mtu)
        if mac is not None:
            c.mac = r.ubuf(validate.mac(mac))
        if up is not None:
            c.up = 1 if up else 0
        if master is not None:
            c.master = self.index(master)
        if alias is not None:
            c.alias = r.buf(validate.alias(alias))
        if group is not None:
            c.group = validate.u32(group, "link group")
            if c.group > 0x7FFFFFFF:
                raise BadRequestError("link group above 2**31-1 is not supported")
        if netns is not None:
            c.netns_fd = r.netns_fd(netns)

    def _create(self, r: _Req, name: str, kind: bytes) -> None:
        r.c.name = r.buf(validate.ifname(name))
        r.c.kind = r.buf(kind)
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_create(s, r.c, err)
        check(rc, err, "link create", name)

    def veth_create(self, name: str, peer_name: str, *, peer_netns: "Netns | int | None" = None,
                    mac: str | None = None, peer_mac: str | None = None, mtu: int | None = None,
                    master: Link | None = None, up: bool = False,
                    alias: str | None = None, group: int | None = None) -> None:
        """A veth pair; the peer is created directly inside ``peer_netns`` when given.

        The peer starts down: the kernel cannot bring it up in the same request, so set it
        up with a socket of its namespace (``attach_veth`` does all of this at once)."""
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=master, alias=alias, group=group,
                         netns=None)
            r.c.peer_name = r.buf(validate.ifname(peer_name))
            if peer_netns is not None:
                r.c.peer_netns_fd = r.netns_fd(peer_netns)
            if peer_mac is not None:
                r.c.peer_mac = r.ubuf(validate.mac(peer_mac))
            if mtu is not None:
                r.c.peer_mtu = r.c.mtu
            self._create(r, name, b"veth")

    def bridge_create(self, name: str, *, mtu: int | None = None, mac: str | None = None,
                      up: bool = False, alias: str | None = None,
                      group: int | None = None) -> None:
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=None, alias=alias, group=group,
                         netns=None)
            self._create(r, name, b"bridge")

    def dummy_create(self, name: str, *, mtu: int | None = None, mac: str | None = None,
                     up: bool = False, master: Link | None = None, alias: str | None = None,
                     group: int | None = None, netns: "Netns | int | None" = None) -> None:
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=master, alias=alias, group=group,
                         netns=netns)
            self._create(r, name, b"dummy")

    def vxlan_create(self, name: str, vni: int, *, local: str | None = None,
                     remote: str | None = None, port: int | None = None,
                     dev: Link | None = None, learning: bool | None = None,
                     mtu: int | None = None, mac: str | None = None, up: bool = False,
                     master: Link | None = None, alias: str | None = None,
                     group: int | None = None) -> None:
        """A VXLAN device with network identifier ``vni`` (0..2**24-1)."""
        if isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni < 1 << 24:
            raise BadRequestError(f"invalid VXLAN id {vni!r}: 0 to 16777215")
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=master, alias=alias, group=group,
                         netns=None)
            r.c.vxlan_id = vni
            fam = 0
            for attr, val in (("vxlan_local", local), ("vxlan_group", remote)):
                if val is None:
                    continue
                a = validate.address(val)
                f = _socket.AF_INET if a.version == 4 else _socket.AF_INET6
                if fam and f != fam:
                    raise BadRequestError("VXLAN local and remote must be the same IP version")
                fam = f
                setattr(r.c, attr, r.ubuf(a.packed))
            r.c.vxlan_family = fam
            if port is not None:
                if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                    raise BadRequestError(f"invalid VXLAN port {port!r}")
                r.c.vxlan_port = port
            if dev is not None:
                r.c.link = self.index(dev)
            if learning is not None:
                r.c.vxlan_learning = 1 if learning else 0
            self._create(r, name, b"vxlan")

    def macvlan_create(self, name: str, parent: Link, *, mode: str = "bridge",
                       netns: "Netns | int | None" = None, mac: str | None = None,
                       mtu: int | None = None, up: bool = False, alias: str | None = None,
                       group: int | None = None) -> None:
        """A macvlan sub-interface of ``parent``, optionally created inside ``netns``."""
        if mode not in _MACVLAN_MODES:
            raise BadRequestError(f"invalid macvlan mode {mode!r}: one of {sorted(_MACVLAN_MODES)}")
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=None, alias=alias, group=group,
                         netns=netns)
            r.c.link = self.index(parent)
            r.c.macvlan_mode = _MACVLAN_MODES[mode]
            self._create(r, name, b"macvlan")

    def link_set(self, link: Link, *, up: bool | None = None, master: Link | None = None,
                 nomaster: bool = False, mtu: int | None = None, mac: str | None = None,
                 name: str | None = None, alias: str | None = None, group: int | None = None,
                 netns: "Netns | int | None" = None) -> None:
        """Change a device: state, bridge, MTU, MAC, name, alias, group, namespace."""
        if nomaster and master is not None:
            raise BadRequestError("master and nomaster together")
        with _Req() as r:
            self._common(r, mtu=mtu, mac=mac, up=up, master=master, alias=alias, group=group,
                         netns=netns)
            if nomaster:
                r.c.master = lib.PNL_NOMASTER
            idx, nm = self._target(link)
            if name is not None:
                r.c.name = r.buf(validate.ifname(name))
                if idx <= 0:
                    idx, nm = self.index(link), ffi.NULL
            err = new_err()
            with self._in_use() as s:
                rc = lib.pnl_link_change(s, idx, nm, r.c, err)
            check(rc, err, "link set", str(link))

    def bridge_port_set(self, link: Link, *, hairpin: bool | None = None,
                        isolated: bool | None = None) -> None:
        """Bridge-port flags of a device enslaved to a bridge."""
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_set_bridge_port(
                s, self.index(link), -1 if hairpin is None else int(bool(hairpin)),
                -1 if isolated is None else int(bool(isolated)), err)
        check(rc, err, "bridge port set", str(link))

    def retire_port(self, link: Link, group: int) -> None:
        """Take a bridge port out of service at once, without the RCU wait of putting
        it down: into link group ``group`` and port state disabled (one send). A device
        that is on no bridge only changes group."""
        g = validate.u32(group, "link group")
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_retire_port(s, self.index(link), g, err)
        if rc < 0 and not (err.index == 1 and -rc == errno.EOPNOTSUPP):
            raise_for(rc, err, "retire port", str(link))

    def link_delete(self, link: Link) -> None:
        idx, nm = self._target(link)
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_delete(s, idx, nm, err)
        check(rc, err, "link delete", str(link))

    def link_delete_group(self, group: int) -> None:
        """Delete every device of link group ``group`` in one request."""
        g = validate.u32(group, "link group")
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_delete_group(s, g, err)
        check(rc, err, "link delete group", str(g))

    def link_delete_many(self, indexes: Iterable[int]) -> None:
        idx = [int(i) for i in indexes]
        arr = ffi.new("int[]", idx)
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_delete_many(s, arr, len(idx), err)
        if rc < 0:
            which = str(idx[err.index]) if 0 <= err.index < len(idx) else ""
            raise_for(rc, err, "link delete", which)

    def link_get(self, link: Link) -> LinkInfo:
        """Look a device up by index or name (in the kernel)."""
        idx, nm = self._target(link)
        out = ffi.new("struct pnl_link_info *")
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_link_get(s, idx, nm, out, err)
        check(rc, err, "link get", str(link))
        return _link_info(out)

    def link_exists(self, link: Link) -> bool:
        try:
            self.link_get(link)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return False
            raise
        return True

    def links(self) -> list[LinkInfo]:
        """Every device of the namespace (a dump, retried when interrupted)."""
        cap = 64
        for _ in range(DUMP_RETRIES):
            out = ffi.new("struct pnl_link_info[]", cap)
            err = new_err()
            with self._in_use() as s:
                rc = lib.pnl_link_list(s, out, cap, err)
            if rc == -lib.PNL_EDUMPINTR:
                continue
            check(rc, err, "link dump")
            if rc > cap:
                cap = rc + 16
                continue
            return [_link_info(out[i]) for i in range(rc)]
        raise DumpInterruptedError(errno.EINTR, "link dump", "", "kept changing during dumps")

    def index(self, link: Link) -> int:
        if isinstance(link, int) and not isinstance(link, bool):
            if link <= 0:
                raise BadRequestError(f"invalid interface index {link}")
            return link
        return self.link_get(link).index

    def _target(self, link: Link):
        if isinstance(link, int) and not isinstance(link, bool):
            if link <= 0:
                raise BadRequestError(f"invalid interface index {link}")
            return link, ffi.NULL
        return 0, validate.ifname(link)

    # -- addresses ------------------------------------------------------------------
    def addr_add(self, link: Link, address: "Interface | str", *, nodad: bool = False) -> None:
        a = validate.interface(address)
        fam = _socket.AF_INET if a.version == 4 else _socket.AF_INET6
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_addr_add(s, self.index(link), fam, a.ip.packed,
                                  a.network.prefixlen, lib.PNL_ADDR_NODAD if nodad else 0, err)
        check(rc, err, "address add", f"{a} on {link}")

    def addr_delete(self, link: Link, address: "Interface | str") -> None:
        a = validate.interface(address)
        fam = _socket.AF_INET if a.version == 4 else _socket.AF_INET6
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_addr_delete(s, self.index(link), fam, a.ip.packed,
                                     a.network.prefixlen, err)
        check(rc, err, "address delete", f"{a} on {link}")

    def addrs(self, link: Link | None = None, version: int | None = None) -> list[Interface]:
        """Addresses of one device (or all) and one IP version (or both)."""
        if version not in (None, 4, 6):
            raise BadRequestError(f"invalid IP version {version!r}")
        fam = {None: 0, 4: _socket.AF_INET, 6: _socket.AF_INET6}[version]
        ifindex = 0 if link is None else self.index(link)
        cap = 32
        for _ in range(DUMP_RETRIES):
            out = ffi.new("struct pnl_addr_info[]", cap)
            err = new_err()
            with self._in_use() as s:
                rc = lib.pnl_addr_list(s, ifindex, fam, out, cap, err)
            if rc == -lib.PNL_EDUMPINTR:
                continue
            check(rc, err, "address dump", str(link or ""))
            if rc > cap:
                cap = rc + 16
                continue
            res: list[Interface] = []
            for i in range(rc):
                e = out[i]
                n = 4 if e.family == _socket.AF_INET else 16
                ip = ipaddress.ip_address(bytes(e.addr[0:n]))
                res.append(ipaddress.ip_interface(f"{ip}/{e.prefixlen}"))
            return res
        raise DumpInterruptedError(errno.EINTR, "address dump", "", "kept changing during dumps")

    # -- routes ---------------------------------------------------------------------
    def _route(self, dst, gateway, link, table, metric):
        req = ffi.new("struct pnl_route_req *")
        keep = []
        version = None
        if dst is not None:
            net = validate.network(dst)
            version = net.version
            b = ffi.new("unsigned char[]", net.network_address.packed)
            keep.append(b)
            req.dst, req.dst_len = b, net.prefixlen
        if gateway is not None:
            gw = validate.address(gateway)
            if version is not None and gw.version != version:
                raise BadRequestError("route destination and gateway differ in IP version")
            version = gw.version
            b = ffi.new("unsigned char[]", gw.packed)
            keep.append(b)
            req.gateway = b
        if version is None:
            raise BadRequestError("a route needs a destination or a gateway")
        if gateway is None and link is None:
            raise BadRequestError("an on-link route needs a device")
        req.family = _socket.AF_INET if version == 4 else _socket.AF_INET6
        if link is not None:
            req.oif = self.index(link)
        if table is not None:
            req.table = validate.u32(table, "routing table")
        if metric is not None:
            req.priority = validate.u32(metric, "route metric")
        return req, keep

    def route_add(self, *, dst: str | None = None, gateway: str | None = None,
                  link: Link | None = None, table: int | None = None,
                  metric: int | None = None) -> None:
        """Add a route; ``dst`` None is the default route, no ``gateway`` means on-link."""
        req, _keep = self._route(dst, gateway, link, table, metric)
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_route_add(s, req, err)
        check(rc, err, "route add",
              f"{dst or 'default'} via {gateway or link}")

    def route_delete(self, *, dst: str | None = None, gateway: str | None = None,
                     link: Link | None = None, table: int | None = None,
                     metric: int | None = None) -> None:
        req, _keep = self._route(dst, gateway, link, table, metric)
        err = new_err()
        with self._in_use() as s:
            rc = lib.pnl_route_delete(s, req, err)
        check(rc, err, "route delete",
              f"{dst or 'default'} via {gateway or link}")
