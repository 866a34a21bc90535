"""The embedded store: SQLite under the controller's state directory.

One file, ``<state_dir>/pynetlib.db``, in WAL mode, shared by every process that opens a
controller on the same state directory. Every change is an explicit transaction taken
with ``BEGIN IMMEDIATE`` (the write lock first, so two processes serialise instead of
failing on upgrade), bounded by a busy timeout.

Durability: ``synchronous=NORMAL`` in WAL mode makes a committed transaction survive the
death of the process (the WAL is in the OS page cache), which covers SIGKILL at any
instant. Transactions that define networks ask for ``durable=True``: they commit with
``synchronous=FULL``, so a network definition also survives power loss. Endpoint and
sandbox records are not fsynced: after a power loss the kernel objects they describe
are gone too (containers and namespaces do not survive a reboot), and reconcile
notices the new boot id and starts from the networks.

Checkpoints (copying the WAL back into the database, with its fsyncs) run on a
background thread, every ``CHECKPOINT_EVERY`` commits of this process, instead of
inside whichever commit crosses SQLite's threshold: an operation's commit never waits
for a disk flush.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import weakref
import zlib
from typing import Any, Iterator

from pynetlib import forksafe
from pynetlib.errors import BadRequestError, InternalError, TimeoutError

SCHEMA_VERSION = 3
DB_NAME = "pynetlib.db"
BUSY_TIMEOUT_MS = 30_000
CHECKPOINT_EVERY = 200            # commits of this process between two checkpoints

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    options TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'ready', 'deleting'))
);
CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    network_id TEXT NOT NULL REFERENCES networks(id),
    name TEXT NOT NULL,
    options TEXT NOT NULL,
    interfaces TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('creating', 'created', 'attaching', 'attached',
                                         'detaching', 'deleting')),
    container_id TEXT,
    join_info TEXT,
    UNIQUE (network_id, name)
);
CREATE INDEX endpoints_container ON endpoints(container_id);
CREATE TABLE sandboxes (
    container_id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('owned', 'external', 'default')),
    hosts_path TEXT,
    resolv_conf_path TEXT,
    resolv_hash TEXT
);
CREATE TABLE kv (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner, key)
);
"""

# Row checksums (schema 2): every row of every table carries a CRC-32 in row_sums,
# kept by triggers that call pnl_sum (a function each connection registers, so a writer
# that is not pynetlib cannot change a row without the store noticing). Checked on open:
# a changed byte in any value, a missing row or an extra one is reported, never trusted.
_SUMMED = {
    "networks": ("id", "id, name, type, options, state"),
    "endpoints": ("id", "id, network_id, name, options, interfaces, state, container_id, "
                        "join_info"),
    "sandboxes": ("container_id", "container_id, key, kind, hosts_path, resolv_conf_path, "
                                  "resolv_hash"),
    "kv": ("owner || '/' || key", "owner, key, value"),
}
#: rows a table's checksum leaves out: IPAM bitmaps carry their own CRC-32C and are
#: rewritten on every allocation.
_UNSUMMED = {"kv": "owner = 'ipam'"}


def _sum_triggers(tbl: str) -> list[str]:
    """The three triggers that keep ``tbl``'s rows' checksums in row_sums."""
    key, cols = _SUMMED[tbl]
    new_key = key.replace("owner", "NEW.owner").replace("key", "NEW.key") \
        if tbl == "kv" else f"NEW.{key}"
    old_key = key.replace("owner", "OLD.owner").replace("key", "OLD.key") \
        if tbl == "kv" else f"OLD.{key}"
    new_cols = ", ".join(f"NEW.{c.strip()}" for c in cols.split(","))
    put = f"INSERT OR REPLACE INTO row_sums VALUES ('{tbl}', {new_key}, pnl_sum({new_cols}))"
    drop = f"DELETE FROM row_sums WHERE tbl='{tbl}' AND key={old_key}"
    skip = _UNSUMMED.get(tbl)
    when_new = f" WHEN NOT ({skip.replace('owner', 'NEW.owner')})" if skip else ""
    when_old = f" WHEN NOT ({skip.replace('owner', 'OLD.owner')})" if skip else ""
    return [f"CREATE TRIGGER {tbl}_sum_i AFTER INSERT ON {tbl}{when_new} BEGIN {put}; END",
            f"CREATE TRIGGER {tbl}_sum_u AFTER UPDATE ON {tbl}{when_new} BEGIN {drop}; "
            f"{put}; END",
            f"CREATE TRIGGER {tbl}_sum_d AFTER DELETE ON {tbl}{when_old} BEGIN {drop}; END"]


