"""Network namespaces through pynetlib.kernel.Netns, checked with iproute2 and pyroute2."""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess

import pytest

from pynetlib.errors import (BadRequestError, InvalidNameError, NoSuchNamespaceError,
                             ObjectExistsError)
from pynetlib.kernel import NetlinkSocket, Netns, delete_netns

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]

IFF_UP = 0x1
RUNDIR = "/run/netns"
_n = itertools.count()


@pytest.fixture
def ns_name():
    """Fresh names for namespaces that pynetlib creates; removed after the test."""
    made: list[str] = []

    def new(prefix: str = "pn") -> str:
        name = f"{prefix}{os.getpid()}-{next(_n)}"
        made.append(name)
        return name

    yield new
    for name in made:
        if os.path.exists(os.path.join(RUNDIR, name)):
            subprocess.run(["ip", "netns", "del", name], check=False)


def ip_netns_list() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], check=True, capture_output=True,
                         text=True).stdout
    return {e["name"] for e in json.loads(out)} if out.strip() else set()


def thread_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def lo_flags(name: str) -> int:
    from pyroute2 import NetNS

    with NetNS(name) as n:
        return n.link("get", index=1)[0]["flags"]


# --- create ------------------------------------------------------------------------------

def test_create_is_visible_to_iproute2_and_pyroute2(ns_name):
    name = ns_name()
    ns = Netns.create(name)
    try:
        path = os.path.join(RUNDIR, name)
        assert ns.path == path and ns.name == name
        assert os.path.exists(path)
        assert name in ip_netns_list()
        assert ns.inode == os.stat(path).st_ino
        assert ns.inode != thread_inode()
        assert lo_flags(name) & IFF_UP, "lo should be up in a namespace made with lo_up=True"
        from pyroute2 import NetNS

        with NetNS(name) as n:
            assert [l.get("IFLA_IFNAME") for l in n.get_links()] == ["lo"]
    finally:
        ns.delete()
    assert not os.path.exists(path)
    assert name not in ip_netns_list()


def test_create_without_lo_up_leaves_lo_down(ns_name):
    name = ns_name()
    ns = Netns.create(name, lo_up=False)
    try:
        assert not lo_flags(name) & IFF_UP
    finally:
        ns.delete()


def test_create_with_socket_gives_a_socket_inside(ns_name):
    from pyroute2 import NetNS

    name = ns_name()
    ns = Netns.create(name, with_socket=True)
    try:
        s = ns.socket()
        assert s is ns.socket(), "the namespace keeps one socket"
        s.bridge_create("wsbr0", mtu=1400)
        with NetNS(name) as n:
            got = n.link("get", ifname="wsbr0")[0]
            assert got.get("IFLA_MTU") == 1400
        # and not in the test run's own namespace
        assert "wsbr0" not in {l["ifname"] for l in _ip_links()}
    finally:
        ns.delete()
    assert s.closed, "delete closes the namespace's socket"


def test_create_existing_name_is_eexist_and_leaves_it_untouched(make_netns):
    name = make_netns()
    path = os.path.join(RUNDIR, name)
    subprocess.run(["ip", "-n", name, "link", "add", "keep0", "type", "bridge"], check=True)
    inode = os.stat(path).st_ino
    with pytest.raises(ObjectExistsError) as ei:
        Netns.create(name)
    assert ei.value.errno == errno.EEXIST
    assert os.stat(path).st_ino == inode
    from pyroute2 import NetNS

    with NetNS(name) as n:
        assert {l.get("IFLA_IFNAME") for l in n.get_links()} == {"lo", "keep0"}


