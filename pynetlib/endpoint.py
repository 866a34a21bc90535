"""Endpoints: a network's attachment point, with addresses that outlive containers.

``create_endpoint`` reserves the addresses and the MAC; ``join`` plumbs the endpoint
into a container's sandbox; ``leave`` unplugs it and keeps the addresses; ``delete``
releases them. Join and leave of one endpoint are serialised; different endpoints
proceed in parallel.
"""

from __future__ import annotations

import ipaddress
import os
import threading
from dataclasses import dataclass, field

from pynetlib import etchosts, resolvconf
from pynetlib.driverinfo import EndpointInfo as _DriverEndpointInfo
from pynetlib.driverinfo import JoinInfo, PlumbTarget
from pynetlib.errors import (ActiveContainerError, BadRequestError, InvalidContainerIDError,
                             InvalidJoinError, NoContainerError, NoSuchEndpointError)
from pynetlib.names import check_container_id


@dataclass(frozen=True)
class InterfaceInfo:
    """An endpoint interface, as users see it."""

    id: int
    mac_address: str
    address: ipaddress.IPv4Interface | None
    address_ipv6: ipaddress.IPv6Interface | None


@dataclass(frozen=True)
class EndpointInfo:
    """What an endpoint is, as users see it: a snapshot."""

    interfaces: list[InterfaceInfo] = field(default_factory=list)
    gateway: ipaddress.IPv4Address | None = None
    gateway_ipv6: ipaddress.IPv6Address | None = None
    sandbox_key: str | None = None


@dataclass(frozen=True)
class ContainerData:
    sandbox_key: str


@dataclass
class _Joined:
    sandbox: object
    jinfo: JoinInfo
    moved: list[tuple[str, str]]          # (src host name, dst name in the sandbox)
    ifnames: list[str]
    gateway_owner: tuple[bool, bool]      # whether this endpoint set the default routes


