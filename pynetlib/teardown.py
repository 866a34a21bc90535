"""Sandbox teardown off the caller's path.

When a container's last endpoint leaves, its records are final at once, but removing
its namespace (an unmount that waits out an RCU grace period) and its files is left to
a background thread, which removes whatever is pending in one go, within ``max_delay``
seconds or as soon as ``max_backlog`` sandboxes wait. A new sandbox for the same
container takes its pending teardown first (``take``), so the two never meet. A process
that dies with teardown pending leaves namespaces that no record names: reconcile
removes them.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Callable

from pynetlib import forksafe
from pynetlib.batching import wait_for_batch

log = logging.getLogger(__name__)


class DeferredTeardown:
    def __init__(self, *, max_delay: float = 0.05, max_backlog: int = 256) -> None:
        self.max_delay = max_delay
        self.max_backlog = max_backlog
        self._cv = threading.Condition()
        self._jobs: dict[str, Callable[[], None]] = {}
        self._running: dict[str, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.busy_seconds = 0.0     # time the thread spent tearing down (benchmarks)
        self._forked = False
        ref = weakref.ref(self)
        atexit.register(lambda: ref() is not None and ref().close())
        forksafe.track(self)

    def _after_fork_in_child(self) -> None:
        """In a child made by fork(): the parent's pending teardown is the parent's
        (run here, at exit, it could remove a namespace the parent has made again)."""
        self._cv = threading.Condition()
        self._jobs, self._running = {}, {}
        self._thread = None
        self._stopping = self._forked = True

    def submit(self, key: str, job: Callable[[], None]) -> None:
        """Run ``job`` soon, on the teardown thread (now, once closed). At most one
        teardown per key is pending: an earlier one is finished first."""
        self.take(key)
        with self._cv:
            if not self._stopping:
                self._jobs[key] = job
                self._start()
                self._cv.notify_all()            # starts the batch's max_delay clock
                return
        _run(key, job)

    def take(self, key: str) -> None:
        """Finish the teardown pending for ``key`` before returning (now, on this
        thread, if the teardown thread has not started it yet)."""
        with self._cv:
            job = self._jobs.pop(key, None)
            running = self._running.get(key)
        if job is not None:
            _run(key, job)
        elif running is not None:
            running.wait()

    @property
    def backlog(self) -> int:
        with self._cv:
            return len(self._jobs) + len(self._running)

    def flush(self, timeout: float = 30.0) -> None:
        """Finish everything submitted so far before returning."""
        with self._cv:
            keys = list(self._jobs) + list(self._running)
        end = time.monotonic() + timeout
        for k in keys:
            self.take(k)
            if time.monotonic() > end:
                raise TimeoutError("sandbox teardown did not finish in time")

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pynetlib-teardown",
                                            daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                if not wait_for_batch(self._cv, lambda: len(self._jobs),
                                      max_delay=self.max_delay,
                                      max_backlog=self.max_backlog,
                                      stopping=lambda: self._stopping):
                    return
                batch, self._jobs = self._jobs, {}
                events = {k: threading.Event() for k in batch}
                self._running.update(events)
            t0 = time.perf_counter()
            for key, job in batch.items():
                try:
                    _run(key, job)
                finally:
                    with self._cv:
                        self._running.pop(key, None)
                    events[key].set()
            self.busy_seconds += time.perf_counter() - t0

    def close(self) -> None:
        """Finish what is pending and stop the thread."""
        if self._forked:
            return
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
            t = self._thread
        if t is not None:
            t.join(60)
        with self._cv:
            self._thread = None
            left, self._jobs = self._jobs, {}
        for key, job in left.items():
            _run(key, job)


def _run(key: str, job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:
        log.exception("tearing down sandbox %s", key)
