"""Fault injection: spec parsing, Python failpoints (raise, kill), C failpoints (errno
injection through the kernel layer, kill), hit counting, and the disarmed cost."""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from pynetlib import failpoints as fp
from pynetlib._ffi import lib
from pynetlib.errors import InternalError, KernelError
from pynetlib.failpoints import FailpointError, arm, armed, disarm_all, failpoint

in_sandbox = os.environ.get("PYNETLIB_TEST_SANDBOX") == "1"
requires_kernel = pytest.mark.skipif(
    not in_sandbox, reason="needs root; the run isolates itself with unshare")

_n = itertools.count()


@pytest.fixture(autouse=True)
def _disarm():
    disarm_all()
    yield
    disarm_all()


def run_child(code: str, spec: str | None, *, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop(fp.ENV, None)
    env.pop("PYTHONUNBUFFERED", None)    # stdout to the pipe is block-buffered
    if spec is not None:
        env[fp.ENV] = spec
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)


# --- parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("spec, expected", [
    ("network.create.before_kernel=kill",
     {"network.create.before_kernel": ("kill", 0, 0, 0)}),
    ("endpoint.join.after_kernel=raise*2",
     {"endpoint.join.after_kernel": ("raise", 0, 0, 2)}),
    ("link.create=errno:EBUSY", {"link.create": ("errno", errno.EBUSY, 0, 0)}),
    ("nl.send=3+errno:ENOBUFS*1", {"nl.send": ("errno", errno.ENOBUFS, 3, 1)}),
    ("attach.veth=3+kill", {"attach.veth": ("kill", 0, 3, 0)}),
    (" link.delete = errno:EINTR ; addr.add=errno:ENOMEM;;",
     {"link.delete": ("errno", errno.EINTR, 0, 0), "addr.add": ("errno", errno.ENOMEM, 0, 0)}),
    ("route.add=errno:EEXIST;netns.create=errno:ENODEV;netns.delete=errno:EPERM;"
     "attach.plumb=errno:ETIMEDOUT",
     {"route.add": ("errno", errno.EEXIST, 0, 0), "netns.create": ("errno", errno.ENODEV, 0, 0),
      "netns.delete": ("errno", errno.EPERM, 0, 0),
      "attach.plumb": ("errno", errno.ETIMEDOUT, 0, 0)}),
    ("endpoint.delete.before_store=off", {"endpoint.delete.before_store": ("off", 0, 0, 0)}),
    ("", {}),
    (" ; ", {}),
])
def test_parse_valid(spec, expected):
    got = {s.name: (s.action, s.errno, s.skip, s.count) for s in fp.parse(spec)}
    assert got == expected


@pytest.mark.parametrize("spec, bad", [
    ("nosuch.point=kill", "nosuch.point"),
    ("network.create.before_kernel", "network.create.before_kernel"),      # no '='
    ("network.create.before_kernel=", "network.create.before_kernel="),    # no action
    ("=kill", "=kill"),
    ("network.create.before_kernel=explode", "explode"),
    ("network.create.before_kernel=KILL", "KILL"),
    ("link.create=errno:EWHATEVER", "EWHATEVER"),
    ("link.create=errno:EAGAIN", "EAGAIN"),                                # not in the list
    ("link.create=errno", "errno"),
    ("link.create=errno:", "errno"),
    ("link.create=raise", "raise"),                                        # raise on C name
    ("endpoint.join.before_kernel=errno:EBUSY", "errno:EBUSY"),            # errno on Python
    ("link.create=kill*0", "*0"),
    ("link.create=kill*", "kill*"),
    ("link.create=+kill", "+kill"),
    ("link.create=-1+kill", "-1+kill"),
    ("link.create=kill*x", "kill*x"),
    ("link.create=kill:9", "kill"),
    ("link.create=2+off", "off"),
    ("link.create=kill;link.create=errno:EBUSY", "twice"),
    ("addr.add=errno:ENOMEM;bogus", "bogus"),
])
def test_parse_invalid(spec, bad):
    with pytest.raises(ValueError) as ei:
        fp.parse(spec)
    assert bad in str(ei.value)


def test_invalid_spec_arms_nothing():
    with pytest.raises(ValueError, match="bogus"):
        arm("link.create=errno:EBUSY;endpoint.join.before_kernel=raise;bogus=kill")
    assert armed() == {}
    assert lib.pnl_failpoint_check(b"link.create") == 0


