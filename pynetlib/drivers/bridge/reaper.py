"""Batched, asynchronous deletion of devices.

Deleting a network device makes the kernel wait out an RCU grace period (about 15-20 ms
here), but devices deleted together share one wait. So a leave does not delete its veth:
it retires the host end (into the reap group, its bridge port disabled: one cheap send,
and the bridge forwards nothing to or from it at once), and the reaper deletes the whole
group in one request, within ``max_delay`` seconds or as soon as ``max_backlog`` devices
wait. The delay (250 ms) is longer than the namespace teardown's (50 ms): the veth of a
container whose namespace goes is usually destroyed by the kernel's namespace cleanup
first, and the group delete only has the rest (measured: the reaper's time per
container fell from about 2.1 ms to 0.6 ms). It runs on its own netlink socket, so its
long request never holds up anyone else's. ``flush()`` deletes the group now;
``close()`` flushes and stops.

A port can also be taken out of service without touching the link (``submit_blocked``):
the caller has put its interface index into the firewall's set of retired ports, which
drops every frame from or to it; that is one nftables transaction and never waits for
the RTNL lock, which device deletions (the reaper's own batches, the kernel's namespace
cleanup) hold for milliseconds. The reaper then moves those devices into the group
itself, just before its batch, and hands their indexes to ``unblock`` once they are
gone.

Every submit returns a ticket: the batch that deletes the device. ``after(ticket, fn)``
runs ``fn`` once that batch is done (the driver releases the addresses the device may
still carry then). After a crash, devices left in the reap group are tagged orphans:
reconcile removes them like any other.
"""

from __future__ import annotations

import atexit
import errno
import logging
import threading
import time
import weakref
from typing import Callable

from pynetlib import forksafe
from pynetlib.batching import wait_for_batch
from pynetlib.kernel import NetlinkSocket

log = logging.getLogger(__name__)

#: The link group of devices waiting to be deleted ("pnlr").
REAP_GROUP = 0x706E6C72


class Reaper:
    def __init__(self, netns=None, *, group: int = REAP_GROUP, max_delay: float = 0.25,
                 max_backlog: int = 256,
                 unblock: Callable[[list[int]], None] | None = None) -> None:
        """``unblock(indexes)``: called after a batch with the indexes of the devices
        submitted with ``submit_blocked`` that it deleted."""
        self._netns = netns
        self._unblock = unblock
        self._blocked: list[int] = []   # submit_blocked's devices, not yet in the group
        self.group = group
        self.max_delay = max_delay
        self.max_backlog = max_backlog
        self._cv = threading.Condition()
        self._pending = 0           # devices submitted since the last batch started
        self._started = 0           # batches started
        self._deleted = 0           # batches whose devices are gone (their tickets done)
        self._batches = 0           # batches finished, what waited on them run too
        self._after: dict[int, list[Callable[[], None]]] = {}
        self._thread: threading.Thread | None = None
        self._sock: NetlinkSocket | None = None
        self._stopping = False
        self.deleted_batches = 0
        self.last_batch_seconds = 0.0
        self.busy_seconds = 0.0     # time spent deleting, all batches (benchmarks)
        self._forked = False
        # A process that exits without close() still deletes what it left pending.
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().close())
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): the parent's devices are the parent's to delete."""
        self._cv = threading.Condition()
        self._after, self._blocked = {}, []
        self._thread = None
        self._stopping = self._forked = True

    def submit(self, sock: NetlinkSocket, link) -> int | None:
        """Retire the bridge port ``link`` into the reap group (through the caller's
        socket). Returns the ticket of the batch that deletes it; None when the device
        is already gone."""
        try:
            sock.retire_port(link, self.group)
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        with self._cv:
            self._pending += 1
            self._start()
            self._cv.notify_all()            # starts the batch's max_delay clock
            return self._started + 1

    def submit_blocked(self, index: int) -> int:
        """The device ``index`` is out of service already (its index is in the set of
        retired ports): delete it with the next batch. Returns the batch's ticket."""
        if self._unblock is None:
            raise ValueError("this reaper has no unblock callback")
        with self._cv:
            self._blocked.append(index)
            self._pending += 1
            self._start()
            self._cv.notify_all()
            return self._started + 1

    def done(self, ticket: int) -> bool:
        """Whether the batch of ``ticket`` has deleted its devices."""
        with self._cv:
            return self._deleted >= ticket

    def after(self, ticket: int, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the batch of ``ticket`` is done: now, on this thread, if it
        is; else on the reaper's thread, before flush() returns."""
        with self._cv:
            if self._deleted < ticket:
                self._after.setdefault(ticket, []).append(fn)
                return
        _call(fn)

    def flush(self, timeout: float = 10.0) -> None:
        """Delete everything submitted so far (and run what waits on it) before
        returning."""
        with self._cv:
            target = self._started + (1 if self._pending else 0)
            if self._batches >= target:
                return
            self._flush_now = True
            self._start()
            self._cv.notify_all()
            end = time.monotonic() + timeout
            while self._batches < target:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the reaper did not finish its batch in time")
                self._cv.wait(left)

    @property
    def backlog(self) -> int:
        with self._cv:
            return self._pending

    _flush_now = False

    def _start(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(target=self._run, name="pynetlib-reaper",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        self._sock = NetlinkSocket(self._netns, timeout=60.0)
        try:
            while True:
                with self._cv:
                    if not wait_for_batch(self._cv, lambda: self._pending,
                                          max_delay=self.max_delay,
                                          max_backlog=self.max_backlog,
                                          stopping=lambda: self._stopping,
                                          hurry=lambda: self._flush_now):
                        return
                    self._flush_now = False
                    self._pending = 0
                    self._started += 1
                    ticket = self._started
                    blocked, self._blocked = self._blocked, []
                t0 = time.perf_counter()
                deleted = True
                for index in blocked:       # most are gone with their namespace already
                    try:
                        self._sock.retire_port(index, self.group)
                    except OSError as e:
                        if e.errno != errno.ENODEV:     # not in the group: not deleted
                            log.warning("reaper: retiring device %d: %s", index, e)
                            deleted = False
                try:
                    self._sock.link_delete_group(self.group)
                except OSError as e:
                    if e.errno not in (errno.ENODEV, errno.ENOENT):
                        log.warning("reaper: deleting link group %#x: %s", self.group, e)
                        deleted = False
                if blocked and deleted:
                    try:
                        self._unblock(blocked)      # type: ignore[misc]
                    except Exception as e:      # their set elements stay: reconcile
                        log.warning("reaper: unblocking %d ports: %s", len(blocked), e)
                self.last_batch_seconds = time.perf_counter() - t0
                self.busy_seconds += self.last_batch_seconds
                with self._cv:
                    late = [fn for t in sorted(self._after) if t <= ticket
                            for fn in self._after.pop(t)]
                    if deleted:
                        self._deleted = ticket
                        due = late
                    else:       # the devices may still be there: wait for the next batch
                        self._after.setdefault(ticket + 1, []).extend(late)
                        self._blocked[:0] = blocked
                        self._pending += 1
                        due = []
                for fn in due:
                    _call(fn)
                with self._cv:
                    self._batches = ticket
                    self.deleted_batches += 1
                    self._cv.notify_all()
        finally:
            self._sock.close()

    def close(self) -> None:
        """Delete what is pending and stop the thread."""
        if self._forked:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            t = self._thread
        if t is not None:
            t.join(30)
        with self._cv:
            self._thread = None


def _call(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("reaper: after a batch")
