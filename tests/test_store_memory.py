"""The in-memory store (``store="memory"``): private to its process, shared by its
threads, and a busy writer waits for the other instead of failing."""

from __future__ import annotations

import threading

from pynetlib.store import open_store


def test_memory_store_threads_write_concurrently(tmp_path):
    st = open_store(str(tmp_path), memory=True)
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(300):
                with st.tx() as c:
                    c.execute("INSERT OR REPLACE INTO kv VALUES ('t', ?, ?)",
                              (f"{n}/{i % 20}", str(i)))
                    c.execute("SELECT COUNT(*) FROM kv").fetchone()
                st.kv_get("t", f"{n}/0")
        except BaseException as e:      # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(st.kv_all("t")) == 4 * 20
    assert st.kv_get("t", "3/19") == 299
    st.close()


def test_memory_stores_are_separate_and_leave_no_file(tmp_path):
    a = open_store(str(tmp_path / "a"), memory=True)
    b = open_store(str(tmp_path / "b"), memory=True)
    a.kv_put("t", "k", 1)
    assert b.kv_get("t", "k") is None
    assert a.kv_get("t", "k") == 1
    a.close()
    b.close()
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    c = open_store(str(tmp_path / "a"), memory=True)      # a new one starts empty
    assert c.kv_get("t", "k") is None
    c.close()