def test_new_namespace_has_no_file_until_bound(ns_name):
    from pyroute2 import NetNS

    before = set(os.listdir(RUNDIR))
    ns = Netns.new(with_socket=True)
    try:
        assert ns.path is None and set(os.listdir(RUNDIR)) == before
        assert ns.inode != thread_inode()
        ns.socket().bridge_create("nwbr0")
        name = ns_name()
        ns.bind(name)
        path = os.path.join(RUNDIR, name)
        assert ns.path == path and os.stat(path).st_ino == ns.inode
        assert name in ip_netns_list()
        with NetNS(name) as n:                          # the same namespace, by its file
            assert {l.get("IFLA_IFNAME") for l in n.get_links()} == {"lo", "nwbr0"}
        assert lo_flags(name) & IFF_UP
        with pytest.raises(ObjectExistsError):           # a name is bound once
            Netns.new().bind(name)
    finally:
        ns.delete()
    assert not os.path.exists(path)


def test_a_new_namespace_leaves_no_fd_behind():
    fds = open_fds()
    for _ in range(20):
        Netns.new(with_socket=True, lo_up=False).close()
    assert open_fds() == fds


@pytest.mark.parametrize("bad", ["", "a/b", "..", ".", "x" * 300, "-lead", "sp ace", "nul\0x", 7])
def test_create_invalid_name(bad):
    before = sorted(os.listdir(RUNDIR))
    with pytest.raises(InvalidNameError):
        Netns.create(bad)
    assert sorted(os.listdir(RUNDIR)) == before


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 300])
def test_delete_and_named_reject_invalid_names(bad):
    with pytest.raises(InvalidNameError):
        delete_netns(bad)
    with pytest.raises(InvalidNameError):
        Netns.named(bad)


def test_relative_rundir_is_rejected(ns_name):
    with pytest.raises(BadRequestError):
        Netns.create(ns_name(), rundir="relative/dir")


# --- open --------------------------------------------------------------------------------

def test_open_named_namespace_by_path(make_netns):
    name = make_netns()
    path = os.path.join(RUNDIR, name)
    with Netns.open(path) as ns:
        assert ns.inode == os.stat(path).st_ino
        assert ns.path == path
    assert ns.closed
    with Netns.named(name) as ns2:
        assert ns2.inode == os.stat(path).st_ino
        assert ns2.name == name


def test_open_proc_self_ns_net():
    with Netns.open("/proc/self/ns/net") as ns:
        assert ns.inode == os.stat("/proc/self/ns/net").st_ino
    with Netns.current() as cur:
        assert cur.inode == thread_inode()


def test_open_regular_file_is_bad_request(tmp_path):
    f = tmp_path / "not-a-netns"
    f.write_text("hello")
    before = open_fds()
    with pytest.raises(BadRequestError):
        Netns.open(str(f))
    assert open_fds() == before


def test_open_other_namespace_type_is_bad_request():
    with pytest.raises(BadRequestError):
        Netns.open("/proc/self/ns/mnt")


@pytest.mark.parametrize("path", ["/run/netns/does-not-exist", "/nonexistent/dir/ns"])
def test_open_missing_path_is_no_such_namespace(path):
    with pytest.raises(NoSuchNamespaceError):
        Netns.open(path)


def test_named_missing_is_no_such_namespace():
    with pytest.raises(NoSuchNamespaceError):
        Netns.named(f"missing{os.getpid()}")


@pytest.mark.parametrize("bad", ["", None, "a\0b"])
def test_open_bad_path_argument(bad):
    with pytest.raises(BadRequestError):
        Netns.open(bad)


# --- delete ------------------------------------------------------------------------------

def test_delete_removes_file_and_second_delete_is_no_such_namespace(ns_name):
    name = ns_name()
    ns = Netns.create(name)
    path = ns.path
    ns.delete()
    assert ns.closed
    assert not os.path.exists(path)
    assert name not in ip_netns_list()
    with pytest.raises(NoSuchNamespaceError):
        ns.delete()
    with pytest.raises(NoSuchNamespaceError):
        delete_netns(name)


def test_delete_namespace_made_by_iproute2(make_netns):
    name = make_netns()
    delete_netns(name)
    assert name not in ip_netns_list()
    assert not os.path.exists(os.path.join(RUNDIR, name))


