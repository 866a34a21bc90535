"""Addresses of deleted endpoints, held until no device can carry them.

A leave takes the endpoint's host veth out of service (its index in the firewall's
set of retired ports, or its bridge port disabled) and the reaper deletes it with
others a little later; the container's end, with the endpoint's addresses on it, goes
with it. An endpoint deleted before that batch
must not give its addresses back to IPAM yet: another endpoint could be handed one
while the old device still carries it. So delete_endpoint puts them in quarantine
instead (a record ``q/<network>/<endpoint>`` in the same transaction as the endpoint's
deletion), and the reaper releases them right after the batch that deleted the device.

After a crash, ``settle`` (called by reconcile) finishes the job: it deletes any
device a record still names and releases the addresses. A request that finds the
pool exhausted, or its static address held, settles the network's quarantine and
tries once more. The driver's teardown flush leaves no quarantine of this process.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Callable

from pynetlib.store import dumps, loads, owner_token

log = logging.getLogger(__name__)
_KEYS_PER_STATEMENT = 500           # well under SQLite's limit on bound parameters


def quarantine_key(nid: str, eid: str) -> str:
    return f"q/{nid}/{eid}"


class AddressQuarantine:
    def __init__(self, store, ipam, reaper: Callable, host: Callable) -> None:
        """``reaper`` and ``host``: the driver's reaper and host socket, on demand."""
        self._store = store
        self._ipam = ipam
        self._reaper = reaper
        self._host = host
        self._lock = threading.Lock()
        self._tickets: dict[str, int] = {}          # endpoint id -> reaper ticket
        self._waiting: dict[int, list[str]] = {}    # ticket -> quarantine keys
        self._memory: dict[str, dict] = {}          # the records, without a store

    def retired(self, eid: str, ticket: int | None) -> None:
        """The endpoint's device went to the reaper (``ticket``: its batch)."""
        if ticket is not None:
            with self._lock:
                self._tickets[eid] = ticket

    def hold(self, nid: str, eid: str, device: str, addrs: list[tuple[str, object]]) -> bool:
        """Called by delete_endpoint inside its transaction. True: the addresses
        ``addrs`` ((pool, ip) pairs) are held until ``device`` is gone, and the caller
        must not release them; False: no device can carry them, release them now."""
        if not addrs:
            return False
        with self._lock:
            ticket = self._tickets.pop(eid, None)
        reaper = self._reaper()
        if ticket is None:
            # Not retired by this process (another process's leave, or a device left
            # by a crash): retire it here, if it still exists.
            ticket = reaper.submit(self._host(), device)
        if ticket is None or reaper.done(ticket):
            return False
        key = quarantine_key(nid, eid)
        rec = {"device": device, "addrs": [[p, str(ip)] for p, ip in addrs],
               "owner": owner_token()}
        if self._store is None:
            self._memory[key] = rec
            self._wait(ticket, key)
            return True
        c = self._store.read()
        c.execute("INSERT OR REPLACE INTO kv VALUES ('bridge', ?, ?)", (key, dumps(rec)))
        self._store.on_rollback(lambda: self.retired(eid, ticket))
        self._store.on_commit(lambda: self._wait(ticket, key))
        return True

    def _wait(self, ticket: int, key: str) -> None:
        with self._lock:
            keys = self._waiting.setdefault(ticket, [])
            keys.append(key)
            first = len(keys) == 1
        if first:
            self._reaper().after(ticket, lambda: self._release(ticket))

    def _release(self, ticket: int) -> None:
        """After the batch of ``ticket``: its devices are gone, their addresses free."""
        with self._lock:
            keys = self._waiting.pop(ticket, [])
        if keys:
            self._release_keys(keys)

    def _release_keys(self, keys: list[str]) -> None:
        """Release the addresses of the records ``keys`` and drop the records, in one
        transaction with one IPAM update per pool (a reaper batch releases hundreds:
        one update each held the store's write lock, which every caller waits for, for
        milliseconds)."""
        if self._store is None:
            self._give_back([rec for rec in (self._memory.pop(k, None) for k in keys)
                             if rec is not None])
            return
        with self._store.tx() as c:
            recs = []
            for i in range(0, len(keys), _KEYS_PER_STATEMENT):
                part = keys[i:i + _KEYS_PER_STATEMENT]
                marks = ", ".join("?" * len(part))
                rows = c.execute(f"SELECT value FROM kv WHERE owner='bridge' AND key IN "
                                 f"({marks})", part).fetchall()
                # A key without a row was released by someone else meanwhile.
                recs += [loads(v, "quarantined addresses") for (v,) in rows]
                if rows:
                    c.execute(f"DELETE FROM kv WHERE owner='bridge' AND key IN ({marks})",
                              part)
            self._give_back(recs)

    def _give_back(self, recs: list[dict]) -> None:
        """The records' addresses back to IPAM: one release per pool."""
        by_pool: dict[str, list[str]] = {}
        for rec in recs:
            for pool, ip in rec.get("addrs", []):
                by_pool.setdefault(pool, []).append(ip)
        for pool, ips in by_pool.items():
            self._ipam.release_addresses(pool, ips)

    # -- whole networks, crashes, audit ---------------------------------------------
    def records(self, nid: str | None = None) -> dict[str, dict]:
        """The quarantine records (of network ``nid``), by key."""
        prefix = "q/" if nid is None else f"q/{nid}/"
        if self._store is None:
            return {k: v for k, v in self._memory.items() if k.startswith(prefix)}
        rows = self._store.read().execute(
            "SELECT key, value FROM kv WHERE owner='bridge' AND key >= ? AND key < ?",
            (prefix, prefix[:-1] + chr(ord("/") + 1)))
        return {k: loads(v, "quarantined addresses") for k, v in rows}

    def holds(self, nid: str, address) -> bool:
        """Whether a quarantine of network ``nid`` holds ``address``."""
        ip = str(address)
        return any(ip == a for rec in self.records(nid).values()
                   for _, a in rec.get("addrs", []))

    def settle(self, nid: str | None = None) -> list[str]:
        """Release every quarantine (of network ``nid``) now: the devices the records
        name are deleted first, whoever retired them (the reap group at once: one RCU
        wait). Never waits for the reaper, so it may run inside a transaction: for a
        request that finds the pool (or its static address) held, for deleting a
        network, for reconcile. Returns what it did."""
        recs = self.records(nid)
        if not recs:
            return []
        host = self._host()
        try:
            host.link_delete_group(self._reaper().group)
        except OSError as e:
            if e.errno not in (errno.ENODEV, errno.ENOENT):
                raise
        for rec in recs.values():
            try:
                host.link_delete(rec["device"])
            except OSError as e:
                if e.errno != errno.ENODEV:
                    raise
        self._release_keys(list(recs))
        return [f"released the addresses held for endpoint {k.rsplit('/', 1)[1][:12]}"
                for k in recs]