def test_names():
    names = fp.names()
    assert names[:len(fp.PYTHON_NAMES)] == list(fp.PYTHON_NAMES)
    assert set(names) == set(fp.PYTHON_NAMES) | set(fp.C_NAMES)
    assert len(names) == len(set(names)) == 20
    for n in ("network.create.before_kernel", "network.create.after_kernel",
              "network.delete.before_kernel", "network.delete.after_kernel",
              "endpoint.join.before_kernel", "endpoint.join.after_kernel",
              "endpoint.leave.before_kernel", "endpoint.leave.after_kernel",
              "endpoint.create.after_store", "endpoint.delete.before_store",
              "nl.send", "link.create", "link.delete", "addr.add", "route.add",
              "netns.create", "netns.delete", "attach.veth", "attach.plumb",
              "nft.setelem"):
        assert n in names
    # every C name is known to the C table
    for n in fp.C_NAMES:
        assert lib.pnl_failpoint_arm(n.encode(), lib.PNL_FP_OFF, 0, 0, 0) == 0
    assert lib.pnl_failpoint_arm(b"no.such", lib.PNL_FP_KILL, 0, 0, 0) == -errno.ENOENT
    assert lib.pnl_failpoint_arm(b"nl.send", 7, 0, 0, 0) == -errno.EINVAL
    assert lib.pnl_failpoint_arm(b"nl.send", lib.PNL_FP_ERRNO, 0, 0, 0) == -errno.EINVAL
    assert lib.pnl_failpoint_arm(b"nl.send", lib.PNL_FP_ERRNO, 5000, 0, 0) == -errno.EINVAL
    assert lib.pnl_failpoint_arm(b"nl.send", lib.PNL_FP_KILL, 0, -1, 0) == -errno.EINVAL


def test_armed_and_disarm():
    arm("link.create=2+errno:EBUSY*1;endpoint.join.after_kernel=raise")
    arm("attach.veth=kill*3")
    assert armed() == {"link.create": "2+errno:EBUSY*1",
                       "endpoint.join.after_kernel": "raise", "attach.veth": "kill*3"}
    arm("attach.veth=off;endpoint.join.after_kernel=off")
    assert armed() == {"link.create": "2+errno:EBUSY*1"}
    failpoint("endpoint.join.after_kernel")           # disarmed: no raise
    assert lib.pnl_failpoint_check(b"attach.veth") == 0
    disarm_all()
    assert armed() == {}
    assert [lib.pnl_failpoint_check(b"link.create") for _ in range(5)] == [0] * 5


def test_env_arms_at_import():
    code = ("import pynetlib.failpoints as f; from pynetlib._ffi import lib; "
            "print(sorted(f.armed().items())); "
            "print([lib.pnl_failpoint_check(b'link.create') for _ in range(4)])")
    r = run_child(code, "link.create=1+errno:EBUSY*2;endpoint.leave.after_kernel=raise")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == str([("endpoint.leave.after_kernel", "raise"),
                            ("link.create", "1+errno:EBUSY*2")])
    assert lines[1] == str([0, -errno.EBUSY, -errno.EBUSY, 0])


@pytest.mark.parametrize("spec, bad", [
    ("link.create=raise", "raise"),
    ("endpoint.join.before_kernel=errno:ENOMEM", "errno:ENOMEM"),
    ("endpoint.join.before_kernel=kil", "kil"),
])
def test_env_invalid_fails_import(spec, bad):
    r = run_child("import pynetlib.failpoints", spec)
    assert r.returncode == 1
    assert "ValueError" in r.stderr and fp.ENV in r.stderr and bad in r.stderr


# --- Python failpoints -----------------------------------------------------------------

def test_python_raise():
    failpoint("network.create.before_kernel")         # nothing armed: no-op
    arm("network.create.before_kernel=raise")
    with pytest.raises(FailpointError) as ei:
        failpoint("network.create.before_kernel")
    assert isinstance(ei.value, InternalError)
    assert ei.value.name == "network.create.before_kernel"
    assert "network.create.before_kernel" in str(ei.value)
    failpoint("network.create.after_kernel")          # another name: no-op
    with pytest.raises(FailpointError):               # fires on every hit
        failpoint("network.create.before_kernel")


