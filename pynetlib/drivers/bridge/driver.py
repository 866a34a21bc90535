"""The bridge driver: one Linux bridge per network, one veth per joined endpoint.

Addresses come from the controller's IPAM allocator and are reserved at
``create_endpoint`` (with the MAC and the host ports); ``join`` plumbs the endpoint with
a single pipelined attach that creates the container's end directly inside the sandbox;
``leave`` removes the veth and keeps the reservations; ``delete_endpoint`` releases them.
NAT, isolation, inter-container communication and port mappings live in nftables.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import contextlib
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field

from pynetlib import codec, netlabel
from pynetlib.driverapi import Driver
from pynetlib.drivers.bridge.config import (DriverConfig, InvalidConfigError, NetworkConfig,
                                            parse_driver_config, parse_network_config)
from pynetlib.drivers.bridge.quarantine import AddressQuarantine
from pynetlib.errors import (ActiveEndpointsError, ForbiddenError, IPAlreadyAllocatedError,
                             IPOutOfRangeError, NoAvailableIPsError, NotFoundError,
                             ObjectExistsError)
from pynetlib.kernel import NetlinkSocket, attach_veth_pair, validate
from pynetlib.store import CorruptStoreError, dumps, loads, owner_alive
from pynetlib.types import PortBinding, TransportPort

log = logging.getLogger(__name__)

TAG = "pynetlib"
HOST_IF_PREFIX = "pnl"
GATEWAY_REQUEST = {"RequestAddressType": netlabel.GATEWAY}
#: how long a join waits for ports on their way out when its bridge is full (seconds)
BRIDGE_FULL_WAIT = 5.0
_ENDPOINT_OPTIONS = {netlabel.PORT_MAP, netlabel.EXPOSED_PORTS, netlabel.MAC_ADDRESS,
                     netlabel.GENERIC_DATA}


def network_tag(store_id: str, nid: str) -> str:
    """IFLA_IFALIAS of a network's bridge: pynetlib, the store, the network."""
    return f"{TAG}:{store_id}:network:{nid}"


def endpoint_tag(store_id: str, eid: str) -> str:
    """IFLA_IFALIAS of an endpoint's host-side veth."""
    return f"{TAG}:{store_id}:endpoint:{eid}"


def parse_device_tag(alias: str) -> tuple[str, str, str] | None:
    """(store id, "network"|"endpoint", id) of a pynetlib tag, else None."""
    parts = alias.split(":")
    if len(parts) == 4 and parts[0] == TAG and parts[2] in ("network", "endpoint") and \
            len(parts[1]) == 8 and len(parts[3]) == 64:
        return parts[1], parts[2], parts[3]
    return None


def host_ifname(eid: str) -> str:
    """The host end of an endpoint's veth: deterministic, 15 bytes."""
    return HOST_IF_PREFIX + eid[:12]


def mac_from_ipv4(ip: ipaddress.IPv4Address) -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)


def random_mac() -> str:
    return "02:42:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(4))


