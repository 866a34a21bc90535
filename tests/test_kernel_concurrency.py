"""Many threads on one NetlinkSocket, threads entering different namespaces at once, and
link dumps racing with changes. Results are checked with pyroute2."""

from __future__ import annotations

import errno
import os
import re
import threading
import time

import pytest

from pynetlib.errors import DumpInterruptedError, KernelError
from pynetlib.kernel import NetlinkSocket, Netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]

THREADS = 16
ROUNDS = 50


def run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    lock = threading.Lock()

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return errors


def device_maker(sock: NetlinkSocket):
    """dummy devices where the kernel has the driver, else veth pairs (same semantics)."""
    try:
        sock.dummy_create("probe0")
    except KernelError as e:
        if e.errno != errno.EOPNOTSUPP:
            raise
        return lambda name: sock.veth_create(name, name + "p")
    sock.link_delete("probe0")
    return lambda name: sock.dummy_create(name)


def test_threads_share_one_socket(make_netns, ipr_in):
    name = make_netns("k")
    ipr = ipr_in(name)
    with Netns.named(name) as ns, NetlinkSocket(ns) as sock:
        create = device_maker(sock)
        barrier = threading.Barrier(THREADS)
        done = [0] * THREADS

        def work(t: int) -> None:
            barrier.wait()
            for i in range(ROUNDS):
                dev = f"t{t}r{i}"
                create(dev)
                by_name = sock.link_get(dev)
                assert by_name.name == dev
                by_index = sock.link_get(by_name.index)
                assert by_index.name == dev and by_index.index == by_name.index
                sock.link_set(by_name.index, mtu=1280 + t, up=True)
                assert sock.link_get(dev).mtu == 1280 + t
                sock.link_delete(dev)
                assert not sock.link_exists(dev)
                done[t] += 1

        errors = run_threads(THREADS, work)
        assert errors == []
        assert done == [ROUNDS] * THREADS
        # the socket is still in step after all that (no stray replies queued)
        assert sock.link_get("lo").index == 1
    assert [l.get("IFLA_IFNAME") for l in ipr.get_links()] == ["lo"]


def test_threads_enter_different_namespaces_at_once(make_netns, ipr_in):
    n = 8
    names = [make_netns("e") for _ in range(n)]
    handles = [Netns.named(x) for x in names]
    orig = os.stat("/proc/self/ns/net").st_ino
    inside = threading.Barrier(n)
    seen: dict[int, tuple[int, int, int]] = {}

    def work(i: int) -> None:
        ns = handles[i]
        with ns.enter():
            inside.wait()  # every thread is inside its own namespace at the same time
            now = os.stat("/proc/thread-self/ns/net").st_ino
            with NetlinkSocket() as s:  # opened in the thread's current namespace
                s.veth_create(f"own{i}", f"own{i}p")
            inside.wait()
            again = os.stat("/proc/thread-self/ns/net").st_ino
        seen[i] = (now, again, os.stat("/proc/thread-self/ns/net").st_ino)

    try:
        errors = run_threads(n, work)
        assert errors == []
        for i, ns in enumerate(handles):
            assert seen[i] == (ns.inode, ns.inode, orig)
        assert len({ns.inode for ns in handles}) == n
        for i, x in enumerate(names):
            got = {l.get("IFLA_IFNAME") for l in ipr_in(x).get_links()}
            assert got == {"lo", f"own{i}", f"own{i}p"}
    finally:
        for ns in handles:
            ns.close()
    assert os.stat("/proc/self/ns/net").st_ino == orig


def test_concurrent_sockets_in_many_namespaces(make_netns, ipr_in):
    """Each thread uses the cached socket of its own namespace; all from one process."""
    n = 6
    names = [make_netns("m") for _ in range(n)]
    handles = [Netns.named(x) for x in names]

    def work(i: int) -> None:
        s = handles[i].socket()
        for j in range(10):
            s.bridge_create(f"b{j}", group=i + 1)
        s.link_delete_group(i + 1)
        s.bridge_create(f"keep{i}")

    try:
        assert run_threads(n, work) == []
        for i, x in enumerate(names):
            assert {l.get("IFLA_IFNAME") for l in ipr_in(x).get_links()} == {"lo", f"keep{i}"}
    finally:
        for ns in handles:
            ns.close()