def _v2() -> list[str]:
    out = ["CREATE TABLE row_sums (tbl TEXT NOT NULL, key TEXT NOT NULL, sum INTEGER NOT "
           "NULL, PRIMARY KEY (tbl, key))"]
    for tbl, (key, cols) in _SUMMED.items():
        skip = _UNSUMMED.get(tbl)
        where = f" WHERE NOT ({skip})" if skip else ""
        out += _sum_triggers(tbl)
        out.append(f"INSERT INTO row_sums SELECT '{tbl}', {key}, pnl_sum({cols}) FROM "
                   f"{tbl}{where}")
    return out


# Schema 3: the tables written on every endpoint operation become WITHOUT ROWID tables,
# stored in one b-tree keyed by their primary key instead of a table b-tree plus a
# separate index for the key. A commit then writes about 40 % fewer pages to the WAL
# (measured: 55 -> 34 pages per container lifecycle). Same columns, same constraints.
_V3_TABLES = ("endpoints", "sandboxes", "kv", "row_sums")


def _create_body(tbl: str) -> str:
    """What follows ``CREATE TABLE <tbl>`` in the schema-1 or schema-2 statement."""
    for stmt in MIGRATIONS[1] + MIGRATIONS[2]:
        words = stmt.strip().split(None, 3)
        if words[:3] == ["CREATE", "TABLE", tbl]:
            return words[3]
    raise KeyError(tbl)


def _v3() -> list[str]:
    # The triggers go first (a rename checks every trigger's tables) and come back last.
    out = [f"DROP TRIGGER {tbl}_sum_{op}" for tbl in _SUMMED for op in "iud"]
    for tbl in _V3_TABLES:
        out += [f"CREATE TABLE {tbl}_v3 {_create_body(tbl)} WITHOUT ROWID",
                f"INSERT INTO {tbl}_v3 SELECT * FROM {tbl}",
                f"DROP TABLE {tbl}",
                f"ALTER TABLE {tbl}_v3 RENAME TO {tbl}"]
    out.append("CREATE INDEX endpoints_container ON endpoints(container_id)")
    for tbl in _SUMMED:
        out += _sum_triggers(tbl)
    return out


MIGRATIONS = {1: [x for x in _SCHEMA_V1.split(";") if x.strip()], 2: _v2()}
MIGRATIONS[3] = _v3()


def _row_sum(*values) -> int:
    crc = 0
    for v in values:            # type-tagged, so NULL, 1 and '1' all differ
        crc = zlib.crc32(b"\x00" if v is None else
                         (b"\x01" + v.encode("utf-8", "surrogatepass")) if isinstance(v, str)
                         else (b"\x02" + str(v).encode()), crc)
    return crc


class StoreError(InternalError):
    """The store is unusable: corrupt, from a newer pynetlib, or failing."""


class CorruptStoreError(StoreError):
    """The store's content fails its checks; it is never trusted silently."""


