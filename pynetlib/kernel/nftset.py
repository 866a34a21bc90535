"""Elements of an nftables set over nfnetlink, from C (``csrc/nft.c``).

The one firewall change made on a hot path: putting interface indexes into a set (a
bridge port taken out of service at leave) or taking them out. Each call is one
nftables transaction; it takes the namespace's nftables commit lock, not the RTNL lock
that every link change waits for (behind device deletions that can hold it for
milliseconds). The set itself, its table and the rules that use it are made with
libnftables by the firewall module.
"""

from __future__ import annotations

import errno
import re
from typing import Iterable

from pynetlib._ffi import ffi, lib
from pynetlib.errors import BadRequestError
from pynetlib.kernel._check import KernelError, check, new_err
from pynetlib.kernel.netlink import SocketLifetime
from pynetlib.kernel.netns import Netns

#: nftables address families (NFPROTO_*).
FAMILIES = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}
_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_./-]{0,254}\Z")
_U32 = 0xFFFFFFFF


def _name(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise BadRequestError(f"invalid nftables {what} name {value!r}")
    return value.encode()


class NftSetSocket(SocketLifetime):
    """A NETLINK_NETFILTER socket inside one namespace (the caller's when ``netns`` is
    None), for the elements of sets keyed by one 32-bit value in host byte order."""

    def __init__(self, netns: "Netns | int | None" = None, *, timeout: float = 5.0) -> None:
        self._open(lib.pnl_nft_sock_open, netns, timeout, "nfnetlink socket")

    def add(self, family: str, table: str, set_name: str, keys: Iterable[int]) -> None:
        """Put ``keys`` into the set (those there already are fine). One transaction
        (all or none) per 1,024 keys."""
        self._change(family, table, set_name, list(keys), lib.PNL_NFT_ADD)

    def remove(self, family: str, table: str, set_name: str, keys: Iterable[int]) -> None:
        """Take ``keys`` out of the set (those not there are fine). One transaction
        (all or none) per 1,024 keys; on kernels before 6.3, which cannot remove a key
        that may be absent in a batch, one per key."""
        vals = list(keys)
        try:
            self._change(family, table, set_name, vals, lib.PNL_NFT_DESTROY)
        except KernelError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ERANGE) or not vals:
                raise
            self.remove_each(family, table, set_name, vals)

    def remove_each(self, family: str, table: str, set_name: str,
                    keys: Iterable[int]) -> None:
        """Take ``keys`` out one transaction each, skipping those not there (what works
        on every kernel; a missing set or table is skipped the same way)."""
        for k in keys:
            try:
                self._change(family, table, set_name, [k], lib.PNL_NFT_DELETE)
            except KernelError as e:
                if e.errno != errno.ENOENT:
                    raise

    def _change(self, family, table, set_name, keys, op: int) -> None:
        fam = FAMILIES.get(family) if isinstance(family, str) else None
        if fam is None:
            raise BadRequestError(f"invalid nftables family {family!r}")
        t, s = _name(table, "table"), _name(set_name, "set")
        vals = list(keys)
        for k in vals:
            if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k <= _U32:
                raise BadRequestError(f"invalid set key {k!r}: an unsigned 32-bit int")
        max_n = lib.PNL_NFT_MAX_ELEMS
        for i in range(0, len(vals), max_n):
            chunk = vals[i:i + max_n]
            arr = ffi.new("uint32_t[]", chunk)
            err = new_err()
            with self._in_use() as sock:
                rc = lib.pnl_nft_set_keys(sock, fam, t, s, arr, len(chunk), op, err)
            check(rc, err, "nftables set element " + ("add" if op == lib.PNL_NFT_ADD else
                                                      "remove"), f"{family} {table} {set_name}")
