"""The default IPAM driver: libnetwork's ``ipamapi`` contract over the C bitmap.

Address spaces ``LocalDefault`` and ``GlobalDefault``. A pool id is
``AddressSpace/Subnet[/SubPool]`` (``LocalDefault/172.18.0.0/16``,
``LocalDefault/10.0.0.0/16/10.0.1.0/24``).

Every *master* subnet of an address space owns one :class:`Bitmap` whose ordinal ``k``
is the address ``network + k``. Master subnets of one space never overlap, so no two
bitmaps can hand out one address. A pool with a sub-pool shares its master's bitmap
(creating the master when needed, after the same overlap check) and allocates inside
the sub-pool's range; the master is released with its last pool.

Reserved addresses: an IPv4 pool of /30 or larger never hands out its network and
broadcast addresses, an IPv6 pool of /126 or larger never its subnet-router anycast
(ordinal 0). Point-to-point pools have no reserved address: a /31 (RFC 3021) or /127
(RFC 6164) hands out both addresses, a /32 or /128 its single address. Sub-pool edges
are allocatable; only the master's reserved ordinals are excluded. An IPv6 pool larger
than /64 tracks its first 2**64 addresses (a /64 is tracked whole).

Allocation is next-fit by default (a released address is not handed out again before
the cursor wraps); option ``com.docker.network.ipam.serial`` = ``"false"`` asks for
first-fit. A gateway request (option ``RequestAddressType`` =
``com.docker.network.gateway``) without a preferred address takes the lowest free
address of the range and does not move the cursor.

Threads: pool creation and release hold the allocator's lock; address requests hold only
the pool bitmap's lock, so pools allocate in parallel.
"""

from __future__ import annotations

import base64
import bisect
import ipaddress
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface, IPv6Network

from pynetlib.errors import (
    BadRequestError,
    InvalidPoolError,
    IPAlreadyAllocatedError,
    IPOutOfRangeError,
    NoAvailableIPsError,
    NetworkError,
    NoAvailablePoolError,
    NotFoundError,
    PoolOverlapError,
)
from pynetlib.ipam.bitmap import MAX_SIZE, Bitmap
from pynetlib.ipam.pools import GLOBAL_DEFAULT_POOLS, LOCAL_DEFAULT_POOLS, NetworkToSplit, candidates
from pynetlib.ipam.routes import proc_routes

__all__ = [
    "Allocator", "LOCAL_DEFAULT", "GLOBAL_DEFAULT", "REQUEST_ADDRESS_TYPE", "GATEWAY",
    "SERIAL", "PoolNotFoundError",
]

LOCAL_DEFAULT = "LocalDefault"
GLOBAL_DEFAULT = "GlobalDefault"
#: Option key of request_address naming the kind of address wanted (ipamapi).
REQUEST_ADDRESS_TYPE = "RequestAddressType"
#: Its value for a network's gateway (netlabel.Gateway).
GATEWAY = "com.docker.network.gateway"
#: Option key choosing next-fit ("true") or first-fit ("false").
SERIAL = "com.docker.network.ipam.serial"

_STATE_VERSION = 1

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
RouteSource = Callable[[], Iterable[Network]]


class PoolNotFoundError(NotFoundError):
    """No pool with that id (never requested, or already released)."""

    def __init__(self, pool: str) -> None:
        self.pool = pool
        super().__init__(f"pool {pool} not found")


class _Master:
    """One master subnet of an address space and the bitmap of its addresses."""

    __slots__ = ("network", "base", "bitmap", "lo", "hi", "refs", "id")

    def __init__(self, space: str, network: Network) -> None:
        self.network = network
        self.id = f"{space}/{network}"
        self.base = int(network.network_address)
        size = min(network.num_addresses, MAX_SIZE)
        self.bitmap = Bitmap(size, name=self.id)
        self.refs = 0
        if network.num_addresses < 4:
            self.lo, self.hi = 0, size - 1          # /31 /32 /127 /128: no reserved address
        elif network.version == 4:
            self.lo, self.hi = 1, size - 2          # network and broadcast
        else:
            self.lo, self.hi = 1, size - 1          # subnet-router anycast

    def ordinal(self, addr: Address) -> int | None:
        """The ordinal of an address in this master, None when it is not tracked."""
        off = int(addr) - self.base
        return off if addr in self.network and off < MAX_SIZE else None


