"""What a child made by ``fork()`` does with its parent's pynetlib objects.

The child starts with a copy of everything the parent had open, and only the thread
that called ``fork()``. Left alone, that copy does harm:

- namespace fds and netlink sockets keep the parent's container namespaces, with their
  veths and addresses, alive for as long as the child lives (moby/moby#41136);
- SQLite connections must not be used across a fork: the child does not hold the
  locks the parent's connections hold, so a write through them can corrupt the store;
- a controller's exit handlers would run the parent's pending teardown in the child
  when it exits, and remove, say, the namespace of a container the parent has joined
  again since; the locks its threads held at the fork stay held forever.

So, right after ``fork()``, in the child only: every namespace handle and netlink
socket of the parent is closed (open them again in the child), and every store,
controller, teardown queue and reaper of the parent stops being usable: using it raises
:class:`~pynetlib.errors.BadRequestError`, and closing it (the exit handlers too)
changes nothing, neither the store nor the kernel. The parent is not affected. A child
that calls ``exec`` (``subprocess``) needs none of this: every fd pynetlib opens is
close-on-exec, and Python does not run these hooks for it.

An object takes part by calling :func:`track` with itself; it must have a method
``_after_fork_in_child()`` that takes no lock (a thread that no longer exists may hold
it) and raises nothing.
"""

from __future__ import annotations

import os
import weakref

_tracked: "weakref.WeakSet[object]" = weakref.WeakSet()


def track(obj: object) -> None:
    """Call ``obj._after_fork_in_child()`` in every child this process forks from now."""
    _tracked.add(obj)


def forked_message(what: str, pid: int) -> str:
    return (f"this {what} belongs to process {pid}, which forked this one: it cannot be "
            "used here; open a new one in this process")


def _in_child() -> None:
    for obj in list(_tracked):
        try:
            obj._after_fork_in_child()
        except Exception:           # noqa: BLE001 - nothing to report to, in a new child
            pass


os.register_at_fork(after_in_child=_in_child)
