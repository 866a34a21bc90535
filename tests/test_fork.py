"""A child made by fork() and its parent's pynetlib objects (pynetlib/forksafe.py).

The parent runs in its own interpreter (a script), so that its child can exit the
normal way, exit handlers included; what the child saw comes back as JSON."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(
    os.environ.get("PYNETLIB_TEST_SANDBOX") != "1", reason="needs the isolated test run")]

PARENT = textwrap.dedent("""
    import json, os, sys
    import pynetlib
    from pynetlib import netlabel
    from pynetlib.kernel import Netns

    ctrl = pynetlib.Controller(sys.argv[1], host_routes=lambda: [], netns_pool_size=2)
    ctrl._netns_pool.wait_full()           # namespaces of its own, held by fds only
    ctrl._teardown.max_delay = 60          # the namespace removal below stays pending
    net = ctrl.new_network("bridge", "fk", {netlabel.GENERIC_DATA: {
        "BridgeName": "pnlt-fork", "AddressIPv4": "10.161.0.1/16"}})
    live = net.create_endpoint("live")
    live_key = live.join("fk-live").sandbox_key
    ep = net.create_endpoint("again")
    key = ep.join("fk-again").sandbox_key
    ep.leave("fk-again")
    mine = Netns.open(live_key)            # a handle of the caller's own
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                           # the child
        os.close(w)
        seen = {"mine_closed": mine.closed}
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass                       # the listing's own fd
        seen["namespace_fds"] = [f for f in fds if f.startswith("net:")]
        for what, call in (("create_endpoint", lambda: net.create_endpoint("child")),
                           ("join", lambda: live.join("fk-child")),
                           ("flush_teardown", ctrl.flush_teardown)):
            try:
                call()
                seen[what] = "worked"
            except Exception as e:
                seen[what] = f"{type(e).__name__}: {e}"
        with Netns.open(live_key) as ns:   # opened again in the child: usable
            seen["reopened_inode"] = ns.inode
        os.read(r, 1)                      # until the parent has joined again
        print(json.dumps({"child": seen}), flush=True)
        sys.exit(0)                        # a normal exit: the exit handlers run
    os.close(r)
    ep.join("fk-again")                    # the same container: a new namespace, same path
    inode = os.stat(key).st_ino
    os.write(w, b"x")
    _, status = os.waitpid(pid, 0)
    after = {"status": status, "key": key, "inode": inode,
             "exists_after_child": os.path.exists(key),
             "live_inode": os.stat(live_key).st_ino}
    mine.close()
    ep.leave("fk-again")
    ep.delete()
    live.leave("fk-live")
    live.delete()
    ctrl.flush_teardown()
    after["audit"] = ctrl.audit()
    for e in net.endpoints():              # one the child made (it must not)
        e.delete()
    net.delete()
    ctrl.close()
    print(json.dumps({"parent": after}), flush=True)
""")


def test_a_forked_child_leaves_the_parents_objects_alone(tmp_path):
    """The child holds no fd of the parent's namespaces (they would outlive the
    containers), cannot use the parent's controller or store (typed error, nothing
    written), and its normal exit does not run the parent's pending teardown: before
    pynetlib/forksafe.py, that exit removed the namespace of a container the parent had
    joined again meanwhile."""
    state = str(tmp_path / "state")
    r = subprocess.run([sys.executable, "-c", PARENT, state],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    child = next(x["child"] for x in lines if "child" in x)
    parent = next(x["parent"] for x in lines if "parent" in x)

    assert child["namespace_fds"] == []
    assert child["mine_closed"] is True
    for what in ("create_endpoint", "join", "flush_teardown"):
        assert child[what].startswith("BadRequestError") and "forked this one" in \
            child[what], (what, child[what])
    assert child["reopened_inode"] == parent["live_inode"]

    assert parent["status"] == 0
    assert parent["exists_after_child"], "the child's exit removed the parent's namespace"
    assert parent["audit"] == []
    db = sqlite3.connect(os.path.join(state, "pynetlib.db"))     # nothing of the child's
    try:
        assert db.execute("SELECT name FROM endpoints").fetchall() == []
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_a_child_creates_namespaces_while_a_parent_thread_held_the_kernel_layers_lock():
    """A thread of the parent held the kernel layer's module lock at the fork: in the
    child (where that thread does not exist) creating a namespace must not wait on it."""
    from pynetlib.kernel import netns as netns_mod

    with netns_mod._prepared_lock:         # as a parent thread inside prepare_rundir
        pid = os.fork()
        if pid == 0:                       # the child: report through the exit status
            code = 1
            try:
                signal.alarm(10)           # a wait on the inherited lock fails the test
                ns = netns_mod.Netns.create("fk-child-ns")
                ns.delete()
                code = 0
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not os.path.exists("/run/netns/fk-child-ns")