def test_python_skip_and_count():
    arm("endpoint.join.after_kernel=2+raise*2")
    fired = []
    for _ in range(6):
        try:
            failpoint("endpoint.join.after_kernel")
            fired.append(False)
        except FailpointError:
            fired.append(True)
    assert fired == [False, False, True, True, False, False]
    arm("endpoint.join.after_kernel=raise*1")         # re-arming restarts the count
    with pytest.raises(FailpointError):
        failpoint("endpoint.join.after_kernel")
    failpoint("endpoint.join.after_kernel")


def test_python_count_is_exact_across_threads():
    arm("endpoint.create.after_store=raise*500")
    fired = [0] * 8

    def worker(i):
        for _ in range(1000):
            try:
                failpoint("endpoint.create.after_store")
            except FailpointError:
                fired[i] += 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sum(fired) == 500


def test_python_kill():
    code = ("import sys; from pynetlib.failpoints import failpoint\n"
            "failpoint('endpoint.leave.before_kernel')\n"
            "print('before', flush=True)\n"
            "failpoint('endpoint.leave.after_kernel')\n"
            "print('after', flush=True)\n")
    r = run_child(code, "endpoint.leave.after_kernel=kill")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert r.stdout == "before\n"


def test_python_kill_after_skip():
    code = ("from pynetlib.failpoints import failpoint\n"
            "for i in range(10):\n"
            "    print(i, flush=True)\n"
            "    failpoint('network.delete.after_kernel')\n")
    r = run_child(code, "network.delete.after_kernel=3+kill")
    assert r.returncode == -signal.SIGKILL
    assert r.stdout.split() == ["0", "1", "2", "3"]


def test_python_kill_is_abrupt():
    """No atexit handlers, no finally blocks, no buffered output flushed."""
    code = ("import atexit, sys; from pynetlib.failpoints import failpoint\n"
            "atexit.register(lambda: print('atexit', flush=True))\n"
            "sys.stdout.write('buffered')\n"
            "try:\n"
            "    failpoint('network.create.after_kernel')\n"
            "finally:\n"
            "    print('finally', flush=True)\n")
    r = run_child(code, "network.create.after_kernel=kill")
    assert r.returncode == -signal.SIGKILL
    assert r.stdout == ""


# --- C failpoints without the kernel ---------------------------------------------------

def test_c_skip_and_count():
    arm("netns.delete=2+errno:EPERM*3")
    got = [lib.pnl_failpoint_check(b"netns.delete") for _ in range(7)]
    assert got == [0, 0, -errno.EPERM, -errno.EPERM, -errno.EPERM, 0, 0]
    assert lib.pnl_failpoint_check(b"netns.create") == 0     # another name
    assert lib.pnl_failpoint_check(b"no.such") == 0          # unknown name: never fires
    arm("netns.delete=errno:EINTR")                           # re-armed: every hit
    assert [lib.pnl_failpoint_check(b"netns.delete") for _ in range(3)] == [-errno.EINTR] * 3