@dataclass
class _Endpoint:
    eid: str
    mac: str
    v4: ipaddress.IPv4Interface | None
    v6: ipaddress.IPv6Interface | None
    bindings: list[PortBinding] = field(default_factory=list)
    exposed: list[TransportPort] = field(default_factory=list)
    #: the host end's ifindex while this process has it joined (not recorded)
    host_index: int = field(default=0, compare=False)

    def to_json(self) -> dict:
        return codec.encode({"eid": self.eid, "mac": self.mac, "v4": self.v4, "v6": self.v6,
                             "bindings": self.bindings, "exposed": self.exposed})

    @classmethod
    def from_json(cls, d) -> "_Endpoint":
        try:
            d = codec.decode(d)
            return cls(d["eid"], d["mac"], d["v4"], d["v6"], d["bindings"], d["exposed"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptStoreError(f"bridge endpoint record does not decode: {e!r}") \
                from None


@dataclass
class _Network:
    nid: str
    cfg: NetworkConfig
    bridge: str
    bridge_index: int = 0
    pool4: str | None = None
    subnet4: ipaddress.IPv4Network | None = None
    bridge_ip4: ipaddress.IPv4Interface | None = None
    gateway4: ipaddress.IPv4Address | None = None
    reserved4: list = field(default_factory=list)
    pool6: str | None = None
    subnet6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    reserved6: list = field(default_factory=list)
    firewall: bool = False
    endpoints: dict[str, _Endpoint] = field(default_factory=dict)
    macs: dict[str, str] = field(default_factory=dict)      # MAC -> endpoint id
    lock: threading.Lock = field(default_factory=threading.Lock)

    _SAVED = ("nid", "bridge", "pool4", "subnet4", "bridge_ip4", "gateway4", "reserved4",
              "pool6", "subnet6", "gateway6", "reserved6", "firewall")

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self._SAVED}
        d["cfg"] = {f: getattr(self.cfg, f) for f in self.cfg.__dataclass_fields__}
        return codec.encode(d)

    @classmethod
    def from_json(cls, d) -> "_Network":
        try:
            d = codec.decode(d)
            cfg = NetworkConfig(**d.pop("cfg"))
            return cls(cfg=cfg, **{k: d[k] for k in cls._SAVED})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise CorruptStoreError(f"bridge network record does not decode: {e!r}") \
                from None


class BridgeDriver(Driver):
    type = "bridge"

    def __init__(self, ipam, *, store=None, store_id: str = "00000000", firewall=None,
                 port_allocator=None) -> None:
        self._ipam = ipam
        self._store = store
        self._sid = store_id
        self._cfg: DriverConfig | None = None
        self._lock = threading.Lock()
        self._networks: dict[str, _Network] = {}
        self._sock: NetlinkSocket | None = None
        self._firewall = firewall
        self._fw_gen: int | None = None      # the store's fwgen this process last saw
        self._ports = port_allocator
        self._reap = None
        self._retired = None                  # NftSetSocket: the retired-port set
        self._own_firewall = False            # made by this driver: closed with it
        self._quarantine = AddressQuarantine(store, ipam, self._reaper, self._host)

    # -- persistence (the driver's records: kv rows of owner "bridge") -------------------
    def _tx(self):
        if self._store is None:
            return contextlib.nullcontext()
        return self._store.tx()

    def _save_net(self, net: _Network) -> None:
        if self._store is not None:
            with self._store.tx() as c:
                c.execute("INSERT OR REPLACE INTO kv VALUES ('bridge', ?, ?)",
                          ("net/" + net.nid, dumps(net.to_json())))
                self._store.on_rollback(lambda: self._forget(net.nid))

    def _save_ep(self, net: _Network, ep: _Endpoint) -> None:
        if self._store is not None:
            with self._store.tx() as c:
                c.execute("INSERT OR REPLACE INTO kv VALUES ('bridge', ?, ?)",
                          (f"ep/{net.nid}/{ep.eid}", dumps(ep.to_json())))
                # The MAC index: its primary key makes a MAC unique in the network
                # across processes, and makes the check one indexed lookup.
                try:
                    c.execute("INSERT INTO kv VALUES ('bridge', ?, ?)",
                              (f"mac/{net.nid}/{ep.mac.lower()}", dumps(ep.eid)))
                except sqlite3.IntegrityError:
                    raise ForbiddenError(f"MAC address {ep.mac} is in use in this network") \
                        from None
                self._store.on_rollback(lambda: self._forget(net.nid))

    def _drop_records(self, nid: str, ep: "_Endpoint | None" = None) -> None:
        if self._store is not None:
            with self._store.tx() as c:
                if ep is None:
                    c.execute("DELETE FROM kv WHERE owner='bridge' AND (key=? OR key LIKE ? "
                              "OR key LIKE ? OR key LIKE ?)", ("net/" + nid, f"ep/{nid}/%",
                                                              f"mac/{nid}/%", f"q/{nid}/%"))
                else:
                    c.execute("DELETE FROM kv WHERE owner='bridge' AND (key=? OR (key=? AND "
                              "value=?))", (f"ep/{nid}/{ep.eid}",
                                            f"mac/{nid}/{ep.mac.lower()}", dumps(ep.eid)))
                self._store.on_rollback(lambda: self._forget(nid))

    def _forget(self, nid: str) -> None:
        """Drop the in-memory copy of a network; the next use reloads the records."""
        with self._lock:
            self._networks.pop(nid, None)

    def _has_record(self, key: str) -> bool:
        """Whether the store holds the driver record ``key`` (without a store: yes)."""
        if self._store is None:
            return True
        return self._store.read().execute(
            "SELECT 1 FROM kv WHERE owner='bridge' AND key=?", (key,)).fetchone() is not None

    def _prune(self, net: _Network) -> set[str]:
        """Drop cached endpoints whose records another process deleted (call with
        ``net.lock`` held); returns the ids of the endpoints recorded. The in-memory copy
        is a cache; the store is the truth."""
        if self._store is None:
            return set(net.endpoints)
        live = {k.rsplit("/", 1)[1] for (k,) in self._store.read().execute(
            "SELECT key FROM kv WHERE owner='bridge' AND key LIKE ?", (f"ep/{net.nid}/%",))}
        for eid in [e for e in net.endpoints if e not in live]:
            ep = net.endpoints.pop(eid)
            if net.macs.get(ep.mac.lower()) == eid:
                del net.macs[ep.mac.lower()]
        return live

    def _load(self, nid: str) -> _Network | None:
        if self._store is None:
            return None
        c = self._store.read()
        row = c.execute("SELECT value FROM kv WHERE owner='bridge' AND key=?",
                        ("net/" + nid,)).fetchone()
        if row is None:
            return None
        net = _Network.from_json(loads(row[0], "bridge network"))
        for (v,) in c.execute("SELECT value FROM kv WHERE owner='bridge' AND key LIKE ?",
                              (f"ep/{nid}/%",)):
            ep = _Endpoint.from_json(loads(v, "bridge endpoint"))
            net.endpoints[ep.eid] = ep
            net.macs[ep.mac.lower()] = ep.eid
        return net

    def _ep(self, net: _Network, eid: str) -> _Endpoint:
        ep = net.endpoints.get(eid)
        if ep is None and self._store is not None:
            row = self._store.read().execute(
                "SELECT value FROM kv WHERE owner='bridge' AND key=?",
                (f"ep/{net.nid}/{eid}",)).fetchone()
            if row is not None:
                ep = _Endpoint.from_json(loads(row[0], "bridge endpoint"))
                net.endpoints[eid] = ep
                net.macs[ep.mac.lower()] = eid
        if ep is None:
            raise NotFoundError(f"endpoint {eid} not found")
        return ep

    # -- services, made on first use in the namespace the driver works in -------------
    def _host(self) -> NetlinkSocket:
        with self._lock:
            if self._sock is None:
                self._sock = NetlinkSocket()
            return self._sock

    def _fw(self):
        with self._lock:
            if self._firewall is None:
                from pynetlib.drivers.bridge.firewall import BridgeFirewall

                self._firewall = BridgeFirewall()
                self._own_firewall = True
            return self._firewall

    @contextlib.contextmanager
    def _fw_locked(self):
        """The firewall for one change, serialised with every process that shares the
        store (under its write lock) and listed afresh when another process changed the
        rules since this one last did: the firewall's in-memory view of the ruleset is a
        cache, and nftables has no compare-and-swap. ``fwgen`` counts the changes."""
        fw = self._fw()
        if self._store is None:
            yield fw
            return
        with self._store.tx() as c:
            row = c.execute("SELECT value FROM kv WHERE owner='bridge' AND key='fwgen'"
                            ).fetchone()
            gen = loads(row[0], "bridge/fwgen") if row else 0
            if gen != self._fw_gen:
                fw.refresh()
            self._fw_gen = None          # unknown until this change commits
            yield fw
            c.execute("INSERT OR REPLACE INTO kv VALUES ('bridge', 'fwgen', ?)",
                      (dumps(gen + 1),))
        self._fw_gen = gen + 1

    def _fw_call(self, method: str, *args, **kw):
        with self._fw_locked() as fw:
            return getattr(fw, method)(*args, **kw)

    def _port_alloc(self):
        with self._lock:
            if self._ports is None:
                if self._store is not None:
                    from pynetlib.drivers.bridge.portstore import PersistentPorts

                    self._ports = PersistentPorts(self._store)
                else:
                    from pynetlib.drivers.bridge.portalloc import PortAllocator

                    self._ports = PortAllocator()
            return self._ports

    def _bridge_index(self, net: _Network) -> int:
        """The bridge's ifindex; looked up once when the network was loaded from the
        records (made by another process, or reloaded after a rollback)."""
        if not net.bridge_index:
            net.bridge_index = self._host().link_get(net.bridge).index
        return net.bridge_index

    def _net(self, nid: str) -> _Network:
        with self._lock:
            n = self._networks.get(nid)
        if n is None:
            n = self._load(nid)
            if n is not None:
                with self._lock:
                    n = self._networks.setdefault(nid, n)
        if n is None:
            raise NotFoundError(f"bridge network {nid} not found")
        return n

    def close(self) -> None:
        """Finish pending teardown (the reaper's backlog), then release the sockets."""
        with self._lock:
            sock, self._sock = self._sock, None
            reap, self._reap = self._reap, None
            fw = self._firewall if self._own_firewall else None
            if fw is not None:
                self._firewall, self._own_firewall = None, False
        if reap is not None:
            reap.close()
        with self._lock:
            retired, self._retired = self._retired, None
        if retired is not None:
            retired.close()
        if sock is not None:
            sock.close()
        if fw is not None:
            fw.nft.close()

    # -- driver configuration ------------------------------------------------------
    def config(self, options: dict) -> None:
        cfg = parse_driver_config(options)
        with self._lock:
            if self._cfg is not None:
                raise ForbiddenError("bridge driver configuration exists already")
            self._cfg = cfg
        if cfg.EnableIPForwarding:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1\n")

    def _iptables(self, cfg: NetworkConfig) -> bool:
        drv = self._cfg or DriverConfig()
        return drv.EnableIPTables and cfg.EnableIPTables

    # -- networks -------------------------------------------------------------------
    def create_network(self, nid: str, options: dict) -> None:
        cfg = parse_network_config(options)
        bridge = cfg.BridgeName or f"br-{nid[:12]}"
        with self._lock:
            if nid in self._networks:
                raise ForbiddenError(f"network {nid} exists")
            for other in list(self._networks.values()):
                if other.bridge == bridge and not self._has_record("net/" + other.nid):
                    self._networks.pop(other.nid)       # deleted by another process
                    continue
                if other.bridge == bridge:
                    raise ForbiddenError(f"network {nid} conflicts with network "
                                         f"{other.nid} by bridge name {bridge}")
            net = _Network(nid, cfg, bridge)
            self._networks[nid] = net       # claims the bridge name while we work
        undo: list = []
        try:
            with self._tx():
                self._allocate_subnets(net, undo)
                net.firewall = self._iptables(cfg)
                self._save_net(net)      # the intent: reconcile can undo from here on
            undo.append(lambda: self._drop_records(nid))
            self._make_bridge(net, undo)
            if net.firewall:
                undo.append(lambda: self._fw_call("remove_network", nid))
                self._install_rules(net)
        except BaseException:
            for fn in reversed(undo):
                try:
                    fn()
                except Exception:
                    log.exception("rollback of network %s", nid)
            with self._lock:
                self._networks.pop(nid, None)
            raise

    def _install_rules(self, net: _Network) -> None:
        cfg = net.cfg
        self._fw_call("add_network", net.nid, net.bridge, net.subnet4, net.subnet6,
                               masquerade=cfg.EnableIPMasquerade, icc=cfg.EnableICC,
                               internal=cfg.Internal)

    def ensure_network(self, nid: str) -> list[str]:
        """Re-create what the kernel lost of a network (its bridge, addresses, rules),
        e.g. after a reboot. Returns what it did."""
        net = self._net(nid)
        done = []
        host = self._host()
        if not host.link_exists(net.bridge):
            done.append(f"re-created bridge {net.bridge} of network {nid}")
        self._make_bridge(net, [])
        if net.firewall:
            self._install_rules(net)
        return done

    def _allocate_subnets(self, net: _Network, undo: list) -> None:
        from pynetlib.ipam import LOCAL_DEFAULT

        cfg = net.cfg
        ipam = self._ipam
        if cfg.AddressIPv4 is not None:
            pool, _, _ = ipam.request_pool(LOCAL_DEFAULT, str(cfg.AddressIPv4.network),
                                           str(cfg.FixedCIDR) if cfg.FixedCIDR else None)
            net.pool4 = pool
            undo.append(lambda: ipam.release_pool(pool))
            net.bridge_ip4 = ipam.request_address(pool, cfg.AddressIPv4.ip)
            undo.append(lambda: ipam.release_address(pool, net.bridge_ip4.ip))
            net.bridge_ip4 = ipaddress.ip_interface(f"{cfg.AddressIPv4.ip}/"
                                                    f"{cfg.AddressIPv4.network.prefixlen}")
        else:
            pool, subnet, _ = ipam.request_pool(LOCAL_DEFAULT)
            net.pool4 = pool
            undo.append(lambda: ipam.release_pool(pool))
            net.bridge_ip4 = ipam.request_address(pool, None, dict(GATEWAY_REQUEST))
            undo.append(lambda: ipam.release_address(pool, net.bridge_ip4.ip))
        net.subnet4 = net.bridge_ip4.network
        net.gateway4 = net.bridge_ip4.ip
        if cfg.DefaultGatewayIPv4 is not None and cfg.DefaultGatewayIPv4 != net.gateway4:
            gw = cfg.DefaultGatewayIPv4
            ipam.request_address(net.pool4, gw)
            net.reserved4.append(gw)
            undo.append(lambda: ipam.release_address(net.pool4, gw))
            net.gateway4 = gw
        if cfg.EnableIPv6 and cfg.FixedCIDRv6 is not None:
            pool6, subnet6, _ = ipam.request_pool(LOCAL_DEFAULT, str(cfg.FixedCIDRv6), v6=True)
            net.pool6, net.subnet6 = pool6, subnet6
            undo.append(lambda: ipam.release_pool(pool6))
            if cfg.DefaultGatewayIPv6 is not None:
                g6 = ipam.request_address(pool6, cfg.DefaultGatewayIPv6).ip
            else:
                g6 = ipam.request_address(pool6, None, dict(GATEWAY_REQUEST)).ip
            net.gateway6 = g6
            net.reserved6.append(g6)
            undo.append(lambda: ipam.release_address(pool6, g6))

    def _make_bridge(self, net: _Network, undo: list) -> None:
        host = self._host()
        tag = network_tag(self._sid, net.nid)
        try:
            info = host.link_get(net.bridge)
        except OSError as e:
            if e.errno != errno.ENODEV:
                raise
            info = None
        if info is not None:
            if info.alias != tag:
                raise ForbiddenError(f"bridge name {net.bridge} is taken by a device that "
                                     "pynetlib does not own")
        else:
            host.bridge_create(net.bridge, mtu=net.cfg.Mtu or None, alias=tag)
            undo.append(lambda: host.link_delete(net.bridge))
        if net.cfg.EnableIPv6:
            with open(f"/proc/sys/net/ipv6/conf/{net.bridge}/disable_ipv6", "w") as f:
                f.write("0\n")
        have = {str(a) for a in host.addrs(net.bridge)}
        wanted = [net.bridge_ip4]
        if net.subnet6 is not None:
            wanted.append(ipaddress.ip_interface(f"{net.gateway6}/{net.subnet6.prefixlen}"))
        if net.cfg.EnableIPv6:
            wanted.append(ipaddress.ip_interface("fe80::1/64"))
        for a in wanted:
            if str(a) not in have:
                host.addr_add(net.bridge, a, nodad=a.version == 6)
        host.link_set(net.bridge, up=True)
        net.bridge_index = host.link_get(net.bridge).index

    def delete_network(self, nid: str) -> None:
        try:
            net = self._net(nid)
        except NotFoundError:
            return                   # nothing of it was ever recorded (or already gone)
        with net.lock:
            self._prune(net)
            if net.endpoints:
                raise ActiveEndpointsError(nid, nid)
        self._quarantine.settle(nid)     # its deleted endpoints' devices gone, addresses free
        errors: list[BaseException] = []

        def attempt(fn):
            try:
                fn()
            except Exception as e:
                errors.append(e)

        # Kernel first (each step idempotent), then the records in one transaction.
        if net.firewall:
            attempt(lambda: self._fw_call("remove_network", nid))
        attempt(lambda: self._delete_bridge(net))
        if errors:
            raise errors[0]
        from pynetlib.ipam.allocator import PoolNotFoundError

        with self._tx():
            for pool, addrs in ((net.pool4, net.reserved4 + ([net.bridge_ip4.ip]
                                                             if net.bridge_ip4 else [])),
                                (net.pool6, net.reserved6)):
                if not pool:
                    continue
                try:
                    for a in addrs:
                        self._ipam.release_address(pool, a)
                    self._ipam.release_pool(pool)
                except PoolNotFoundError:
                    pass
            self._drop_records(nid)
        with self._lock:
            self._networks.pop(nid, None)
        if net.firewall:             # other processes' networks count too: ask the kernel
            try:
                self._destroy_firewall_if_unused()
            except Exception:
                log.exception("removing pynetlib's nftables tables")

    def _destroy_firewall_if_unused(self) -> None:
        """Remove pynetlib's tables once no network (of any process) has rules there."""
        from pynetlib.drivers.bridge.firewall import parse_tag

        with self._fw_locked() as fw:
            for obj in fw.owned_rules():
                t = parse_tag(obj.get("tag", ""))
                if t is not None and t["kind"] in ("network", "endpoint"):
                    return
            fw.destroy()

    def _delete_bridge(self, net: _Network) -> None:
        host = self._host()
        try:
            info = host.link_get(net.bridge)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return
            raise
        if info.alias == network_tag(self._sid, net.nid):
            host.link_delete(info.index)

    # -- endpoints ------------------------------------------------------------------
    def create_endpoint(self, nid: str, eid: str, ep_info, options: dict) -> None:
        net = self._net(nid)
        for k in options:
            if k not in _ENDPOINT_OPTIONS:
                raise InvalidConfigError(f"unknown bridge endpoint option {k!r}")
        bindings = list(options.get(netlabel.PORT_MAP, []))
        exposed = list(options.get(netlabel.EXPOSED_PORTS, []))
        mac = options.get(netlabel.MAC_ADDRESS)
        undo: list = []
        with net.lock, self._tx():
            if eid in net.endpoints:
                raise ForbiddenError(f"endpoint {eid} exists")
            try:
                ep = self._reserve_addresses(net, eid, ep_info, mac, undo)
                ep.bindings = self._reserve_ports(net, ep, bindings, undo)
                ep.exposed = exposed
                self._save_ep(net, ep)
            except BaseException:
                for fn in reversed(undo):
                    try:
                        fn()
                    except Exception:
                        log.exception("rollback of endpoint %s", eid)
                raise
            net.endpoints[eid] = ep
            net.macs[ep.mac.lower()] = eid

    def _reserve_addresses(self, net: _Network, eid: str, ep_info, mac, undo) -> _Endpoint:
        ipam = self._ipam
        assigned = ep_info.interfaces()
        v6_prefix = net.subnet6.prefixlen if net.subnet6 else None
        if assigned:
            iface = assigned[0]
            v4, v6 = iface.address(), iface.address_ipv6()
            if v4 is not None:
                if v4.ip not in net.subnet4:
                    raise IPOutOfRangeError(v4.ip, net.pool4,
                                            f"invalid address {v4.ip}: it does not belong "
                                            f"to the network's subnet {net.subnet4}")
                self._request(net, net.pool4, v4.ip)
                undo.append(lambda: ipam.release_address(net.pool4, v4.ip))
            if v6 is not None:
                if net.subnet6 is None or v6.ip not in net.subnet6:
                    raise IPOutOfRangeError(v6.ip, net.pool6 or "",
                                            f"invalid address {v6.ip}: it does not belong "
                                            "to the network's IPv6 subnet")
                self._request(net, net.pool6, v6.ip)
                undo.append(lambda: ipam.release_address(net.pool6, v6.ip))
            have_mac = iface.mac_address() or mac
            new_mac = None if iface.mac_address() else (
                mac or (mac_from_ipv4(v4.ip) if v4 is not None else random_mac()))
            self._check_mac(net, have_mac or new_mac)
            new_v6 = None
            if v6 is None and net.pool6 is not None:
                new_v6 = self._allocate_v6(net, have_mac or new_mac, undo)
            if iface.is_open():
                iface.complete(v4_prefixlen=net.subnet4.prefixlen, v6_prefixlen=v6_prefix,
                               mac=new_mac, ipv6=new_v6)
            elif new_mac or new_v6:
                raise ForbiddenError("the endpoint's assigned interface lacks a MAC or an "
                                     "IPv6 address that this network needs")
            return _Endpoint(eid, iface.mac_address(), iface.address(), iface.address_ipv6())
        if mac:
            self._check_mac(net, mac)       # before any reservation moves a cursor
        v4 = self._request(net, net.pool4)
        undo.append(lambda: ipam.release_address(net.pool4, v4.ip))
        if not mac:
            mac = mac_from_ipv4(v4.ip)
            self._check_mac(net, mac)
        v6 = self._allocate_v6(net, mac, undo) if net.pool6 is not None else None
        ep_info.add_interface(1, mac, v4, v6)
        return _Endpoint(eid, mac, v4, v6)

    def _request(self, net: _Network, pool: str, address=None):
        """An address from IPAM. Exhausted, or the address asked for is taken, while
        deleted endpoints' devices hold addresses (quarantine.py): delete those devices
        now and try again. A static address some live endpoint has fails at once."""
        try:
            return self._ipam.request_address(pool, address)
        except NoAvailableIPsError:
            if not self._quarantine.settle(net.nid):
                raise
        except IPAlreadyAllocatedError:
            if not self._quarantine.holds(net.nid, address) or \
                    not self._quarantine.settle(net.nid):
                raise
        return self._ipam.request_address(pool, address)

    def _allocate_v6(self, net: _Network, mac: str, undo) -> ipaddress.IPv6Interface:
        ipam = self._ipam
        preferred = None
        if net.subnet6.prefixlen <= 80:
            host = int(mac.replace(":", ""), 16)
            preferred = net.subnet6.network_address + host
        v6 = self._request(net, net.pool6, preferred)
        undo.append(lambda: ipam.release_address(net.pool6, v6.ip))
        return v6

    def _check_mac(self, net: _Network, mac: str) -> None:
        validate.mac(mac)
        other = net.macs.get(mac.lower())
        if other is not None and not self._has_record(f"ep/{net.nid}/{other}"):
            self._prune(net)                    # deleted by another process
            other = None
        # Another process may have taken it meanwhile: the MAC index's primary key
        # refuses it then, when the endpoint's records are written (_save_ep).
        if other is not None:
            raise ForbiddenError(f"MAC address {mac} is in use by endpoint {other} "
                                 "in this network")

    def _reserve_ports(self, net: _Network, ep: _Endpoint, bindings, undo) -> list[PortBinding]:
        if not bindings:
            return []
        alloc = self._port_alloc()
        out = []
        for b in bindings:
            host_ip = b.host_ip or net.cfg.DefaultBindingIP
            port = alloc.request(b.proto, host_ip, b.host_port)
            undo.append(lambda p=port, b=b, h=host_ip: alloc.release(b.proto, h, p))
            out.append(PortBinding(b.proto, b.port, port, host_ip,
                                   ep.v4.ip if ep.v4 is not None else None))
        return out

    def delete_endpoint(self, nid: str, eid: str) -> None:
        net = self._net(nid)
        with net.lock, self._tx():
            ep = self._ep(net, eid)
            if ep.bindings:
                alloc = self._port_alloc()
                for b in ep.bindings:
                    alloc.release(b.proto, b.host_ip, b.host_port)
            addrs = [(pool, iface.ip) for pool, iface in ((net.pool4, ep.v4),
                                                          (net.pool6, ep.v6))
                     if iface is not None and pool is not None]
            # Held while a device that may carry them still exists (see quarantine.py).
            if not self._quarantine.hold(nid, eid, host_ifname(eid), addrs):
                for pool, ip in addrs:
                    self._ipam.release_address(pool, ip)
            self._drop_records(nid, ep)
            del net.endpoints[eid]
            net.macs.pop(ep.mac.lower(), None)

    def endpoint_oper_info(self, nid: str, eid: str) -> dict:
        net = self._net(nid)
        with net.lock:
            ep = self._ep(net, eid)
            return {netlabel.PORT_MAP: list(ep.bindings), netlabel.MAC_ADDRESS: ep.mac,
                    netlabel.EXPOSED_PORTS: list(ep.exposed)}

    # -- join / leave ---------------------------------------------------------------
    def join(self, nid: str, eid: str, sbox_key: str, jinfo, options: dict) -> None:
        net = self._net(nid)
        with net.lock:
            ep = self._ep(net, eid)
        target = jinfo.plumb_target()
        hname = host_ifname(eid)
        host = self._host()
        if target is not None:
            def attach():
                ep.host_index = attach_veth_pair(
                    host, target.netns, hname, target.ifname, bridge=self._bridge_index(net),
                    mtu=net.cfg.Mtu or None, mac=ep.mac, address=ep.v4,
                    gateway=net.gateway4 if (target.route4 and ep.v4) else None,
                    address6=ep.v6,
                    gateway6=net.gateway6 if (target.route6 and ep.v6) else None,
                    alias=endpoint_tag(self._sid, eid), lo_up=target.lo_up)[1]

            try:
                self._with_bridge_room(attach)
            except ObjectExistsError:
                # Our own veth of an earlier join may still be on its way out (the kernel
                # destroys it with the old namespace, or the reaper has it): remove it
                # now and try once more. A device that is not ours is never touched.
                if not self._remove_own_leftover(host, hname, eid):
                    raise
                self._with_bridge_room(attach)
        else:
            self._with_bridge_room(lambda: host.veth_create(
                hname, "pnp" + eid[:12], mac=None, peer_mac=ep.mac, mtu=net.cfg.Mtu or None,
                master=net.bridge, up=True, alias=endpoint_tag(self._sid, eid)))
        try:                                     # from here on, failures unplug again
            if target is not None:
                jinfo.plumbed(1, target.ifname)
            else:
                jinfo.interface_names()[0].set_names("pnp" + eid[:12], "eth0")
            if ep.v4 is not None:
                jinfo.set_gateway(net.gateway4)
            if ep.v6 is not None and net.gateway6 is not None:
                jinfo.set_gateway_ipv6(net.gateway6)
            if net.firewall and not net.cfg.EnableICC:
                self._fw_call("add_port", nid, hname)
            if net.firewall and ep.bindings:
                # A container reaching its own mapped port comes back through its port.
                host.bridge_port_set(hname, hairpin=True)
                self._fw_call("add_port_mappings", nid, eid, net.bridge,
                              ep.v4.ip if ep.v4 else None,
                              ep.v6.ip if ep.v6 else None, ep.bindings)
        except BaseException:
            self._unplug(net, ep, hname)
            raise

    def leave(self, nid: str, eid: str) -> None:
        """Unplug: rules, then the device. Idempotent: what is gone already is fine."""
        try:
            net = self._net(nid)
            with net.lock:
                ep = self._ep(net, eid)
        except NotFoundError:
            return
        self._unplug(net, ep, host_ifname(eid))

    def _unplug(self, net: _Network, ep: _Endpoint, hname: str) -> None:
        """Reverse of join, best effort, in reverse order: rules, then the device."""
        errors = []
        if net.firewall and ep.bindings:
            try:
                self._fw_call("remove_port_mappings", net.nid, ep.eid)
            except Exception as e:
                errors.append(e)
        if net.firewall and not net.cfg.EnableICC:
            try:
                self._fw_call("remove_port", net.nid, hname)
            except Exception as e:
                errors.append(e)
        try:
            # Out of service at once: with the firewall, its index goes into the set of
            # retired ports (every frame from or to it dropped; no RTNL lock), else the
            # port is disabled. Deleted by the reaper with others, sharing one RCU grace
            # period. Until then the endpoint's addresses stay out of IPAM
            # (quarantine.py).
            dev, ep.host_index = ep.host_index or hname, 0
            if isinstance(dev, str) and net.firewall:   # joined by another process
                try:
                    dev = self._host().index(dev)
                except OSError:
                    pass                    # gone already: submit below says so
            reaper = self._reaper()
            if isinstance(dev, int) and self._block_port(net, dev):
                ticket = reaper.submit_blocked(dev)
            else:
                ticket = reaper.submit(self._host(), dev)
            self._quarantine.retired(ep.eid, ticket)
        except OSError as e:
            errors.append(e)
        if errors:
            raise errors[0]

    def _with_bridge_room(self, plug):
        """Run ``plug`` (which puts a port on a bridge). A bridge has at most 1023
        ports, and with many live containers the ports on their way out (the reaper's
        batch, namespaces the kernel is still destroying) can fill it: then delete the
        reaper's batch at once and wait for the kernel, for a bounded time."""
        deadline = None
        while True:
            try:
                return plug()
            except OSError as e:
                if e.errno != errno.EXFULL:
                    raise
                if deadline is None:
                    deadline = time.monotonic() + BRIDGE_FULL_WAIT
                    self.flush_teardown()
                elif time.monotonic() > deadline:
                    raise
                time.sleep(0.002)

    def _remove_own_leftover(self, host, hname: str, eid: str) -> bool:
        try:
            info = host.link_get(hname)
        except OSError:
            return True                      # gone meanwhile
        if info.alias != endpoint_tag(self._sid, eid):
            return False
        try:
            host.link_delete(info.index)
        except OSError as e:
            if e.errno != errno.ENODEV:
                raise
        return True

    def _reaper(self):
        with self._lock:
            if self._reap is None:
                from pynetlib.drivers.bridge.reaper import Reaper

                self._reap = Reaper(unblock=self._unblock_ports)
            return self._reap

    # -- the set of retired ports (firewall.py: bridge pynetlib, set "retired") ----------
    def _retired_set(self):
        with self._lock:
            if self._retired is None:
                from pynetlib.kernel.nftset import NftSetSocket

                self._retired = NftSetSocket()
            return self._retired

    def _block_port(self, net: _Network, index: int) -> bool:
        """Put bridge port ``index`` into the retired set: the firewall drops every
        frame from or to it. False when that cannot be done (a network without the
        firewall, say): the caller disables the port instead."""
        if not net.firewall:
            return False
        from pynetlib.drivers.bridge.firewall import RETIRED_SET, TABLE

        def add() -> None:
            self._retired_set().add("bridge", TABLE, RETIRED_SET, [index])

        try:
            add()
            return True
        except OSError as e:
            if e.errno != errno.ENOENT:
                log.warning("retiring port %d through the firewall: %s", index, e)
                return False
        try:            # the set is missing (tables of an older pynetlib): make it
            self._fw_call("ensure")
            add()
            return True
        except Exception as e:
            log.warning("retiring port %d through the firewall: %s", index, e)
            return False

    def _unblock_ports(self, indexes: list[int]) -> None:
        """The reaper deleted these ports: their indexes leave the retired set. A set
        that is gone (its table removed with the last network that had the firewall)
        took them with it."""
        from pynetlib.drivers.bridge.firewall import RETIRED_SET, TABLE

        try:
            self._retired_set().remove("bridge", TABLE, RETIRED_SET, indexes)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise

    def prune_retired_ports(self) -> list[str]:
        """Take out of the retired set the indexes of devices that are gone (left by a
        process that died before its reaper's batch). For reconcile."""
        from pynetlib.drivers.bridge.firewall import FirewallError

        try:
            values = self._fw().retired_ports()
        except (FirewallError, OSError):
            return []                   # no firewall here: nothing was ever put there
        gone = []
        host = self._host()
        for v in values:                # nft names the devices that exist
            if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
                try:
                    host.link_get(int(v))
                except OSError as e:
                    if e.errno == errno.ENODEV:
                        gone.append(int(v))
        if gone:
            self._unblock_ports(gone)
        return [f"removed {len(gone)} deleted devices from the retired-port set"] \
            if gone else []

    def flush_teardown(self) -> None:
        """Delete every device waiting in the reap group now."""
        with self._lock:
            reap = self._reap
        if reap is not None:
            reap.flush()

    def settle_quarantine(self) -> list[str]:
        """Release every quarantined address now (reconcile, after a crash)."""
        return self._quarantine.settle()

    # -- audit ----------------------------------------------------------------------
    def audit_network(self, nid: str, endpoints: dict[str, str]) -> list[str]:
        """Discrepancies of one network; ``endpoints``: the controller's endpoint id ->
        state."""
        problems = []
        try:
            net = self._net(nid)
        except NotFoundError:
            return [f"network {nid}: no bridge driver record"]
        host = self._host()
        try:
            info = host.link_get(net.bridge)
            if info.alias != network_tag(self._sid, nid):
                problems.append(f"network {nid}: bridge {net.bridge} is not tagged as ours")
        except OSError:
            problems.append(f"network {nid}: bridge {net.bridge} is missing")
        with net.lock:
            stored = self._prune(net)
            recorded = {eid for eid in endpoints}
            for eid in recorded:
                try:
                    self._ep(net, eid)
                except NotFoundError:
                    problems.append(f"endpoint {eid}: no bridge driver record")
            extra = stored - recorded
        for eid in sorted(extra):
            problems.append(f"endpoint {eid}: a bridge driver record without an endpoint")
        joined = {eid for eid, st in endpoints.items() if st == "attached"}
        if net.firewall:
            from pynetlib.drivers.bridge.firewall import parse_tag

            mine = [parse_tag(o.get("tag", "")) for o in self._fw().owned_rules()]
            if not any(t and t.get("network") == nid for t in mine):
                problems.append(f"network {nid}: its firewall rules are missing")
            for t in mine:
                if t and t["kind"] == "endpoint" and nid.startswith(t["network"]) and \
                        t["endpoint"] not in joined:
                    problems.append(f"endpoint {t['endpoint']}: port-mapping rules without "
                                    "a joined endpoint")
        for eid, st in endpoints.items():
            name = host_ifname(eid)
            try:
                dev = host.link_get(name)
            except OSError:
                dev = None
            if st == "attached":
                if dev is None:
                    problems.append(f"endpoint {eid}: joined but its veth {name} is missing")
                elif dev.master != self._bridge_index(net):
                    problems.append(f"endpoint {eid}: veth {name} is not on {net.bridge}")
            elif st == "created" and dev is not None:
                problems.append(f"endpoint {eid}: not joined but its veth {name} exists")
        return problems

    def audit_addresses(self, nid: str) -> list[str]:
        """The pool's allocated IPv4 addresses against the records: the gateway, the
        reserved addresses and the endpoints' (IPv6 pools are too large to list)."""
        try:
            net = self._net(nid)
        except NotFoundError:
            return []                    # audit_network reports the missing record
        listing = getattr(self._ipam, "allocated", None)
        if net.pool4 is None or listing is None:
            return []
        c = self._store.read() if self._store is not None else None
        with net.lock:
            self._prune(net)
            eps = dict(net.endpoints)
        if c is not None:
            for (v,) in c.execute("SELECT value FROM kv WHERE owner='bridge' AND key LIKE ?",
                                  (f"ep/{nid}/%",)):
                ep = _Endpoint.from_json(loads(v, "bridge endpoint"))
                eps[ep.eid] = ep
        want = {ipaddress.ip_address(a) for a in net.reserved4}
        if net.bridge_ip4 is not None:
            want.add(net.bridge_ip4.ip)
        want |= {ep.v4.ip for ep in eps.values() if ep.v4 is not None}
        problems = []
        for key, rec in self._quarantine.records(nid).items():
            # held until their device is gone; a dead process's: reconcile releases them
            want |= {ipaddress.ip_address(ip) for pool, ip in rec.get("addrs", [])
                     if pool == net.pool4}
            if not owner_alive(rec.get("owner")):
                problems.append(f"network {nid}: addresses {[a for _, a in rec['addrs']]} "
                                f"are held for endpoint {key.rsplit('/', 1)[1]} by a process "
                                "that is gone (reconcile releases them)")
        if net.cfg.FixedCIDR is not None:
            # IPAM lists the pool's range only; a gateway or a static address outside
            # the range is held in the subnet's bitmap, where the range never allocates
            want = {a for a in want if a in net.cfg.FixedCIDR}
        try:
            have = set(listing(net.pool4))
        except Exception as e:
            return [f"network {nid}: IPAM pool {net.pool4} does not load: {e}"]
        problems += [f"network {nid}: address {a} is recorded but free in IPAM pool "
                     f"{net.pool4} (it could be handed out twice)" for a in sorted(want - have)]
        problems += [f"network {nid}: address {a} is allocated in IPAM pool {net.pool4} but "
                     "no record holds it (leaked)" for a in sorted(have - want)]
        return problems

    def owned_devices(self, *, include_pending: bool = True) -> list[tuple[str, str, str, int]]:
        """(kind, id, name, ifindex) of every device in the host namespace tagged with
        this store's id: for reconcile and audit. ``include_pending=False`` leaves out
        the devices waiting in the reap group (retired, deleted soon)."""
        from pynetlib.drivers.bridge.reaper import REAP_GROUP

        out = []
        for link in self._host().links():
            t = parse_device_tag(link.alias) if link.alias else None
            if t is None or t[0] != self._sid:
                continue
            if not include_pending and link.group == REAP_GROUP:
                continue
            out.append((t[1], t[2], link.name, link.index))
        return out