class Endpoint:
    def __init__(self, network, name: str, eid: str, ep_info: _DriverEndpointInfo,
                 generic: dict) -> None:
        self._net = network
        self.name = name
        self.id = eid
        self._ep_info = ep_info
        self._generic = generic
        self._lock = threading.Lock()        # serialises join/leave/delete
        self._joined: _Joined | None = None
        self._deleted = False

    def __repr__(self) -> str:
        return f"<Endpoint {self.name} {self.id[:12]} network={self._net.name}>"

    @property
    def network(self) -> str:
        """The network's name."""
        return self._net.name

    # -- views ----------------------------------------------------------------------
    def info(self) -> EndpointInfo:
        ifaces = [InterfaceInfo(i.id(), i.mac_address(), i.address(), i.address_ipv6())
                  for i in self._ep_info.interfaces()]
        j = self._joined
        if j is None:
            return EndpointInfo(ifaces)
        return EndpointInfo(ifaces, j.jinfo.gateway, j.jinfo.gateway_ipv6, j.sandbox.key)

    def driver_info(self) -> dict:
        return self._net._driver.endpoint_oper_info(self._net.id, self.id)

    def _interfaces(self):
        return self._ep_info.interfaces()

    # -- join -----------------------------------------------------------------------
    def join(self, container_id: str, *, hostname: str | None = None,
             domainname: str | None = None, hosts_path: str | None = None,
             resolv_conf_path: str | None = None, extra_hosts=(), dns=(), dns_search=(),
             parent_updates=(), use_default_sandbox: bool = False,
             netns_path: str | None = None, generic: dict | None = None) -> ContainerData:
        """Plumb this endpoint into the container's sandbox (created on its first join)."""
        check_container_id(container_id)
        if generic is not None and not isinstance(generic, dict):
            raise BadRequestError("generic join options must be a dict")
        extra = _records(extra_hosts, "extra_hosts")
        parents = _parent_updates(parent_updates)
        for p in (hosts_path, resolv_conf_path):
            if p is not None and (not isinstance(p, str) or not os.path.isabs(p)):
                raise BadRequestError(f"invalid file path {p!r}: an absolute path")
        if hostname is not None:
            etchosts.check_hostname(hostname)
        if domainname is not None:
            etchosts.check_hostname(domainname, "domain name")
        ctrl = self._net._ctrl
        with self._lock:
            if self._deleted:
                raise NoSuchEndpointError(self.id)
            if self._joined is not None:
                raise InvalidJoinError()
            sb = ctrl._sandbox_acquire(container_id, use_default_sandbox, netns_path)
            try:
                self._joined = self._plumb(ctrl, sb, dict(generic or {}))
            except BaseException:
                ctrl._sandbox_release(sb, self)
                raise
            try:
                self._write_files(sb, hostname, domainname, hosts_path, resolv_conf_path,
                                  extra, dns, dns_search)
                for eid, name, ip in parents:
                    ctrl._update_parent_hosts(eid, name, ip)
            except BaseException:
                self._unplumb(ctrl)
                raise
            return ContainerData(sb.key)

    def _plumb(self, ctrl, sb, generic) -> _Joined:
        ifaces = self._interfaces()
        by_id = {i.id(): i for i in ifaces}
        sb.add_endpoint(self)
        target = None
        if sb.kind != "default" and ifaces:
            target = PlumbTarget(sb.netns, sb.next_ifname(), not sb.has_gateway4,
                                 not sb.has_gateway6)
        ifnames = [target.ifname] if target else []
        jinfo = JoinInfo(ifaces, target)
        driver = self._net._driver
        try:
            driver.join(self._net.id, self.id, sb.key, jinfo, generic)
        except BaseException:
            for n in ifnames:
                sb.release_ifname(n)
            raise
        moved: list[tuple[str, str]] = []
        try:
            plumbed = [n for n in jinfo.interface_names() if n.plumbed]
            if plumbed and (len(plumbed) > 1 or target is None or
                            plumbed[0].dst_name != target.ifname):
                raise BadRequestError("a driver plumbs at most one interface per join, "
                                      "under the name its plumb target gives")
            for n in jinfo.interface_names():
                if n.plumbed or n.src_name is None:
                    continue
                if n.dst_name not in ifnames:
                    sb.reserve_ifname(n.dst_name)
                    ifnames.append(n.dst_name)
                ctrl._move_into_sandbox(sb, n.src_name, n.dst_name, by_id[n.id()])
                moved.append((n.src_name, n.dst_name))
            gw_owner = self._gateways(ctrl, sb, jinfo, target if plumbed else None, moved)
        except BaseException:
            for src, dst in reversed(moved):
                try:
                    ctrl._move_out_of_sandbox(sb, src, dst)
                except Exception:
                    pass
            try:
                driver.leave(self._net.id, self.id)
            finally:
                for n in ifnames:
                    sb.release_ifname(n)
            raise
        used = {n.dst_name for n in jinfo.interface_names() if n.plumbed or n.src_name}
        for n in [x for x in ifnames if x not in used]:
            sb.release_ifname(n)
            ifnames.remove(n)
        return _Joined(sb, jinfo, moved, ifnames, gw_owner)

    def _gateways(self, ctrl, sb, jinfo, target, moved) -> tuple[bool, bool]:
        """Default routes come from the first endpoint of the sandbox that offers them:
        either the driver installed them while plumbing (``target``), or the controller
        adds them on the first device it moved in."""
        if sb.kind == "default":
            return False, False
        own = []
        for gw, has, done in ((jinfo.gateway, sb.has_gateway4, target and target.route4),
                              (jinfo.gateway_ipv6, sb.has_gateway6, target and target.route6)):
            if gw is None or has or not (done or moved):
                own.append(False)
                continue
            if not done:
                ctrl._add_default_route(sb, gw, moved[0][1])
            own.append(True)
        if own[0]:
            sb.has_gateway4 = True
        if own[1]:
            sb.has_gateway6 = True
        return own[0], own[1]

    def _write_files(self, sb, hostname, domainname, hosts_path, resolv_conf_path, extra,
                     dns, dns_search) -> None:
        j = self._joined
        ifaces = self._interfaces()
        v4 = next((i.address() for i in ifaces if i.address() is not None), None)
        v6 = any(i.address_ipv6() is not None for i in ifaces)
        hp = hosts_path or sb.hosts_path or os.path.join(sb.files_dir, "hosts")
        rp = resolv_conf_path or sb.resolv_conf_path or os.path.join(sb.files_dir, "resolv.conf")
        for user_path in (hosts_path, resolv_conf_path):
            if user_path:
                os.makedirs(os.path.dirname(user_path), exist_ok=True)
        first = sb.hosts_path is None
        if j.jinfo.hosts_path:            # e.g. the host driver: /etc/hosts verbatim
            with open(j.jinfo.hosts_path) as f:
                content = f.read()
            with etchosts.path_lock(hp):
                etchosts.write_atomic(hp, content)
        elif first:
            etchosts.build(hp, str(v4.ip) if v4 else None, hostname, domainname, extra,
                           fresh=hosts_path is None)
        elif v4 is not None and hostname:
            etchosts.add(hp, [etchosts.Record(hostname, str(v4.ip))])
        src = j.jinfo.resolv_conf_path or resolvconf.HOST_RESOLV_CONF
        if sb.resolv_conf_path is None or dns or dns_search:
            resolvconf.build(rp, dns=dns, dns_search=dns_search, ipv6=v6, host_path=src,
                             fresh=sb.resolv_conf_path is None and resolv_conf_path is None)
        sb.hosts_path, sb.resolv_conf_path = hp, rp

    # -- leave ----------------------------------------------------------------------
    def leave(self, container_id: str) -> None:
        """Unplug from the container; the addresses and MAC stay reserved."""
        if not isinstance(container_id, str) or not container_id:
            raise InvalidContainerIDError(container_id, "a container id cannot be empty")
        with self._lock:
            j = self._joined
            if j is None:
                raise NoContainerError()
            if j.sandbox.container_id != container_id:
                raise InvalidContainerIDError(container_id, "not the container joined to "
                                                            f"endpoint {self.name}")
            self._unplumb(self._net._ctrl)

    def _unplumb(self, ctrl) -> None:
        j = self._joined
        assert j is not None
        sb = j.sandbox
        errors: list[BaseException] = []
        for src, dst in reversed(j.moved):
            try:
                ctrl._move_out_of_sandbox(sb, src, dst)
            except Exception as e:          # keep going: leave is best effort
                errors.append(e)
        try:
            self._net._driver.leave(self._net.id, self.id)
        except Exception as e:
            errors.append(e)
        if j.gateway_owner[0]:
            sb.has_gateway4 = False
        if j.gateway_owner[1]:
            sb.has_gateway6 = False
        for n in j.ifnames:
            sb.release_ifname(n)
        self._joined = None
        ctrl._sandbox_release(sb, self)
        if errors:
            raise errors[0]

    # -- delete ---------------------------------------------------------------------
    def delete(self) -> None:
        """Delete the endpoint and release its addresses (it must not be joined)."""
        with self._lock:
            if self._deleted:
                raise NoSuchEndpointError(self.id)
            if self._joined is not None:
                raise ActiveContainerError(self.name, self._joined.sandbox.container_id)
            self._net._delete_endpoint(self)
            self._deleted = True

    @property
    def joined_container(self) -> str | None:
        j = self._joined
        return j.sandbox.container_id if j else None


def _records(items, what) -> list[etchosts.Record]:
    out = []
    try:
        for name, ip in items:
            etchosts.check_hostname(name, f"{what} name")
            out.append(etchosts.Record(name, etchosts.check_ip(ip, f"{what} address")))
    except (TypeError, ValueError):
        raise BadRequestError(f"{what} must be (name, ip) pairs") from None
    return out


def _parent_updates(items) -> list[tuple[str, str, str]]:
    out = []
    try:
        for eid, name, ip in items:
            if not isinstance(eid, str) or not eid:
                raise BadRequestError(f"invalid parent endpoint id {eid!r}")
            etchosts.check_hostname(name)
            out.append((eid, name, etchosts.check_ip(ip)))
    except (TypeError, ValueError):
        raise BadRequestError("parent_updates must be (endpoint id, name, ip) triples") \
            from None
    return out
