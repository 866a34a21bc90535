"""Host ports held in the store, so that processes sharing a state directory never
hand out one host port twice. The rules are :class:`PortAllocator`'s; its state is
written back after every change and reloaded when another process changed it."""

from __future__ import annotations

import threading

from pynetlib.drivers.bridge.portalloc import PortAllocator
from pynetlib.store import CorruptStoreError, Store, dumps, loads

OWNER, KEY = "bridge", "ports"


class PersistentPorts:
    def __init__(self, store: Store, port_range: tuple[int, int] | None = None) -> None:
        self._store = store
        self._range = port_range
        self._lock = threading.RLock()
        self._mem = PortAllocator(port_range)
        self._gen: int | None = None

    def _invalidate(self) -> None:
        with self._lock:
            self._gen = None

    def _sync(self, c) -> None:
        self._store.on_rollback(self._invalidate)
        row = c.execute("SELECT value FROM kv WHERE owner=? AND key=?", (OWNER, KEY)).fetchone()
        rec = loads(row[0], "bridge/ports") if row else {"gen": 0, "held": [], "last": []}
        if rec["gen"] == self._gen:
            return
        mem = PortAllocator(self._range)
        try:
            for proto, ip, port in rec["held"]:
                mem.request(proto, ip, port)
            for proto, key, port in rec["last"]:
                mem._last[(proto, key)] = int(port)
        except Exception as e:
            raise CorruptStoreError(f"stored host ports do not load: {e}") from None
        self._mem, self._gen = mem, rec["gen"]

    def _save(self, c) -> None:
        self._gen = (self._gen or 0) + 1
        rec = {"gen": self._gen, "held": [list(t) for t in self._mem.allocated()],
               "last": [[p, k, port] for (p, k), port in self._mem._last.items()]}
        c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (OWNER, KEY, dumps(rec)))

    def request(self, proto: str, host_ip=None, port: int = 0) -> int:
        with self._store.tx() as c, self._lock:
            self._sync(c)
            got = self._mem.request(proto, str(host_ip) if host_ip else None, port)
            self._save(c)
            return got

    def release(self, proto: str, host_ip, port: int) -> None:
        with self._store.tx() as c, self._lock:
            self._sync(c)
            self._mem.release(proto, str(host_ip) if host_ip else None, port)
            self._save(c)

    def allocated(self) -> list:
        with self._store.tx() as c, self._lock:
            self._sync(c)
            return self._mem.allocated()
