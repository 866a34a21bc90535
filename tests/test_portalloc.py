"""PortAllocator: dynamic range coverage under threads, conflicts, release and next-fit."""

from __future__ import annotations

import threading

import pytest

from pynetlib.drivers.bridge.portalloc import (
    DEFAULT_PORT_RANGE, AllPortsAllocatedError, PortAllocator, PortAlreadyAllocatedError,
    UnknownProtocolError, read_port_range)
from pynetlib.errors import BadRequestError, ForbiddenError, NoServiceError


def test_range_read_from_proc_or_default(tmp_path):
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        lo, hi = (int(x) for x in f.read().split())
    assert read_port_range() == (lo, hi)
    assert PortAllocator().begin == lo and PortAllocator().end == hi
    assert read_port_range(str(tmp_path / "missing")) == DEFAULT_PORT_RANGE == (49153, 60999)
    bad = tmp_path / "bad"
    bad.write_text("70000 10\n")
    assert read_port_range(str(bad)) == DEFAULT_PORT_RANGE


def test_dynamic_covers_range_without_duplicates_from_threads():
    lo, hi = 40000, 40999
    pa = PortAllocator((lo, hi))
    got: list[int] = []
    errors: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker():
        start.wait()
        mine = []
        try:
            for _ in range(125):
                mine.append(pa.request("tcp"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(got) == list(range(lo, hi + 1))
    with pytest.raises(AllPortsAllocatedError) as ei:
        pa.request("tcp")
    assert isinstance(ei.value, NoServiceError)
    # other protocols are independent
    assert lo <= pa.request("udp") <= hi


def test_explicit_conflicts_and_message():
    pa = PortAllocator((50000, 50010))
    assert pa.request("tcp", None, 8080) == 8080
    with pytest.raises(PortAlreadyAllocatedError) as ei:
        pa.request("tcp", "192.0.2.1", 8080)
    assert isinstance(ei.value, ForbiddenError)
    assert str(ei.value) == "Bind for 192.0.2.1:8080 failed: port is already allocated"
    with pytest.raises(PortAlreadyAllocatedError, match=r"^Bind for 0.0.0.0:8080 failed"):
        pa.request("tcp", "0.0.0.0", 8080)
    assert pa.request("udp", None, 8080) == 8080          # another protocol
    # specific addresses coexist; a wildcard then conflicts with them
    assert pa.request("tcp", "192.0.2.1", 9090) == 9090
    assert pa.request("tcp", "192.0.2.2", 9090) == 9090
    with pytest.raises(PortAlreadyAllocatedError):
        pa.request("tcp", "192.0.2.1", 9090)
    with pytest.raises(PortAlreadyAllocatedError):
        pa.request("tcp", None, 9090)
    # :: is every IPv6 address: it conflicts with IPv6 bindings only (and wildcards)
    assert pa.request("tcp", "2001:db8::1", 7070) == 7070
    with pytest.raises(PortAlreadyAllocatedError):
        pa.request("tcp", "::", 7070)
    assert pa.request("tcp", "::", 7071) == 7071
    with pytest.raises(PortAlreadyAllocatedError):
        pa.request("tcp", "2001:db8::2", 7071)
    assert pa.request("tcp", "192.0.2.1", 7071) == 7071
    assert pa.is_allocated("tcp", None, 8080)
    assert ("tcp", None, 8080) in pa.allocated()


def test_release_and_next_fit():
    pa = PortAllocator((50000, 50004))
    first = [pa.request("tcp") for _ in range(3)]
    assert first == [50000, 50001, 50002]
    pa.release("tcp", None, 50001)
    # next-fit: the just-released port is not reused at once
    assert pa.request("tcp") == 50003
    assert pa.request("tcp") == 50004
    assert pa.request("tcp") == 50001               # wraps around to the free one
    with pytest.raises(AllPortsAllocatedError):
        pa.request("tcp")
    # release of something not held is a no-op
    pa.release("tcp", None, 1234)
    pa.release("tcp", "192.0.2.9", 50000)
    assert pa.is_allocated("tcp", None, 50000)
    pa.release("tcp", None, 50000)
    pa.release("tcp", None, 50000)
    assert not pa.is_allocated("tcp", None, 50000)
    assert pa.request("tcp", None, 50000) == 50000   # explicit ports can take it back


def test_dynamic_per_address_skips_wildcard_ports():
    pa = PortAllocator((50000, 50003))
    assert pa.request("tcp", None, 50000) == 50000
    assert pa.request("tcp", "192.0.2.1") == 50001
    assert pa.request("tcp", "192.0.2.2") == 50001
    assert pa.request("tcp", None) == 50002


def test_bad_input():
    pa = PortAllocator((50000, 50001))
    with pytest.raises(UnknownProtocolError):
        pa.request("icmp")
    with pytest.raises(BadRequestError):
        pa.request("tcp", "not-an-ip")
    for bad in (-1, 65536, True, "80"):
        with pytest.raises(BadRequestError):
            pa.request("tcp", None, bad)
    with pytest.raises(BadRequestError):
        PortAllocator((10, 5))
    assert pa.allocated() == []
