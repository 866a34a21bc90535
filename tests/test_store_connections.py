"""A thread's store connection lives no longer than the thread.

The store opens one SQLite connection per thread (two file descriptors: the database
and its WAL). A caller that runs each operation on a new thread (a runtime with a thread
per container, a server with a thread per request) must not leave them behind: the
connections of threads that have ended are closed when the next one is opened, and a
live thread's connection is never touched. File descriptors are counted through
/proc/self/fd, not through the store.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from pynetlib import netlabel
from pynetlib import store as store_mod
from pynetlib.store import Store, open_store


def store_fds(state_dir: str) -> int:
    """This process's open descriptors on the store's files (database, WAL, shm)."""
    db = os.path.realpath(os.path.join(state_dir, store_mod.DB_NAME))
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:       # the listing's own descriptor, closed since
            continue
        if target.startswith(db):
            n += 1
    return n


def fds() -> int:
    """All of this process's open descriptors."""
    return len(os.listdir("/proc/self/fd"))


def run_in_thread(fn, *args):
    out = {}

    def body():
        try:
            out["value"] = fn(*args)
        except BaseException as e:      # re-raised in the caller's thread
            out["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_threads_that_come_and_go_leave_no_connections_open(tmp_path):
    state = str(tmp_path)
    st = open_store(state)
    st.kv_put("t", "warm", "x")
    before = store_fds(state)
    for i in range(150):
        run_in_thread(st.kv_put, "t", f"k{i}", str(i))
    # at most the last thread's connection (closed with the next one) and the
    # checkpoint thread's are left beside the main thread's
    assert store_fds(state) <= before + 4, (before, store_fds(state))
    assert len(st._conns) <= 3
    assert [st.kv_get("t", f"k{i}") for i in range(150)] == [str(i) for i in range(150)]
    st.close()
    assert store_fds(state) == 0


def test_a_live_threads_connection_is_left_open(tmp_path):
    st = open_store(str(tmp_path))
    go, done, errors = threading.Event(), threading.Event(), []

    def long_lived():
        try:
            st.kv_put("t", "first", "1")
            go.wait(30)
            st.kv_put("t", "second", "2")   # on its own connection, still open
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=long_lived)
    t.start()
    deadline = time.monotonic() + 30
    while st.kv_get("t", "first") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(50):                 # each opens a connection, and prunes
        run_in_thread(st.kv_get, "t", "first")
    go.set()
    done.wait(30)
    t.join(30)
    assert errors == []
    assert st.kv_get("t", "second") == "2"
    st.close()


def test_an_in_memory_store_outlives_the_threads_that_made_it():
    # Every connection but the newest may belong to an ended thread: the database
    # lives as long as one connection to it is open, so the new one opens first.
    st = run_in_thread(lambda: Store("", memory=True))
    run_in_thread(st.kv_put, "t", "k", "v")
    assert run_in_thread(st.kv_get, "t", "k") == "v"
    assert run_in_thread(st.kv_get, "t", "k") == "v"
    assert len(st._conns) == 1
    st.close()


@pytest.mark.kernel
@pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                    reason="needs the isolated test run")
def test_a_thread_per_container_keeps_the_process_fds_flat(ctrl):
    net = ctrl.new_network("bridge", "thr", {netlabel.GENERIC_DATA: {
        "BridgeName": "pnlt-thr", "AddressIPv4": "10.151.0.1/16"}})

    def container(i):
        ep = net.create_endpoint(f"e{i}")
        ep.join(f"thr{i}")
        ep.leave(f"thr{i}")
        ep.delete()

    for i in range(5):                  # the controller's own threads start
        run_in_thread(container, i)
    ctrl.flush_teardown()
    before = fds()
    for i in range(5, 55):
        run_in_thread(container, i)
    ctrl.flush_teardown()
    middle = fds()
    for i in range(55, 105):
        run_in_thread(container, i)
    ctrl.flush_teardown()
    after = fds()
    # what the first rounds opened for good (the last thread's connection, closed with
    # the next one; a controller thread's) stays; nothing grows per thread
    assert middle <= before + 4 and after <= middle, (before, middle, after)
    assert ctrl.audit() == []
