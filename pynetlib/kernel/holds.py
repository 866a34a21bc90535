"""A kernel resource that threads share and one of them may close: the calls in flight
on it hold it, and closing waits for them.

Netlink sockets (a C struct) and namespace fds are used by many threads at once. Each
call that passes one to the kernel holds it for the call's length; closing takes it
from new callers at once, then waits for the holders before its owner frees it. Freed
or closed under a call, it would make the call read freed memory or fail with EBADF,
or (an fd number reused by another open meanwhile) act on another object.
"""

from __future__ import annotations

import threading
from typing import Any


class Holds:
    """The resource ``value`` and the calls holding it."""

    __slots__ = ("_value", "_users", "_idle", "_closed")

    def __init__(self, value: Any, closed: str) -> None:
        """``closed``: the message of the ValueError a call gets once it is taken."""
        self._value = value
        self._users = 0
        self._idle = threading.Condition(threading.Lock())
        self._closed = closed

    @property
    def value(self) -> Any:
        """The resource; None once taken."""
        return self._value

    def hold(self) -> "_Held":
        """``with holds.hold() as value:`` the resource, not freed before the block ends."""
        with self._idle:
            if self._value is None:
                raise ValueError(self._closed)
            self._users += 1
            return _Held(self, self._value)

    def take(self) -> Any:
        """Refuse new holds; returns the resource (None if taken already). The caller
        frees it after :meth:`wait_idle`."""
        with self._idle:
            value, self._value = self._value, None
            return value

    def wait_idle(self) -> None:
        """Until no call holds the resource (each ends within its own timeout)."""
        with self._idle:
            while self._users:
                self._idle.wait()

    def take_in_forked_child(self) -> Any:
        """:meth:`take` in a child made by fork(), where the holders (threads of the
        parent) no longer exist and one of them may have held the lock."""
        self._idle = threading.Condition(threading.Lock())
        self._users = 0
        value, self._value = self._value, None
        return value

    def _release(self) -> None:
        with self._idle:
            self._users -= 1
            if not self._users:
                self._idle.notify_all()


class _Held:
    __slots__ = ("_holds", "_value")

    def __init__(self, holds: Holds, value: Any) -> None:
        self._holds, self._value = holds, value

    def __enter__(self) -> Any:
        return self._value

    def __exit__(self, *exc) -> None:
        self._holds._release()