def _start_time(pid: int) -> str | None:
    """The start time of a process (clock ticks since boot), None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]      # field 22; comm may hold ')'


_token: tuple[int, str] | None = None


def owner_token() -> str:
    """Who is doing an operation: ``<pid>:<start time>`` of this process. Written with
    an intent so that reconcile in another process leaves an operation that is still in
    flight alone (pid and start time together survive pid reuse)."""
    global _token
    pid = os.getpid()
    if _token is None or _token[0] != pid:          # computed once per process (and fork)
        _token = (pid, f"{pid}:{_start_time(pid)}")
    return _token[1]


def owner_alive(token: str | None) -> bool:
    """Whether the process of an :func:`owner_token` still runs (on this boot)."""
    if not token or ":" not in token:
        return False
    pid, start = token.split(":", 1)
    return pid.isdigit() and _start_time(int(pid)) == start


def _close_quietly(c: sqlite3.Connection) -> None:
    try:
        c.close()
    except sqlite3.Error:
        pass


#: one encoder for every record (json.dumps with options builds a new one per call)
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise CorruptStoreError(f"store record {what} is not valid JSON: {e}") from None


#: connections a child made by fork() inherited: never used, never closed there
_inherited: list[sqlite3.Connection] = []


class Store:
    """A SQLite database file; a connection per thread, transactions per operation."""

    def __init__(self, path: str, *, memory: bool = False) -> None:
        """``memory``: a private in-memory database (for benchmarks and tests), shared by
        this process's threads and gone with it."""
        self.path = path
        self.memory = memory
        # SQLite's memdb VFS: one database shared by this process's connections by name,
        # with the usual file locking (a busy writer waits, bounded by the busy timeout).
        # Shared-cache memory databases fail a second writer at once instead.
        self._uri = f"file:/pnl-{os.getpid()}-{id(self)}?vfs=memdb" if memory else None
        self._local = threading.local()
        #: every open connection, with (a weak reference to) the thread it belongs to
        self._conns: list[tuple[sqlite3.Connection, weakref.ref]] = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()     # this process's write transactions
        self._closed = False
        self._commits = 0
        self._ckpt_due = threading.Event()
        self._ckpt_thread: threading.Thread | None = None
        self._forked_from: int | None = None     # in a child made by fork(): the parent
        self._migrate()
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): unusable, and its connections are kept, never
        used nor closed (see pynetlib/forksafe.py)."""
        _inherited.extend(c for c, _ in self._conns)
        self._conns = []
        self._conns_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._local = threading.local()
        self._ckpt_thread = None
        self._forked_from = os.getppid()
        self._closed = True

    # -- connections ----------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            if self._forked_from is not None:
                raise BadRequestError(forksafe.forked_message("store", self._forked_from))
            if self._closed:
                raise StoreError("the store is closed")
            if self._uri:
                c = sqlite3.connect(self._uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                    isolation_level=None, check_same_thread=False)
            else:
                c = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000,
                                    isolation_level=None, check_same_thread=False)
            try:
                c.create_function("pnl_sum", -1, _row_sum, deterministic=True)
                c.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                if not self._uri:
                    mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if mode.lower() != "wal":
                        raise StoreError(f"the store at {self.path} cannot use WAL mode "
                                         f"({mode})")
                c.execute("PRAGMA synchronous = NORMAL")
                c.execute("PRAGMA foreign_keys = ON")
                if not self._uri:
                    c.execute("PRAGMA wal_autocheckpoint = 0")   # see _checkpoint_loop
            except sqlite3.DatabaseError as e:
                c.close()
                raise CorruptStoreError(f"store {self.path} is unreadable: {e}") from None
            self._local.conn = c
            self._local.depth = 0
            with self._conns_lock:
                self._conns.append((c, weakref.ref(threading.current_thread())))
                ended = self._ended_threads_conns()
            for old in ended:
                _close_quietly(old)
        return c

    def _ended_threads_conns(self) -> list[sqlite3.Connection]:
        """Take out the connections of threads that have ended (with _conns_lock held):
        without this, a caller that runs each operation on a new thread would leave two
        file descriptors open per thread until close(). A thread that has ended can no
        longer use its connection, so closing it from here is safe; done after the new
        connection is open, so an in-memory database always keeps one."""
        keep, ended = [], []
        for c, owner in self._conns:
            t = owner()
            (keep if t is not None and t.is_alive() else ended).append((c, owner))
        self._conns = keep
        return [c for c, _ in ended]

    # -- checkpoints ----------------------------------------------------------------
    def _committed(self) -> None:
        if self._uri:
            return
        with self._conns_lock:
            self._commits += 1
            if self._commits % CHECKPOINT_EVERY:
                return
            if self._ckpt_thread is None and not self._closed:
                self._ckpt_thread = threading.Thread(target=self._checkpoint_loop,
                                                     name="pynetlib-checkpoint", daemon=True)
                self._ckpt_thread.start()
        self._ckpt_due.set()

    def _checkpoint_loop(self) -> None:
        while True:
            self._ckpt_due.wait()
            self._ckpt_due.clear()
            if self._closed:
                return
            try:
                # PASSIVE: copies what no reader still needs, never blocks a writer.
                self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (sqlite3.Error, StoreError):
                pass                            # the next one catches up

    def close(self) -> None:
        if self._forked_from is not None:
            return                  # the parent's: nothing of it is touched here
        if not self._closed and not self._uri and self._commits:
            try:            # what this process wrote, back into the database file
                self._conn().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except (sqlite3.Error, StoreError):
                pass
        self._closed = True
        self._ckpt_due.set()
        t = self._ckpt_thread
        if t is not None and t is not threading.current_thread():
            t.join(30)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for c, _ in conns:
            _close_quietly(c)

    # -- transactions ---------------------------------------------------------------
    @contextlib.contextmanager
    def tx(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE``); nested calls join the outer one."""
        c = self._conn()
        if self._local.depth:
            self._local.depth += 1
            try:
                yield c
            finally:
                self._local.depth -= 1
            return
        # This process's writers queue on a lock, handed over the moment it is free;
        # SQLite's own busy handler, left for other processes, sleeps 1, 2, 5, 10 ms...
        # between tries, which made a brief overlap with the reaper's commit cost a
        # caller milliseconds.
        if not self._write_lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
            raise TimeoutError(f"the store {self.path} stayed locked for {BUSY_TIMEOUT_MS} "
                               "ms (by this process)")
        locked = True
        if durable:
            c.execute("PRAGMA synchronous = FULL")
        self._local.undo = []
        self._local.done = []
        try:
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" in str(e) or "busy" in str(e):
                    raise TimeoutError(f"the store {self.path} stayed locked for "
                                       f"{BUSY_TIMEOUT_MS} ms") from None
                raise StoreError(f"store {self.path}: {e}") from None
            self._local.depth = 1
            try:
                yield c
            except BaseException:
                self._local.depth = 0
                c.execute("ROLLBACK")
                self._run_undo()
                raise
            self._local.depth = 0
            try:
                c.execute("COMMIT")
            except sqlite3.Error as e:
                c.execute("ROLLBACK")
                self._run_undo()
                raise StoreError(f"store {self.path}: commit failed: {e}") from None
            self._write_lock.release()      # before the callbacks: they may write too
            locked = False
            self._committed()
            done, self._local.done = self._local.done, []
            for fn in done:
                fn()
        finally:
            self._local.undo = []
            self._local.done = []
            if durable:
                c.execute("PRAGMA synchronous = NORMAL")
            if locked:
                self._write_lock.release()

    def on_rollback(self, fn) -> None:
        """Run ``fn`` if the current transaction rolls back (caches drop what it wrote)."""
        if not self.in_tx():
            raise StoreError("on_rollback outside a transaction")
        self._local.undo.append(fn)

    def on_commit(self, fn) -> None:
        """Run ``fn`` once the current transaction has committed (dropped on rollback).
        ``fn`` must not raise: the transaction is committed already."""
        if not self.in_tx():
            raise StoreError("on_commit outside a transaction")
        self._local.done.append(fn)

    def _run_undo(self) -> None:
        for fn in reversed(getattr(self._local, "undo", [])):
            try:
                fn()
            except Exception:   # a cache that cannot drop itself must not hide the error
                pass

    def read(self) -> sqlite3.Connection:
        """A connection for reads outside a transaction (each statement sees a snapshot)."""
        return self._conn()

    def in_tx(self) -> bool:
        return bool(getattr(self._local, "depth", 0))

    # -- schema ---------------------------------------------------------------------
    def _migrate(self) -> None:
        try:
            self._migrate_and_check()
        except sqlite3.DatabaseError as e:      # whatever SQLite finds wrong in the file
            self.close()
            raise CorruptStoreError(f"store {self.path} is unreadable: {e}") from None
        except BaseException:
            self.close()
            raise

    def _migrate_and_check(self) -> None:
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            has_meta = c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                 "name='meta'").fetchone()
            version = 0
            if has_meta:
                row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    raise CorruptStoreError(f"store {self.path} has no schema version")
                version = int(row[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"store {self.path} has schema {version}, newer than this "
                                 f"pynetlib ({SCHEMA_VERSION})")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                for stmt in MIGRATIONS[v]:
                    c.execute(stmt)
                c.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(v),))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        self._check_row_sums(c)
        # integrity_check, not quick_check: an index that disagrees with its table would
        # make a lookup miss a row (an IPAM bitmap "never written", say) silently.
        ok = c.execute("PRAGMA integrity_check(1)").fetchone()[0]
        if ok != "ok":
            raise CorruptStoreError(f"store {self.path} fails SQLite's integrity check: {ok}")

    def _check_row_sums(self, c) -> None:
        """Every row against its checksum; any difference is corruption. One read
        transaction: the rows and their sums come from one snapshot, whatever other
        processes commit meanwhile."""
        c.execute("BEGIN")
        try:
            self._compare_row_sums(c)
        finally:
            c.execute("COMMIT")

    def _compare_row_sums(self, c) -> None:
        bad: list[str] = []
        triggers = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE "
                                            "type='trigger'")}
        for tbl in _SUMMED:
            for t in (f"{tbl}_sum_i", f"{tbl}_sum_u", f"{tbl}_sum_d"):
                if t not in triggers:
                    bad.append(f"the checksum trigger {t} is missing")
        for tbl, (key, cols) in _SUMMED.items():
            sums = dict(c.execute("SELECT key, sum FROM row_sums WHERE tbl=?", (tbl,)))
            skip = _UNSUMMED.get(tbl)
            where = f" WHERE NOT ({skip})" if skip else ""
            for k, got in c.execute(f"SELECT {key}, pnl_sum({cols}) FROM {tbl}{where}"):
                want = sums.pop(k, None)
                if want is None:
                    bad.append(f"{tbl} row {k!r} has no checksum (added behind pynetlib)")
                elif want != got:
                    bad.append(f"{tbl} row {k!r} does not match its checksum")
            bad += [f"{tbl} row {k!r} is missing" for k in sums]
        if bad:
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise CorruptStoreError(f"store {self.path} is damaged: " + "; ".join(bad[:5]) +
                                    more)

    # -- meta and key/value ---------------------------------------------------------
    def meta_get(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def meta_set(self, key: str, value: str) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def kv_get(self, owner: str, key: str) -> Any:
        row = self._conn().execute("SELECT value FROM kv WHERE owner=? AND key=?",
                                   (owner, key)).fetchone()
        return loads(row[0], f"{owner}/{key}") if row else None

    def kv_put(self, owner: str, key: str, value: Any) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (owner, key, dumps(value)))

    def kv_delete(self, owner: str, key: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM kv WHERE owner=? AND key=?", (owner, key))

    def kv_all(self, owner: str) -> dict[str, Any]:
        rows = self._conn().execute("SELECT key, value FROM kv WHERE owner=?", (owner,))
        return {k: loads(v, f"{owner}/{k}") for k, v in rows}


def open_store(state_dir: str, *, memory: bool = False) -> Store:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    return Store(os.path.join(state_dir, DB_NAME), memory=memory)