def test_c_count_is_exact_across_threads():
    """cffi drops the GIL around each check: the hits race in C and are counted exactly."""
    arm("nl.send=100+errno:ENOBUFS*5000")
    fired = [0] * 8
    barrier = threading.Barrier(8)

    def worker(i):
        barrier.wait()
        check = lib.pnl_failpoint_check
        n = 0
        for _ in range(5000):
            if check(b"nl.send") == -errno.ENOBUFS:
                n += 1
        fired[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sum(fired) == 5000


def test_c_kill_in_child():
    code = ("from pynetlib._ffi import lib\n"
            "print(lib.pnl_failpoint_check(b'attach.plumb'), flush=True)\n"
            "print(lib.pnl_failpoint_check(b'attach.plumb'), flush=True)\n"
            "print('survived', flush=True)\n")
    r = run_child("import pynetlib.failpoints\n" + code, "attach.plumb=1+kill")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert r.stdout == "0\n"


# --- C failpoints through the kernel layer ---------------------------------------------

def ip_json(*args: str, netns: str | None = None) -> list:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return json.loads(out) if out.strip() else []


def link_names(netns: str | None = None) -> set[str]:
    return {l["ifname"] for l in ip_json("link", "show", netns=netns)}


@pytest.fixture
def netns():
    """Named namespaces made with iproute2: name -> Netns; deleted (with every device
    in them) after the test."""
    from pynetlib.kernel import Netns

    made: list[tuple[str, object]] = []

    def make(prefix: str = "fp") -> tuple[str, "Netns"]:
        name = f"{prefix}{os.getpid()}-{next(_n)}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        ns = Netns.named(name)
        made.append((name, ns))
        return name, ns

    yield make
    disarm_all()
    for name, ns in made:
        ns.close()
        if os.path.exists(f"/run/netns/{name}"):
            subprocess.run(["ip", "netns", "del", name], check=False)


@requires_kernel
def test_link_create_errno_and_count(netns):
    name, ns = netns()
    s = ns.socket()
    arm("link.create=errno:EBUSY*1")
    with pytest.raises(KernelError) as ei:
        s.bridge_create("fpbr0")
    assert ei.value.errno == errno.EBUSY
    assert "fpbr0" not in link_names(name)
    s.bridge_create("fpbr0")                          # *1: the second call goes through
    assert "fpbr0" in link_names(name)


@requires_kernel
def test_link_create_errno_in_run_netns():
    """The default NetlinkSocket() (the isolated run's own namespace), as the brief says."""
    from pynetlib.kernel import NetlinkSocket

    with NetlinkSocket() as s:
        arm("link.create=errno:EBUSY")
        try:
            for _ in range(2):
                with pytest.raises(KernelError) as ei:
                    s.bridge_create("fpbr1")
                assert ei.value.errno == errno.EBUSY
            assert "fpbr1" not in link_names()
        finally:
            disarm_all()
            if s.link_exists("fpbr1"):
                s.link_delete("fpbr1")


@requires_kernel
@pytest.mark.parametrize("ename", ["EEXIST", "EBUSY", "ENOBUFS", "EINTR", "ENOMEM"])
def test_nl_send_fails_whole_pipeline(netns, ename):
    name, ns = netns()
    s = ns.socket()
    s.bridge_create("fpd0")
    arm(f"nl.send=errno:{ename}*1")
    with pytest.raises(KernelError) as ei:
        s.link_set("fpd0", up=True)
    assert ei.value.errno == getattr(errno, ename)
    (l,) = ip_json("link", "show", "fpd0", netns=name)
    assert "UP" not in l["flags"]                     # nothing was sent
    s.link_set("fpd0", up=True)
    (l,) = ip_json("link", "show", "fpd0", netns=name)
    assert "UP" in l["flags"]


@requires_kernel
def test_link_delete_addr_route_errno(netns):
    name, ns = netns()
    s = ns.socket()
    s.bridge_create("fpd1", up=True)
    idx = s.index("fpd1")
    arm("addr.add=errno:ENOMEM*1;route.add=errno:EEXIST*1;link.delete=errno:EBUSY*1")
    with pytest.raises(KernelError) as ei:
        s.addr_add(idx, "10.9.0.2/24")
    assert ei.value.errno == errno.ENOMEM
    (dev,) = ip_json("addr", "show", "dev", "fpd1", netns=name)
    assert all(a["family"] != "inet" for a in dev.get("addr_info", []))
    s.addr_add(idx, "10.9.0.2/24")
    with pytest.raises(KernelError) as ei:
        s.route_add(dst="10.10.0.0/16", gateway="10.9.0.1")
    assert ei.value.errno == errno.EEXIST
    assert ip_json("route", "show", "10.10.0.0/16", netns=name) == []
    s.route_add(dst="10.10.0.0/16", gateway="10.9.0.1")
    assert len(ip_json("route", "show", "10.10.0.0/16", netns=name)) == 1
    with pytest.raises(KernelError) as ei:
        s.link_delete(idx)
    assert ei.value.errno == errno.EBUSY
    assert "fpd1" in link_names(name)
    s.link_delete(idx)
    assert "fpd1" not in link_names(name)


@requires_kernel
def test_netns_create_delete_errno():
    from pynetlib.kernel import Netns, delete_netns

    nsname = f"fpn{os.getpid()}-{next(_n)}"
    arm("netns.create=errno:ENOMEM*1;netns.delete=errno:EBUSY*1")
    with pytest.raises(KernelError) as ei:
        Netns.create(nsname)
    assert ei.value.errno == errno.ENOMEM
    assert not os.path.exists(f"/run/netns/{nsname}")         # rolled back
    ns = Netns.create(nsname)
    try:
        ns.close()
        with pytest.raises(KernelError) as ei:
            delete_netns(nsname)
        assert ei.value.errno == errno.EBUSY
        assert os.path.exists(f"/run/netns/{nsname}")
    finally:
        disarm_all()
        delete_netns(nsname)
    assert not os.path.exists(f"/run/netns/{nsname}")


def _attach_setup(netns):
    hname, hns = netns("fph")
    cname, cns = netns("fpc")
    hs = hns.socket()
    hs.bridge_create("br0", up=True)
    hs.addr_add("br0", "172.21.0.1/16")
    return hname, hs, cname, cns


def _attach(hs, cns, n: int = 2):
    from pynetlib.kernel import attach_veth

    return attach_veth(hs, cns, f"vfp{n}", "eth0", bridge="br0", mtu=1400,
                       address=f"172.21.0.{n}/16", gateway="172.21.0.1", alias=f"ep-{n}")


@requires_kernel
@pytest.mark.parametrize("point, ename", [("attach.veth", "ENOMEM"),
                                          ("attach.plumb", "ENOBUFS"),
                                          ("link.create", "EEXIST")])
def test_attach_errno_rolls_back(netns, point, ename):
    hname, hs, cname, cns = _attach_setup(netns)
    before_host, before_cont = link_names(hname), link_names(cname)
    arm(f"{point}=errno:{ename}*1")
    with pytest.raises(KernelError) as ei:
        _attach(hs, cns)
    assert ei.value.errno == getattr(errno, ename)
    # no veth left on either side
    assert link_names(hname) == before_host
    assert link_names(cname) == before_cont == {"lo"}
    # *1: the retry goes through and plumbs the container
    idx = _attach(hs, cns)
    assert idx > 0
    assert "vfp2" in link_names(hname)
    (eth0,) = ip_json("addr", "show", "dev", "eth0", netns=cname)
    assert any(a["local"] == "172.21.0.2" for a in eth0["addr_info"])


_CHILD_ATTACH = """
import sys
from pynetlib.kernel import Netns, attach_veth
hs = Netns.named(sys.argv[1]).socket()
cns = Netns.named(sys.argv[2])
print("start", flush=True)
attach_veth(hs, cns, "vfp7", "eth0", bridge="br0", address="172.21.0.7/16",
            gateway="172.21.0.1", alias="ep-7")
print("survived", flush=True)
"""


def _run_child_argv(code: str, spec: str, *argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **{fp.ENV: spec})
    return subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True, timeout=60)


