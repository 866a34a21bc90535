"""A damaged or tampered store is detected and reported clearly, never trusted
silently: SQLite-level damage makes opening fail with ``CorruptStoreError``; records
that disagree with each other (a missing driver row, an IPAM bitmap that does not match
the endpoints) are named by ``audit()``, and opening still works so they can be fixed."""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys

import pytest

import pynetlib
from pynetlib import netlabel
from pynetlib.store import CorruptStoreError, StoreError

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _proc_kernel import owned_links  # noqa: E402

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

POOL = "LocalDefault/10.220.0.0/24"


def open_ctrl(state, **kw):
    return pynetlib.Controller(state, host_routes=lambda: [], **kw)


@pytest.fixture
def state(tmp_path):
    st = str(tmp_path / "s")
    with open_ctrl(st) as c:
        net = c.new_network("bridge", "n", {netlabel.GENERIC_DATA:
                                            {"AddressIPv4": "10.220.0.1/24"}})
        for i in range(20):
            net.create_endpoint(f"e{i}")
        sid, nid = c.store_id, net.id
    yield st, sid, nid
    # whatever the test did to the file: remove the kernel objects with a sound copy
    for link in owned_links(sid)["network"].values():
        os.system(f"ip link del {link['ifname']}")
    os.system("nft delete table inet pynetlib 2>/dev/null; nft delete table bridge "
              "pynetlib 2>/dev/null")


def db(st):
    return os.path.join(st, "pynetlib.db")


def writer(st):
    """A connection that keeps the row checksums, like pynetlib itself: what it writes is
    a logical inconsistency (a bug's, say) that only the audit can find."""
    from pynetlib.store import _row_sum

    con = sqlite3.connect(db(st))
    con.create_function("pnl_sum", -1, _row_sum, deterministic=True)
    return con


def rows(st):
    con = sqlite3.connect(db(st))
    try:
        return [r for t in ("meta", "networks", "endpoints", "sandboxes", "kv")
                for r in con.execute(f"SELECT * FROM {t} ORDER BY 1, 2")]
    finally:
        con.close()


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5a]))


def test_not_a_database_is_refused(state):
    st, _, _ = state
    flip(db(st), 0)                                  # the header
    with pytest.raises(CorruptStoreError, match="unreadable"):
        open_ctrl(st)


def test_a_flipped_byte_in_the_middle_is_never_used_silently(state):
    st, _, _ = state
    before = rows(st)
    size = os.path.getsize(db(st))
    outcomes = set()
    for off in (size // 2, size // 2 - 97, size // 2 + 131, size // 3, 2 * size // 3):
        shutil.copy(db(st), db(st) + ".orig")
        flip(db(st), off)
        try:
            c = open_ctrl(st, reconcile=False)
        except StoreError as e:
            assert "store" in str(e)
            outcomes.add("refused")
        else:
            try:
                problems = c.audit()
            except StoreError:
                problems = ["refused"]
            finally:
                c.close()
            try:
                same = rows(st) == before
            except sqlite3.DatabaseError:
                same = False
            # opened: either the byte was unused, or the damage is reported
            assert same or problems, f"offset {off}: damage neither refused nor reported"
            outcomes.add("unused" if same else "reported")
        shutil.move(db(st) + ".orig", db(st))
    assert outcomes


def test_damaged_page_structure_is_refused(state):
    """A flip in a b-tree page header (page 2 onwards start with a page type byte)."""
    st, _, _ = state
    with open(db(st), "rb") as f:
        page = int.from_bytes(f.read(18)[16:18], "big") or 65536
    flip(db(st), page * 2)                          # the type byte of page 3
    with pytest.raises(StoreError):
        with open_ctrl(st, reconcile=False) as c:
            c.audit()


def test_missing_bridge_record_is_reported_not_fatal(state):
    st, _, nid = state
    con = writer(st)
    con.execute("DELETE FROM kv WHERE owner='bridge' AND key=?", ("net/" + nid,))
    con.commit()
    con.close()
    with open_ctrl(st) as c:                        # opening still works
        problems = c.audit()
    assert any("no bridge driver record" in p and nid in p for p in problems), problems


def test_missing_endpoint_row_is_reported(state):
    st, _, _ = state
    con = writer(st)
    con.execute("DELETE FROM endpoints WHERE name='e3'")
    con.commit()
    con.close()
    with open_ctrl(st) as c:
        problems = c.audit()
    assert any("bridge driver record without an endpoint" in p for p in problems), problems


def test_tampered_ipam_bitmap_is_detected(state):
    st, _, _ = state
    with open_ctrl(st) as c:
        assert c.audit() == []
        ep = c.network_by_name("n").endpoint_by_name("e5")
        ip = ep.info().interfaces[0].address.ip
        # what a buggy or stale writer would do: the bitmap frees a live address
        assert c.ipam.release_address(POOL, ip)
        problems = c.audit()
        assert any(str(ip) in p and "free in IPAM" in p for p in problems), problems
        c.ipam.request_address(POOL, ip)
        assert c.audit() == []
        c.ipam.request_address(POOL, "10.220.0.200")     # and one nobody holds
        problems = c.audit()
        assert any("10.220.0.200" in p and "leaked" in p for p in problems), problems
        c.ipam.release_address(POOL, "10.220.0.200")
    # a bitmap row that does not decode at all
    con = writer(st)
    con.execute("UPDATE kv SET value=? WHERE owner='ipam' AND key=?",
                ('{"gen":99,"bitmap":"bm90IGEgYml0bWFw"}', "m/" + POOL))
    con.commit()
    con.close()
    with pytest.raises(CorruptStoreError, match="bitmap"):
        with open_ctrl(st) as c:
            c.ipam.available(POOL)


@pytest.mark.parametrize("change,needs_sum", [
    ("UPDATE endpoints SET interfaces=replace(interfaces, '.2/', '.9/')", True),  # a byte
    ("DELETE FROM endpoints WHERE name='e3'", False),                             # a row
    ("UPDATE kv SET value=replace(value, '02:42', '06:42') WHERE owner='bridge'", True),
    ("INSERT INTO kv VALUES ('bridge', 'ep/x/y', '{}')", True),                   # a row more
])
def test_writes_behind_pynetlibs_back_are_refused_on_open(state, change, needs_sum):
    """Another writer (a tool, a bad restore) cannot change a row without pynetlib's
    checksums: it cannot even write without dropping the triggers, and then every
    changed, missing or added row is found when the store opens."""
    from pynetlib.store import CorruptStoreError

    st, _, _ = state
    con = sqlite3.connect(db(st))
    if needs_sum:
        with pytest.raises(sqlite3.OperationalError):
            con.execute(change)                       # pnl_sum: not this writer's
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='trigger'")\
            .fetchall():
        con.execute(f"DROP TRIGGER {name}")
    con.execute(change)
    con.commit()
    con.close()
    with pytest.raises(CorruptStoreError):
        open_ctrl(st).close()
