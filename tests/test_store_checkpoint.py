"""WAL checkpoints run on the store's background thread, not inside a caller's commit."""

from __future__ import annotations

import os
import time

from pynetlib import store as store_mod
from pynetlib.store import open_store


def test_commits_never_checkpoint_and_the_background_thread_does(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "CHECKPOINT_EVERY", 50)
    st = open_store(str(tmp_path))
    db = os.path.join(str(tmp_path), store_mod.DB_NAME)
    c = st._conn()
    assert c.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    size0 = os.path.getsize(db)
    for i in range(49):
        st.kv_put("t", f"k{i}", "x" * 2000)
    time.sleep(0.2)
    assert os.path.getsize(db) == size0           # nothing copied back yet
    assert st._ckpt_thread is None
    st.kv_put("t", "k49", "x" * 2000)              # the 50th commit wakes the thread
    deadline = time.monotonic() + 10
    while os.path.getsize(db) == size0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert os.path.getsize(db) > size0 + 49 * 2000  # the rows are in the database file
    assert st._ckpt_thread is not None and st._ckpt_thread.name == "pynetlib-checkpoint"
    st.close()
    assert not st._ckpt_thread.is_alive()
    st2 = open_store(str(tmp_path))
    assert st2.kv_get("t", "k49") == "x" * 2000
    st2.close()


def test_close_checkpoints_what_this_process_wrote(tmp_path):
    st = open_store(str(tmp_path))
    other = open_store(str(tmp_path))              # keeps the database open meanwhile
    db = os.path.join(str(tmp_path), store_mod.DB_NAME)
    size0 = os.path.getsize(db)
    for i in range(10):
        st.kv_put("t", f"k{i}", "y" * 4000)
    assert os.path.getsize(db) == size0
    st.close()
    assert os.path.getsize(db) > size0 + 10 * 4000
    assert other.kv_get("t", "k9") == "y" * 4000
    other.close()