@requires_kernel
def test_c_kill_before_veth(netns):
    """link.create=kill: the process dies before anything reaches the kernel."""
    hname, hs, cname, cns = _attach_setup(netns)
    r = _run_child_argv(_CHILD_ATTACH, "link.create=kill", hname, cname)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert r.stdout == "start\n"
    assert "vfp7" not in link_names(hname)
    assert link_names(cname) == {"lo"}


@requires_kernel
def test_c_kill_mid_attach_leaves_half_done(netns):
    """attach.plumb=kill: the process dies with the veth created (alias-tagged) but the
    container side unplumbed: exactly what crash recovery has to clean up."""
    hname, hs, cname, cns = _attach_setup(netns)
    r = _run_child_argv(_CHILD_ATTACH, "attach.plumb=kill", hname, cname)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert r.stdout == "start\n"
    (veth,) = ip_json("link", "show", "vfp7", netns=hname)
    assert veth.get("ifalias") == "ep-7"
    (eth0,) = ip_json("addr", "show", "dev", "eth0", netns=cname)
    assert "UP" not in eth0["flags"]
    assert all(a["family"] != "inet" for a in eth0.get("addr_info", []))
    hs.link_delete("vfp7")                            # the peer goes with it
    assert link_names(cname) == {"lo"}


# --- cost ------------------------------------------------------------------------------

def test_disarmed_failpoint_does_nothing():
    """A disarmed failpoint (while another is armed) neither raises nor changes state.
    Its cost is a benchmark figure (benchmarks/bench_failpoints.py), not a test."""
    arm("endpoint.join.after_kernel=raise")           # something else armed
    before = armed()
    for _ in range(10_000):
        failpoint("network.create.before_kernel")
    assert armed() == before
