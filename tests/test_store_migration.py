"""Schema migrations: a store written by an older pynetlib opens with its rows, their
checksums and their constraints intact; schema 3 keeps the hot tables WITHOUT ROWID."""

from __future__ import annotations

import os
import sqlite3

import pytest

from pynetlib import store as store_mod
from pynetlib.store import CorruptStoreError, open_store

HOT = ("endpoints", "sandboxes", "kv", "row_sums")


def _old_store(path: str, version: int) -> None:
    """A database as pynetlib at schema ``version`` left it, with a few rows."""
    c = sqlite3.connect(path, isolation_level=None)
    c.create_function("pnl_sum", -1, store_mod._row_sum, deterministic=True)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("BEGIN")
    for v in range(1, version + 1):
        for stmt in store_mod.MIGRATIONS[v]:
            c.execute(stmt)
    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
    c.execute("INSERT INTO networks VALUES ('n1', 'net', 'bridge', '{}', 'ready')")
    c.execute("INSERT INTO endpoints (id, network_id, name, options, interfaces, state, "
              "container_id, join_info) VALUES ('e1', 'n1', 'ep1', '{}', '[]', 'attached', "
              "'c1', '{\"ifnames\":[\"eth0\"]}')")
    c.execute("INSERT INTO endpoints (id, network_id, name, options, interfaces, state) "
              "VALUES ('e2', 'n1', 'ep2', '{}', '[]', 'created')")
    c.execute("INSERT INTO sandboxes VALUES ('c1', '/run/netns/x', 'owned', NULL, NULL, NULL)")
    c.execute("INSERT INTO kv VALUES ('bridge', 'ep/n1/e1', '{\"a\":1}')")
    c.execute("INSERT INTO kv VALUES ('ipam', 'pools', '{}')")
    c.execute("COMMIT")
    c.close()


def _rows(c):
    return {t: sorted(c.execute(f"SELECT * FROM {t}").fetchall())
            for t in ("networks", "endpoints", "sandboxes", "kv", "row_sums")}


def test_schema2_store_migrates_to_without_rowid_tables(tmp_path):
    db = str(tmp_path / store_mod.DB_NAME)
    _old_store(db, 2)
    raw = sqlite3.connect(db)
    before = _rows(raw)
    raw.close()
    assert len(before["row_sums"]) == 5        # ipam rows are not summed

    st = open_store(str(tmp_path))
    c = st.read()
    assert st.meta_get("schema_version") == "3"
    assert _rows(c) == before                   # same rows, same checksums
    for t in HOT:
        sql = c.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name=?",
                        (t,)).fetchone()[0]
        assert sql.rstrip().upper().endswith("WITHOUT ROWID"), t
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master")}
    assert "endpoints_container" in names
    assert not any(n.endswith("_v3") for n in names)
    assert {f"{t}_sum_{op}" for t in ("networks", "endpoints", "sandboxes", "kv")
            for op in "iud"} <= names
    # the constraints came along
    with pytest.raises(sqlite3.IntegrityError):
        with st.tx() as w:
            w.execute("INSERT INTO endpoints (id, network_id, name, options, interfaces, "
                      "state) VALUES ('e3', 'n1', 'ep1', '{}', '[]', 'created')")
    with pytest.raises(sqlite3.IntegrityError):
        with st.tx() as w:
            w.execute("INSERT INTO endpoints (id, network_id, name, options, interfaces, "
                      "state) VALUES ('e3', 'nope', 'ep3', '{}', '[]', 'created')")
    with pytest.raises(sqlite3.IntegrityError):
        with st.tx() as w:
            w.execute("UPDATE endpoints SET state='lost' WHERE id='e2'")
    # the triggers work on the new tables
    with st.tx() as w:
        w.execute("UPDATE endpoints SET state='created', container_id=NULL, join_info=NULL "
                  "WHERE id='e1'")
        w.execute("DELETE FROM sandboxes WHERE container_id='c1'")
    st.kv_put("bridge", "ep/n1/e2", {"b": 2})
    st.close()
    st = open_store(str(tmp_path))               # the sums check passes on open
    assert st.kv_get("bridge", "ep/n1/e2") == {"b": 2}
    st.close()


def test_migrated_store_still_refuses_a_write_behind_its_back(tmp_path):
    db = str(tmp_path / store_mod.DB_NAME)
    _old_store(db, 2)
    open_store(str(tmp_path)).close()
    raw = sqlite3.connect(db)
    raw.execute("DROP TRIGGER endpoints_sum_u")      # as a writer without pnl_sum would need
    raw.execute("UPDATE endpoints SET name='evil' WHERE id='e2'")
    raw.commit()
    raw.close()
    with pytest.raises(CorruptStoreError, match="endpoints"):
        open_store(str(tmp_path))


def test_schema1_store_migrates_through_2_and_3(tmp_path):
    db = str(tmp_path / store_mod.DB_NAME)
    _old_store(db, 1)
    st = open_store(str(tmp_path))
    assert st.meta_get("schema_version") == "3"
    c = st.read()
    assert c.execute("SELECT COUNT(*) FROM row_sums").fetchone()[0] == 5
    assert c.execute("SELECT state FROM endpoints WHERE id='e1'").fetchone()[0] == "attached"
    st.close()
    assert os.path.exists(db)