class _Pool:
    """A requested pool: a master and the ordinal range it allocates from."""

    __slots__ = ("id", "space", "network", "sub", "master", "lo", "hi")

    def __init__(self, pool_id: str, space: str, network: Network, sub: Network | None,
                 master: _Master) -> None:
        self.id, self.space, self.network, self.sub, self.master = (
            pool_id, space, network, sub, master)
        if sub is None:
            self.lo, self.hi = master.lo, master.hi
        else:
            first = int(sub.network_address) - master.base
            self.lo = max(first, master.lo)
            self.hi = min(first + sub.num_addresses - 1, master.hi)


class _Space:
    """An address space: its pools, its masters, and their sorted extents."""

    def __init__(self, name: str, splits: Sequence[NetworkToSplit]) -> None:
        self.name = name
        self.splits = tuple(splits)
        self.pools: dict[tuple[Network, Network | None], _Pool] = {}
        self.masters: dict[Network, _Master] = {}
        self.extents: dict[int, list[tuple[int, int, Network]]] = {4: [], 6: []}

    def overlapping(self, net: Network) -> Network | None:
        """A master of this space that overlaps ``net``, or None."""
        ext = self.extents[net.version]
        a, b = int(net.network_address), int(net.broadcast_address)
        i = bisect.bisect_left(ext, (a, -1))
        if i < len(ext) and ext[i][0] <= b:
            return ext[i][2]
        if i > 0 and ext[i - 1][1] >= a:
            return ext[i - 1][2]
        return None

    def add_master(self, m: _Master) -> None:
        self.masters[m.network] = m
        bisect.insort(self.extents[m.network.version],
                      (int(m.network.network_address), int(m.network.broadcast_address),
                       m.network))

    def remove_master(self, m: _Master) -> None:
        del self.masters[m.network]
        ext = self.extents[m.network.version]
        ext.remove((int(m.network.network_address), int(m.network.broadcast_address),
                    m.network))


