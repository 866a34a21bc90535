"""The ipamapi allocator with its state in the store: safe across processes.

The allocation logic is :class:`~pynetlib.ipam.allocator.Allocator`'s, run on a
process-local copy; the truth is in the store (``kv`` rows of owner ``ipam``): the list
of pools with a generation number, and each master subnet's bitmap (its serialised
form, cursor included) with its own generation. Every operation runs inside a store
transaction: it first brings the local copy up to date with whatever another process
committed (only what changed is reloaded), then changes it and writes the change back.
A transaction that rolls back drops the local copy of what it touched.
"""

from __future__ import annotations

import base64
import threading
from typing import Any, Mapping

from pynetlib.ipam.allocator import Allocator, _parse_pool_id
from pynetlib.ipam.bitmap import Bitmap
from pynetlib.store import CorruptStoreError, Store, dumps, loads

OWNER = "ipam"
_POOLS = "pools"


def _mkey(master_id: str) -> str:
    return "m/" + master_id


class PersistentAllocator:
    """``owner``: the ``kv`` owner its rows are kept under. Two allocators with different
    owners are separate IPAM instances on one store (e.g. the controller's and the one
    the Docker plugin serves): the same pool can exist in both."""

    def __init__(self, store: Store, *, owner: str = OWNER, **allocator_kwargs: Any) -> None:
        if not isinstance(owner, str) or not owner:
            raise ValueError("an IPAM store owner is a non-empty string")
        self._store = store
        self._owner = owner
        self._kw = allocator_kwargs
        self._lock = threading.RLock()
        self._mem = Allocator(**allocator_kwargs)
        self._pools_gen: int | None = None
        self._mgen: dict[str, int] = {}

    # -- syncing ----------------------------------------------------------------------
    def _get(self, c, key: str):
        row = c.execute("SELECT value FROM kv WHERE owner=? AND key=?",
                        (self._owner, key)).fetchone()
        return loads(row[0], f"ipam/{key}") if row else None

    def _put(self, c, key: str, value) -> None:
        c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)",
                  (self._owner, key, dumps(value)))

    def _masters(self) -> dict[str, Any]:
        return {m.id: m for sp in self._mem._spaces.values() for m in sp.masters.values()}

    def _invalidate(self) -> None:
        with self._lock:
            self._pools_gen = None
            self._mgen.clear()

    def _sync(self, c, pool_id: str | None = None) -> None:
        """Bring the local copy up to date (all pools; bitmaps of ``pool_id`` only)."""
        self._store.on_rollback(self._invalidate)
        known = self._known_master(pool_id)
        if known is not None:       # the pools and that bitmap in one read
            rows = dict(c.execute("SELECT key, value FROM kv WHERE owner=? AND key IN (?, ?)",
                                  (self._owner, _POOLS, _mkey(known))).fetchall())
            pools_text, master_text = rows.get(_POOLS), rows.get(_mkey(known))
            rec = loads(pools_text, f"ipam/{_POOLS}") if pools_text else None
            rec = rec or {"gen": 0, "pools": []}
            if rec["gen"] == self._pools_gen:
                self._load_master(self._masters()[known],
                                  loads(master_text, f"ipam/{_mkey(known)}")
                                  if master_text else None)
                return
        else:
            rec = self._get(c, _POOLS) or {"gen": 0, "pools": []}
        if rec["gen"] != self._pools_gen:
            mem = Allocator(**self._kw)
            try:
                for pid in rec["pools"]:
                    space, net, sub = _parse_pool_id(pid)
                    mem.request_pool(space, net, sub, v6=net.version == 6)
            except Exception as e:
                raise CorruptStoreError(f"stored IPAM pools do not load: {e}") from None
            old = self._mem
            self._mem, self._pools_gen, self._mgen = mem, rec["gen"], {}
            for m in [m for sp in old._spaces.values() for m in sp.masters.values()]:
                m.bitmap.close()
        masters = self._masters()
        wanted = [masters[self._mem._pool(pool_id).master.id]] if pool_id else []
        if pool_id is None:
            wanted = list(masters.values())
        for m in wanted:
            self._load_master(m, self._get(c, _mkey(m.id)))

    def _known_master(self, pool_id: str | None) -> str | None:
        """The master id of ``pool_id`` in the local copy, if it has it."""
        if pool_id is None or self._pools_gen is None:
            return None
        try:
            return self._mem._pool(pool_id).master.id
        except Exception:
            return None

    def _load_master(self, m, rec_m) -> None:
        """Replace the local bitmap of master ``m`` with the stored one if it changed."""
        if rec_m is None or rec_m["gen"] == self._mgen.get(m.id):
            return                  # never written (still empty), or unchanged
        try:
            bm = Bitmap.deserialize(base64.b64decode(rec_m["bitmap"], validate=True),
                                    name=m.id)
        except Exception as e:
            raise CorruptStoreError(f"stored IPAM bitmap of {m.id} is corrupt: {e}") \
                from None
        if bm.size != m.bitmap.size:
            raise CorruptStoreError(f"stored IPAM bitmap of {m.id} has the wrong size")
        m.bitmap.close()
        m.bitmap = bm
        self._mgen[m.id] = rec_m["gen"]

    def _save_pools(self, c) -> None:
        self._pools_gen = (self._pools_gen or 0) + 1
        self._put(c, _POOLS, {"gen": self._pools_gen, "pools": self._mem.pools()})

    def _save_master(self, c, pool_id: str) -> None:
        # Always after _sync in the same write transaction, so the local generation is
        # the stored one (or the row does not exist yet).
        m = self._mem._pool(pool_id).master
        gen = self._mgen.get(m.id, 0) + 1
        self._put(c, _mkey(m.id), {"gen": gen, "bitmap":
                                   base64.b64encode(m.bitmap.serialize()).decode("ascii")})
        self._mgen[m.id] = gen

    # -- ipamapi ------------------------------------------------------------------------
    def default_address_spaces(self) -> tuple[str, str]:
        return self._mem.default_address_spaces()

    def request_pool(self, address_space: str, pool=None, sub_pool=None,
                     options: Mapping[str, str] | None = None, v6: bool = False):
        with self._store.tx() as c, self._lock:
            self._sync(c)
            before = set(self._masters())
            result = self._mem.request_pool(address_space, pool, sub_pool, options, v6)
            self._save_pools(c)
            if self._mem._pool(result[0]).master.id not in before:
                self._save_master(c, result[0])
            return result

    def release_pool(self, pool_id: str) -> None:
        with self._store.tx() as c, self._lock:
            self._sync(c)
            master = self._mem._pool(pool_id).master.id
            self._mem.release_pool(pool_id)
            self._save_pools(c)
            if master not in self._masters():
                c.execute("DELETE FROM kv WHERE owner=? AND key=?",
                          (self._owner, _mkey(master)))
                self._mgen.pop(master, None)

    def request_address(self, pool_id: str, preferred=None,
                        options: Mapping[str, str] | None = None):
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            addr = self._mem.request_address(pool_id, preferred, options)
            self._save_master(c, pool_id)
            return addr

    def release_address(self, pool_id: str, address) -> bool:
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            freed = self._mem.release_address(pool_id, address)
            if freed:
                self._save_master(c, pool_id)
            return freed

    def request_addresses(self, pool_id: str, n: int):
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            out = self._mem.request_addresses(pool_id, n)
            self._save_master(c, pool_id)
            return out

    def release_addresses(self, pool_id: str, addresses) -> int:
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            n = self._mem.release_addresses(pool_id, addresses)
            if n:
                self._save_master(c, pool_id)
            return n

    # -- queries ------------------------------------------------------------------------
    def pools(self) -> list[str]:
        with self._store.tx() as c, self._lock:
            self._sync(c)
            return self._mem.pools()

    def is_allocated(self, pool_id: str, address) -> bool:
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            return self._mem.is_allocated(pool_id, address)

    def available(self, pool_id: str) -> int:
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            return self._mem.available(pool_id)

    def allocated(self, pool_id: str) -> list:
        """Every allocated address of the pool's range (for audits)."""
        with self._store.tx() as c, self._lock:
            self._sync(c, pool_id)
            p = self._mem._pool(pool_id)
            m = p.master
            from pynetlib.ipam.allocator import _interface

            return [_interface(m, off).ip for off in range(p.lo, p.hi + 1)
                    if m.bitmap.test(off)] if p.hi - p.lo < 1 << 20 else []
