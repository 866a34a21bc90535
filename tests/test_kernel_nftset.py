"""nftables set elements from C (NftSetSocket), read back with the nft tool, in a
namespace of the test's own."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

from pynetlib import failpoints
from pynetlib.errors import BadRequestError, KernelError, ObjectNotFoundError
from pynetlib.kernel import Netns
from pynetlib.kernel.nftset import NftSetSocket

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.environ.get("PYNETLIB_TEST_SANDBOX") != "1",
                       reason="needs root; the run isolates itself with unshare"),
]


def nft(ns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, "nft", *args], capture_output=True,
                          text=True, check=True).stdout


def elements(ns: str, family="bridge", table="t", name="s") -> list[int]:
    out = json.loads(nft(ns, "-j", "list", "set", family, table, name))
    s = next(o["set"] for o in out["nftables"] if "set" in o)
    # iface_index elements print as device names when the device exists (lo is 1)
    return sorted(1 if e == "lo" else int(e) for e in s.get("elem", []))


@pytest.fixture
def ns(make_netns):
    name = make_netns("nft")
    nft(name, "add", "table", "bridge", "t")
    nft(name, "add", "set", "bridge", "t", "s", "{ type iface_index; }")
    nft(name, "add", "table", "inet", "u")
    nft(name, "add", "set", "inet", "u", "v", "{ type mark; }")
    netns = Netns.named(name)
    sock = NftSetSocket(netns)
    yield name, sock
    sock.close()
    netns.close()


def test_add_and_remove_are_idempotent(ns):
    name, sock = ns
    sock.add("bridge", "t", "s", [1, 500, 70000])
    assert elements(name) == [1, 500, 70000]
    sock.add("bridge", "t", "s", [500, 9])              # 500 is there: fine
    assert elements(name) == [1, 9, 500, 70000]
    sock.remove("bridge", "t", "s", [500, 12345])       # 12345 is not: fine
    assert elements(name) == [1, 9, 70000]
    sock.remove("bridge", "t", "s", [1, 9, 70000])
    assert elements(name) == []


def test_remove_each_works_without_destroy(ns):
    """The path for kernels before 6.3 (no NFT_MSG_DESTROYSETELEM), run here too."""
    name, sock = ns
    sock.add("bridge", "t", "s", [4, 5, 6])
    sock.remove_each("bridge", "t", "s", [5, 77, 6])    # 77 is not there: skipped
    assert elements(name) == [4]
    nft(name, "add", "set", "bridge", "t", "w", "{ type ipv6_addr; }")
    with pytest.raises(KernelError):                     # a key of the wrong size
        sock.remove_each("bridge", "t", "w", [1])
    assert elements(name) == [4]


def test_no_keys_is_nothing_to_do(ns):
    name, sock = ns
    sock.add("bridge", "t", "s", [])
    sock.remove("bridge", "t", "nope", [])
    assert elements(name) == []


def test_other_family_and_full_u32_range(ns):
    name, sock = ns
    sock.add("inet", "u", "v", [0, 0xFFFFFFFF])
    assert elements(name, "inet", "u", "v") == [0, 0xFFFFFFFF]
    sock.remove("inet", "u", "v", [0])
    assert elements(name, "inet", "u", "v") == [0xFFFFFFFF]


def test_more_keys_than_one_message_holds(ns):
    name, sock = ns
    keys = list(range(100, 2600))                       # three transactions of <= 1024
    sock.add("bridge", "t", "s", keys)
    assert elements(name) == keys
    sock.remove("bridge", "t", "s", keys)
    assert elements(name) == []


def test_missing_set_or_table_is_a_typed_error_and_changes_nothing(ns):
    name, sock = ns
    sock.add("bridge", "t", "s", [7])
    with pytest.raises(ObjectNotFoundError) as e:
        sock.add("bridge", "t", "nope", [8])
    assert e.value.errno == errno.ENOENT
    with pytest.raises(ObjectNotFoundError):
        sock.remove("bridge", "nope", "s", [7])
    with pytest.raises(ObjectNotFoundError):
        sock.add("ip", "t", "s", [8])                   # the table is bridge's
    assert elements(name) == [7]


def test_a_key_of_the_wrong_size_is_refused_whole(ns):
    name, sock = ns
    nft(name, "add", "set", "bridge", "t", "w", "{ type ipv6_addr; }")
    with pytest.raises(KernelError):
        sock.add("bridge", "t", "w", [1])
    assert elements(name) == []


@pytest.mark.parametrize("args", [
    ("bridgeX", "t", "s", [1]), ("bridge", "", "s", [1]), ("bridge", "t", "s;x", [1]),
    ("bridge", "t" * 256, "s", [1]), ("bridge", "t", None, [1]), (7, "t", "s", [1]),
    ("bridge", "t", "s", [-1]), ("bridge", "t", "s", [1 << 32]), ("bridge", "t", "s", ["1"]),
    ("bridge", "t", "s", [True]),
])
def test_bad_input_is_refused_before_the_kernel(ns, args):
    name, sock = ns
    with pytest.raises(BadRequestError):
        sock.add(*args)
    assert elements(name) == []


def test_failpoint_and_closed_socket(ns):
    name, sock = ns
    failpoints.arm("nft.setelem=errno:EBUSY")
    try:
        with pytest.raises(KernelError) as e:
            sock.add("bridge", "t", "s", [3])
        assert e.value.errno == errno.EBUSY
    finally:
        failpoints.disarm_all()
    assert elements(name) == []
    sock.add("bridge", "t", "s", [3])
    assert elements(name) == [3]
    fd_count = len(os.listdir("/proc/self/fd"))
    other = NftSetSocket()
    assert len(os.listdir("/proc/self/fd")) == fd_count + 1
    other.close()
    other.close()                                       # twice is fine
    assert len(os.listdir("/proc/self/fd")) == fd_count
    with pytest.raises(ValueError, match="closed"):
        other.add("bridge", "t", "s", [4])