class Allocator:
    """libnetwork's default IPAM driver (``ipamapi.Ipam``).

    ``local_pools`` / ``global_pools``: the default pools of each space (lists of
    :class:`NetworkToSplit`, IPv4 and IPv6 mixed). ``routes``: a callable returning the
    host's route destinations; default pools overlapping one are skipped (None turns
    that check off). ``next_fit``: the default allocation order.
    """

    def __init__(self, *, local_pools: Sequence[NetworkToSplit] = LOCAL_DEFAULT_POOLS,
                 global_pools: Sequence[NetworkToSplit] = GLOBAL_DEFAULT_POOLS,
                 routes: RouteSource | None = proc_routes, next_fit: bool = True) -> None:
        self._spaces = {LOCAL_DEFAULT: _Space(LOCAL_DEFAULT, local_pools),
                        GLOBAL_DEFAULT: _Space(GLOBAL_DEFAULT, global_pools)}
        self._routes = routes
        self._next_fit = next_fit
        self._lock = threading.Lock()
        self._by_id: dict[str, _Pool] = {}

    # --- ipamapi ----------------------------------------------------------------------------

    def default_address_spaces(self) -> tuple[str, str]:
        """(local, global) address space names."""
        return LOCAL_DEFAULT, GLOBAL_DEFAULT

    def request_pool(self, address_space: str, pool: str | Network | None = None,
                     sub_pool: str | Network | None = None,
                     options: Mapping[str, str] | None = None,
                     v6: bool = False) -> tuple[str, Network, dict[str, str]]:
        """Reserve a pool; returns ``(pool_id, network, meta)``.

        Without ``pool`` the first default pool of the space that overlaps neither an
        existing pool of the space nor a host route is taken."""
        space = self._space(address_space)
        if sub_pool is not None and pool is None:
            raise InvalidPoolError(sub_pool, "a sub-pool needs its pool")
        net = sub = None
        if pool is not None:
            net = _parse_pool(pool, v6)
            if sub_pool is not None:
                sub = _parse_pool(sub_pool, net.version == 6)
                if not sub.subnet_of(net):
                    raise InvalidPoolError(sub_pool, f"sub-pool is not inside pool {net}")
        with self._lock:
            if net is None:
                net = self._pick_default(space, v6)
            pool_id = _pool_id(space.name, net, sub)
            if (net, sub) in space.pools:
                raise PoolOverlapError(pool_id, pool_id, f"pool {pool_id} is already reserved")
            master = space.masters.get(net)
            if master is None or sub is None:
                other = space.overlapping(net)
                if other is not None:
                    raise PoolOverlapError(net, other, f"pool {net} overlaps with pool "
                                           f"{_pool_id(space.name, other, None)}")
                master = _Master(space.name, net)
                space.add_master(master)
            master.refs += 1
            p = _Pool(pool_id, space.name, net, sub, master)
            space.pools[(net, sub)] = p
            self._by_id[pool_id] = p
        return pool_id, net, {}

    def release_pool(self, pool_id: str) -> None:
        """Give a pool back; its master subnet goes with its last pool."""
        space_name, net, sub = _parse_pool_id(pool_id)
        with self._lock:
            space = self._spaces.get(space_name)
            p = space.pools.pop((net, sub), None) if space else None
            if p is None:
                raise PoolNotFoundError(pool_id)
            del self._by_id[p.id]
            m = p.master
            m.refs -= 1
            if m.refs == 0:
                space.remove_master(m)
                m.bitmap.close()

    def request_address(self, pool_id: str, preferred: str | Address | None = None,
                        options: Mapping[str, str] | None = None) -> IPv4Interface | IPv6Interface:
        """An address of the pool, with the pool's mask.

        ``preferred``: that address (anywhere in the pool except a reserved address);
        otherwise the next free address of the pool's range."""
        p = self._pool(pool_id)
        m = p.master
        try:
            if preferred is not None:
                addr = _parse_address(preferred, p)
                off = m.ordinal(addr)
                if off is None or not m.lo <= off <= m.hi:
                    raise IPOutOfRangeError(addr, p.id, f"address {addr} is out of the "
                                            f"range of pool {p.id}" if off is None else
                                            f"address {addr} is reserved in pool {p.id}")
                try:
                    m.bitmap.set(off)
                except IPAlreadyAllocatedError:
                    raise IPAlreadyAllocatedError(addr, p.id) from None
            else:
                if p.lo > p.hi:
                    raise NoAvailableIPsError(p.id)
                opts = options or {}
                if opts.get(REQUEST_ADDRESS_TYPE) == GATEWAY:
                    next_fit = False
                else:
                    serial = opts.get(SERIAL)
                    next_fit = self._next_fit if serial is None else serial.lower() == "true"
                try:
                    off = m.bitmap.allocate(p.lo, p.hi, next_fit=next_fit)
                except NoAvailableIPsError:
                    raise NoAvailableIPsError(p.id) from None
        except BadRequestError:
            if m.bitmap.closed:
                raise PoolNotFoundError(pool_id) from None
            raise
        return _interface(m, off)

    def release_address(self, pool_id: str, address: str | Address | IPv4Interface | IPv6Interface) -> bool:
        """Free an address of the pool. True if it was allocated; False (and nothing
        changed) if it was not."""
        p = self._pool(pool_id)
        m = p.master
        addr = _parse_address(address, p)
        off = m.ordinal(addr)
        if off is None:
            raise IPOutOfRangeError(addr, p.id)
        if not m.lo <= off <= m.hi:
            return False  # a reserved address is never allocated
        try:
            return m.bitmap.release(off)
        except BadRequestError:
            if m.bitmap.closed:
                raise PoolNotFoundError(pool_id) from None
            raise

    # --- batches and queries ------------------------------------------------------------------

    def request_addresses(self, pool_id: str, n: int) -> list[IPv4Interface | IPv6Interface]:
        """Up to ``n`` addresses in one C call (fewer only when the pool runs out;
        :class:`NoAvailableIPsError` when it has none)."""
        p = self._pool(pool_id)
        m = p.master
        if p.lo > p.hi:
            raise NoAvailableIPsError(p.id)
        try:
            offs = m.bitmap.allocate_many(n, p.lo, p.hi, next_fit=self._next_fit)
        except NoAvailableIPsError:
            raise NoAvailableIPsError(p.id) from None
        return [_interface(m, off) for off in offs]

    def release_addresses(self, pool_id: str, addresses: Iterable) -> int:
        """Free many addresses in one C call; returns how many were allocated. An
        address outside the pool raises before anything changes."""
        p = self._pool(pool_id)
        m = p.master
        offs = []
        for a in addresses:
            addr = _parse_address(a, p)
            off = m.ordinal(addr)
            if off is None:
                raise IPOutOfRangeError(addr, p.id)
            if m.lo <= off <= m.hi:
                offs.append(off)
        return m.bitmap.release_many(offs)

    def pools(self) -> list[str]:
        """Ids of every reserved pool (a snapshot)."""
        with self._lock:
            return list(self._by_id)

    def is_allocated(self, pool_id: str, address: str | Address) -> bool:
        """Whether the address is allocated in the pool's master subnet."""
        p = self._pool(pool_id)
        off = p.master.ordinal(_parse_address(address, p))
        return off is not None and p.master.bitmap.test(off)

    def available(self, pool_id: str) -> int:
        """Free addresses in the pool's range."""
        p = self._pool(pool_id)
        if p.lo > p.hi:
            return 0
        return p.hi - p.lo + 1 - p.master.bitmap.count_used(p.lo, p.hi)

    # --- state ----------------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """The allocator's state as JSON-ready data: the pools in request order and each
        master's bitmap blob (base64). Pools are consistent with each other; each bitmap
        is captured atomically."""
        with self._lock:
            pools = list(self._by_id)
            masters = {m.id: m.bitmap for sp in self._spaces.values()
                       for m in sp.masters.values()}
        return {"version": _STATE_VERSION, "pools": pools,
                "bitmaps": {mid: base64.b64encode(bm.serialize()).decode("ascii")
                            for mid, bm in masters.items()}}

    @classmethod
    def restore(cls, state: Mapping, **kwargs) -> Allocator:
        """A new allocator holding the pools and allocations of :meth:`snapshot`.
        ``kwargs`` go to the constructor. Anything inconsistent (unknown version, a
        bitmap of the wrong size, a reserved address marked allocated, a bitmap for no
        pool, a corrupt blob) raises :class:`BadRequestError` and nothing is returned."""
        if not isinstance(state, Mapping) or state.get("version") != _STATE_VERSION:
            raise BadRequestError("not an IPAM allocator snapshot of a known version")
        ipam = cls(**kwargs)
        try:
            for pool_id in state["pools"]:
                space, net, sub = _parse_pool_id(pool_id)
                ipam.request_pool(space, net, sub, v6=net.version == 6)
            masters = {m.id: m for sp in ipam._spaces.values() for m in sp.masters.values()}
            blobs = dict(state["bitmaps"])
            if set(blobs) != set(masters):
                raise BadRequestError("snapshot bitmaps do not match its pools")
            for mid, text in blobs.items():
                m = masters[mid]
                bm = Bitmap.deserialize(base64.b64decode(text, validate=True), name=mid)
                if bm.size != m.bitmap.size:
                    raise BadRequestError(f"snapshot bitmap of {mid} has the wrong size")
                reserved = bm.used - (bm.count_used(m.lo, m.hi) if m.lo <= m.hi else 0)
                if reserved:
                    raise BadRequestError(f"snapshot bitmap of {mid} marks reserved "
                                          "addresses allocated")
                m.bitmap = bm
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequestError(f"malformed IPAM snapshot: {e!r}") from None
        except NetworkError as e:
            if isinstance(e, BadRequestError):
                raise
            raise BadRequestError(f"inconsistent IPAM snapshot: {e}") from None
        return ipam

    # --- helpers ---------------------------------------------------------------------------------

    def _space(self, name: str) -> _Space:
        if not isinstance(name, str) or not name:
            raise BadRequestError("an address space is required")
        space = self._spaces.get(name)
        if space is None:
            raise BadRequestError(f"unknown address space {name!r}")
        return space

    def _pool(self, pool_id: str) -> _Pool:
        p = self._by_id.get(pool_id)
        if p is None:
            _parse_pool_id(pool_id)  # malformed: BadRequest
            raise PoolNotFoundError(pool_id)
        return p

    def _pick_default(self, space: _Space, v6: bool) -> Network:
        routes = []
        if self._routes is not None:
            routes = [r for r in self._routes() if r.version == (6 if v6 else 4)]
        for cand in candidates(space.splits, v6):
            if space.overlapping(cand) is None and not any(cand.overlaps(r) for r in routes):
                return cand
        raise NoAvailablePoolError(
            space.name, f"could not find an available, non-overlapping IPv{6 if v6 else 4} "
            f"address pool among the defaults of {space.name} to assign to the network")


def _pool_id(space: str, net: Network, sub: Network | None) -> str:
    return f"{space}/{net}" + (f"/{sub}" if sub is not None else "")


def _parse_pool(value: str | Network, v6: bool) -> Network:
    """A pool CIDR: strict (no host bits), of the wanted IP version."""
    if isinstance(value, (IPv4Network, IPv6Network)):
        net = value
    else:
        if not isinstance(value, str) or "/" not in value:
            raise InvalidPoolError(value, "a pool is a CIDR such as 172.18.0.0/16")
        try:
            net = ipaddress.ip_network(value.strip(), strict=True)
        except ValueError as e:
            raise InvalidPoolError(value, str(e)) from None
    if (net.version == 6) != bool(v6):
        raise InvalidPoolError(value, f"an IPv{net.version} pool in an IPv{6 if v6 else 4} "
                               "request")
    return net


def _parse_pool_id(pool_id: str) -> tuple[str, Network, Network | None]:
    if not isinstance(pool_id, str):
        raise InvalidPoolError(pool_id, "a pool id is a string")
    parts = pool_id.split("/")
    try:
        if len(parts) == 3:
            return parts[0], ipaddress.ip_network(f"{parts[1]}/{parts[2]}"), None
        if len(parts) == 5:
            return (parts[0], ipaddress.ip_network(f"{parts[1]}/{parts[2]}"),
                    ipaddress.ip_network(f"{parts[3]}/{parts[4]}"))
    except ValueError:
        pass
    raise InvalidPoolError(pool_id, "a pool id is AddressSpace/Subnet[/SubPool]")


def _parse_address(value, p: _Pool) -> Address:
    if isinstance(value, (IPv4Interface, IPv6Interface)):
        addr = value.ip
    elif isinstance(value, (IPv4Address, IPv6Address)):
        addr = value
    elif isinstance(value, str):
        try:
            addr = ipaddress.ip_address(value.strip())
        except ValueError:
            raise BadRequestError(f"invalid address {value!r} for pool {p.id}") from None
    else:
        raise BadRequestError(f"invalid address {value!r} for pool {p.id}")
    if addr.version != p.network.version:
        raise BadRequestError(f"IPv{addr.version} address {addr} for IPv{p.network.version} "
                              f"pool {p.id}")
    return addr


def _interface(m: _Master, off: int) -> IPv4Interface | IPv6Interface:
    net = m.network
    if net.version == 4:
        return IPv4Interface((m.base + off, net.prefixlen))
    return IPv6Interface((m.base + off, net.prefixlen))
