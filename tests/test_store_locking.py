"""Write transactions of one process queue on the store's lock (handed over at once),
bounded by the busy timeout; other processes still meet SQLite's own locking."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from pynetlib import store as store_mod
from pynetlib.errors import TimeoutError as PnlTimeoutError
from pynetlib.store import open_store


@pytest.mark.parametrize("memory", [False, True], ids=["disk", "memory"])
def test_threads_writing_at_once_all_commit(tmp_path, memory):
    st = open_store(str(tmp_path), memory=memory)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                with st.tx() as c:
                    row = c.execute("SELECT value FROM kv WHERE owner='t' AND key='n'"
                                    ).fetchone()
                    c.execute("INSERT OR REPLACE INTO kv VALUES ('t', 'n', ?)",
                              (str(int(row[0]) + 1 if row else 1),))
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert st.kv_get("t", "n") == 6 * 200            # no lost update
    st.close()


def test_a_writer_waits_at_most_the_busy_timeout(tmp_path, monkeypatch):
    monkeypatch.setattr(store_mod, "BUSY_TIMEOUT_MS", 200)
    st = open_store(str(tmp_path))
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with st.tx() as c:
            c.execute("INSERT INTO kv VALUES ('t', 'a', '1')")
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(10)
    # queued on this process's lock, not in SQLite's busy handler
    with pytest.raises(PnlTimeoutError, match="by this process"):
        with st.tx() as c:
            c.execute("INSERT INTO kv VALUES ('t', 'b', '1')")
    release.set()
    t.join()
    assert st.kv_get("t", "a") == 1 and st.kv_get("t", "b") is None
    st.kv_put("t", "b", 2)                           # the lock is free again
    assert st.kv_get("t", "b") == 2
    st.close()


def test_commit_callbacks_and_failed_transactions_release_the_lock(tmp_path):
    st = open_store(str(tmp_path))
    seen = []
    with st.tx() as c:
        c.execute("INSERT INTO kv VALUES ('t', 'a', '1')")
        st.on_commit(lambda: (st.kv_put("t", "from-callback", 3), seen.append(1)))
    assert seen == [1] and st.kv_get("t", "from-callback") == 3
    with pytest.raises(ZeroDivisionError):
        with st.tx() as c:
            c.execute("INSERT INTO kv VALUES ('t', 'x', '1')")
            1 / 0
    with st.tx(durable=True) as c:                   # still free, and durable works
        c.execute("INSERT INTO kv VALUES ('t', 'y', '1')")
    assert st.kv_get("t", "x") is None and st.kv_get("t", "y") == 1
    assert st.read().execute("PRAGMA synchronous").fetchone()[0] == 1      # NORMAL again
    st.close()


def test_another_process_still_waits_for_sqlite_locking(tmp_path):
    st = open_store(str(tmp_path))
    code = ("import sys; from pynetlib.store import open_store; s = open_store(sys.argv[1]); "
            "s.kv_put('t', 'child', 5); s.close()")
    with st.tx() as c:
        c.execute("INSERT INTO kv VALUES ('t', 'parent', '4')")
        child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.5)                          # blocked on SQLite's write lock
    assert child.wait(30) == 0
    assert st.kv_get("t", "child") == 5 and st.kv_get("t", "parent") == 4
    st.close()