def test_link_dump_under_concurrent_changes(make_netns, ipr_in):
    """links() returns a complete, duplicate-free list or raises DumpInterruptedError.

    A hundred devices make the dump span several netlink messages, while other sockets add
    and remove devices; NLM_F_DUMP_INTR may or may not be raised by the kernel here (it is
    counted, not required), but a list that is returned must hold every stable device."""
    name = make_netns("d")
    ipr = ipr_in(name)
    with Netns.named(name) as ns, NetlinkSocket(ns) as dumper:
        for i in range(50):
            dumper.veth_create(f"st{i}", f"st{i}p")
        stable = {f"st{i}" for i in range(50)} | {f"st{i}p" for i in range(50)} | {"lo"}
        stop = threading.Event()
        results = {"ok": 0, "interrupted": 0}

        def churn(t: int) -> None:
            with NetlinkSocket(ns) as s:
                i = 0
                while not stop.is_set():
                    s.veth_create(f"ch{t}x{i}", f"ch{t}x{i}p")
                    s.link_delete(f"ch{t}x{i}")
                    i += 1

        def dump(_: int) -> None:
            deadline = time.monotonic() + 1.5
            try:
                while time.monotonic() < deadline:
                    try:
                        links = dumper.links()
                    except DumpInterruptedError:
                        results["interrupted"] += 1
                        continue
                    got = [l.name for l in links]
                    assert len(got) == len(set(got)), "a device listed twice"
                    assert len({l.index for l in links}) == len(links)
                    assert stable <= set(got), f"missing: {sorted(stable - set(got))[:5]}"
                    results["ok"] += 1
            finally:
                stop.set()

        errors = run_threads(4, lambda i: dump(i) if i == 0 else churn(i))
        assert errors == []
        assert results["ok"] > 0
    left = {l.get("IFLA_IFNAME") for l in ipr.get_links()}
    assert left == stable


def test_close_while_threads_are_inside_calls(make_netns):
    """A socket closed while other threads are inside calls on it (a controller closed
    while requests run): close() waits for the calls in flight before it frees the C
    socket, so every call either completes with the right answer or raises ValueError
    (closed). Before, close() freed the socket under the running calls: they failed
    with EBADF, or read freed memory (which the suite's ASan run reports)."""
    name = make_netns("k")
    with Netns.named(name) as ns, NetlinkSocket(ns) as setup:
        make = device_maker(setup)
        for i in range(300):                # a dump long enough to be caught inside
            make(f"c{i}")
        expect = len(setup.links())
        for _ in range(10):
            sock = NetlinkSocket(ns)
            done = [0] * THREADS
            ready = threading.Barrier(THREADS + 1)
            one_done = threading.Event()

            def dump(i):
                ready.wait()
                while True:
                    try:
                        links = sock.links()
                    except ValueError:
                        return                      # closed: the only error allowed
                    assert len(links) == expect
                    done[i] += 1
                    one_done.set()

            errors: list[BaseException] = []
            t = threading.Thread(target=lambda: errors.extend(run_threads(THREADS, dump)))
            t.start()
            ready.wait()
            assert one_done.wait(60)                # the threads are inside dumps
            sock.close()
            assert sock.closed
            t.join(120)
            assert not t.is_alive(), "a thread hung"
            assert errors == []
            assert sum(done) > 0


def test_namespace_closed_while_threads_pass_its_fd(make_netns, ipr_in):
    """A Netns closed while other threads pass its fd to the kernel, and other threads
    open namespaces (which take the lowest free fd numbers): close() waits for the calls
    in flight before it closes the fd, so each call either reaches this namespace or
    raises ValueError (closed). Before, the fd was closed under the calls: they failed
    with EBADF, or its number, reused meanwhile, sent them to another namespace. (The
    calls create veth pairs, which every kernel has, with the peers inside.)"""
    target, other = make_netns("k"), make_netns("o")
    ipr = ipr_in(target)
    with NetlinkSocket() as host:
        try:
            _close_under_calls(host, target, other, ipr)
        finally:                                    # what a failing attempt left
            for link in host.links():
                if re.fullmatch(r"a\d+t\d+i\d+", link.name):
                    host.link_delete(link.index)


def _close_under_calls(host, target, other, ipr) -> None:
    """The attempts of the test above (host: a socket in the test's namespace)."""
    for attempt in range(10):
        ns = Netns.named(target)
        inode = os.stat(f"/run/netns/{target}").st_ino
        made: list[str] = []
        ready = threading.Barrier(THREADS + 1)
        one_made = threading.Event()

        def work(t: int) -> None:
            ready.wait()
            for i in range(1000):
                if t % 2:                   # fds come and go meanwhile
                    Netns.named(other).close()
                    continue
                try:
                    assert ns.inode == inode
                    name = f"a{attempt}t{t}i{i}"
                    host.veth_create(name, "b" + name[1:], peer_netns=ns)
                except ValueError:
                    return                  # closed: the only error allowed
                made.append(name)
                one_made.set()

        errors: list[BaseException] = []
        t = threading.Thread(target=lambda: errors.extend(run_threads(THREADS, work)))
        t.start()
        ready.wait()
        assert one_made.wait(60)                # calls pass the fd right now
        ns.close()
        assert ns.closed
        t.join(120)
        assert not t.is_alive(), "a thread hung"
        assert errors == []
        names = {l.get("IFLA_IFNAME") for l in ipr.get_links()}
        peers = {"b" + n[1:] for n in made}
        assert peers <= names                   # every one in the namespace it named
        assert len(made) > 0
        for n in made:
            host.link_delete(n)                 # the pair goes with it