def test_unnamed_namespace_cannot_be_deleted():
    with Netns.open("/proc/self/ns/net") as ns:
        with pytest.raises(BadRequestError):
            ns.delete()
    assert os.path.exists("/proc/self/ns/net")


# --- enter -------------------------------------------------------------------------------

def test_enter_runs_the_block_inside_and_returns(make_netns):
    name = make_netns()
    subprocess.run(["ip", "-n", name, "link", "add", "inside0", "type", "bridge"], check=True)
    orig = thread_inode()
    with Netns.named(name) as ns:
        with ns.enter():
            assert thread_inode() == ns.inode
            from pyroute2 import IPRoute

            with IPRoute() as ipr:  # a socket opened now lives in the entered namespace
                names = {l.get("IFLA_IFNAME") for l in ipr.get_links()}
            assert names == {"lo", "inside0"}
        assert thread_inode() == orig


def test_enter_returns_after_an_exception(make_netns):
    name = make_netns()
    orig = thread_inode()
    with Netns.named(name) as ns:
        with pytest.raises(ZeroDivisionError):
            with ns.enter():
                assert thread_inode() == ns.inode
                1 / 0  # noqa: B018
        assert thread_inode() == orig


def test_enter_nested(make_netns):
    a, b = make_netns(), make_netns()
    orig = thread_inode()
    with Netns.named(a) as na, Netns.named(b) as nb:
        with na.enter():
            assert thread_inode() == na.inode
            with nb.enter():
                assert thread_inode() == nb.inode
            assert thread_inode() == na.inode
        assert thread_inode() == orig


def test_socket_opened_inside_enter_stays_bound_to_that_namespace(make_netns):
    from pyroute2 import NetNS

    name = make_netns()
    with Netns.named(name) as ns:
        with ns.enter():
            s = NetlinkSocket()
        try:
            s.bridge_create("bound0")  # used outside the block: still the entered namespace
        finally:
            s.close()
    with NetNS(name) as n:
        assert n.link_lookup(ifname="bound0")
    assert "bound0" not in {l["ifname"] for l in _ip_links()}


def test_netlink_socket_for_a_namespace(make_netns):
    from pyroute2 import NetNS

    name = make_netns()
    with Netns.named(name) as ns, NetlinkSocket(ns) as s:
        s.bridge_create("viafd0", up=True)
    with NetNS(name) as n:
        l = n.link("get", ifname="viafd0")[0]
        assert l["flags"] & IFF_UP
    assert "viafd0" not in {l["ifname"] for l in _ip_links()}


# --- file descriptors --------------------------------------------------------------------

def test_no_fd_leak_over_create_use_close_delete_cycles(ns_name, make_netns):
    other = os.path.join(RUNDIR, make_netns())
    # warm up lazily created state (rundir preparation, cffi), then count
    Netns.create(ns_name()).delete()
    before = open_fds()
    for i in range(20):
        ns = Netns.create(ns_name(), with_socket=(i % 2 == 0))
        ns.socket().bridge_create("fdbr0")
        with ns.enter():
            pass
        ns.close()
        ns.delete()
        with Netns.open(other) as o:
            o.socket()
        try:
            Netns.open("/run/netns/missing-fd-check")
        except NoSuchNamespaceError:
            pass
    assert open_fds() == before


def test_failed_create_leaves_no_file_and_no_fd(make_netns):
    name = make_netns()
    before_fds, before_files = open_fds(), sorted(os.listdir(RUNDIR))
    for _ in range(5):
        with pytest.raises(ObjectExistsError):
            Netns.create(name, with_socket=True)
    assert open_fds() == before_fds
    assert sorted(os.listdir(RUNDIR)) == before_files


def _ip_links() -> list[dict]:
    out = subprocess.run(["ip", "-j", "link", "show"], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out) if out.strip() else []
