"""Fault injection: named failpoints in the attach, detach, network-create and
network-delete paths, in Python and in the C library.

Armed by the environment variable ``PYNETLIB_FAILPOINTS`` when this module is imported,
or with :func:`arm`. A spec is a ``;``-separated list of ``name=action``::

    PYNETLIB_FAILPOINTS="endpoint.join.after_kernel=kill;link.create=2+errno:EBUSY*1"

Actions:

- ``kill``: SIGKILL the own process on the spot (nothing is flushed or cleaned up).
- ``raise``: raise :class:`FailpointError` (Python failpoints only).
- ``errno:NAME``: the netlink or system call fails with ``-NAME`` (C failpoints only);
  NAME is one of :data:`ERRNOS`.
- ``off``: disarm that one failpoint.

An action may carry a skip prefix ``N+`` (the first N hits pass, e.g. ``3+kill`` fires
from the 4th hit on) and a count suffix ``*N`` (fire on N hits only; default: every
hit). Hits are counted from the moment the failpoint is armed. A spec that does not
parse, names an unknown failpoint, or pairs an action with the wrong kind of failpoint
raises :class:`ValueError` naming the bad part, at arming time (so a bad environment
variable fails the import): never silently ignored.

The C failpoints (:data:`C_NAMES`) are armed in the C library through cffi; their checks
cost one relaxed atomic load while nothing is armed. :func:`failpoint` costs a dict
lookup while its name is not armed.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import signal
import threading
from dataclasses import dataclass

from pynetlib.errors import InternalError

ENV = "PYNETLIB_FAILPOINTS"

PYTHON_NAMES: tuple[str, ...] = (
    "network.create.before_kernel",
    "network.create.after_kernel",
    "network.delete.before_kernel",
    "network.delete.after_kernel",
    "endpoint.join.before_kernel",
    "endpoint.join.after_kernel",
    "endpoint.leave.before_kernel",
    "endpoint.leave.after_kernel",
    "endpoint.create.after_store",
    "endpoint.delete.before_store",
)

# Must match the table in csrc/failpoint.c.
C_NAMES: tuple[str, ...] = (
    "nl.send",
    "link.create",
    "link.delete",
    "addr.add",
    "route.add",
    "netns.create",
    "netns.delete",
    "attach.veth",
    "attach.plumb",
    "nft.setelem",
)

ERRNOS: dict[str, int] = {
    name: getattr(_errno, name)
    for name in ("EEXIST", "EBUSY", "ENOBUFS", "EINTR", "ENOMEM", "ENODEV", "EPERM",
                 "ETIMEDOUT")
}

# C action codes (pnl_failpoint.h).
_C_OFF, _C_ERRNO, _C_KILL = 0, 1, 2


class FailpointError(InternalError):
    """Raised by a Python failpoint armed with ``raise``."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"failpoint {name} fired")

    def __reduce__(self):
        return (type(self), (self.name,))


@dataclass(frozen=True)
class Spec:
    """One parsed ``name=action``."""

    name: str
    action: str            # "kill", "raise", "errno", "off"
    errno: int = 0         # for action "errno"
    skip: int = 0
    count: int = 0         # 0: every hit after the skipped ones

    def __str__(self) -> str:
        if self.action == "off":
            return "off"
        act = f"errno:{_errno.errorcode[self.errno]}" if self.action == "errno" else self.action
        return (f"{self.skip}+" if self.skip else "") + act + (f"*{self.count}" if self.count else "")


class _Armed:
    """A Python failpoint's arming and its hit counter."""

    __slots__ = ("spec", "hits", "lock")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.hits = 0
        self.lock = threading.Lock()

    def fires(self) -> bool:
        with self.lock:
            self.hits += 1
            hit = self.hits
        s = self.spec
        return hit > s.skip and (s.count == 0 or hit <= s.skip + s.count)


# name -> _Armed, Python failpoints only. failpoint() does one .get() on it.
_PY: dict[str, _Armed] = {}
# name -> Spec, C failpoints armed from here (for armed()).
_C: dict[str, Spec] = {}
_lock = threading.Lock()

_ACTION_RE = re.compile(r"^(?:(\d+)\+)?([a-z]+)(?::([A-Za-z0-9_]*))?(?:\*(\d+))?\Z")


def names() -> list[str]:
    """Every failpoint name: the Python ones, then the C ones."""
    return list(PYTHON_NAMES) + list(C_NAMES)


def parse(spec: str) -> list[Spec]:
    """Parse a spec (see the module docstring); ValueError names the bad part."""
    if not isinstance(spec, str):
        raise ValueError(f"failpoint spec must be a string, not {type(spec).__name__}")
    out: list[Spec] = []
    seen: set[str] = set()
    for raw in spec.split(";"):
        part = raw.strip()
        if not part:
            continue
        name, sep, action = part.partition("=")
        name, action = name.strip(), action.strip()
        if not sep or not name or not action:
            raise ValueError(f"failpoint spec {part!r}: expected name=action")
        is_py, is_c = name in PYTHON_NAMES, name in C_NAMES
        if not (is_py or is_c):
            raise ValueError(f"failpoint spec {part!r}: unknown failpoint {name!r} "
                             f"(known: {', '.join(names())})")
        if name in seen:
            raise ValueError(f"failpoint spec {part!r}: {name!r} is armed twice")
        seen.add(name)
        m = _ACTION_RE.match(action)
        if m is None:
            raise ValueError(f"failpoint spec {part!r}: bad action {action!r} "
                             "(expected [N+]kill|raise|errno:NAME|off[*N])")
        skip_s, verb, arg, count_s = m.groups()
        skip = int(skip_s) if skip_s is not None else 0
        count = int(count_s) if count_s is not None else 0
        if count_s is not None and count == 0:
            raise ValueError(f"failpoint spec {part!r}: count *0 would never fire")
        if verb != "errno" and arg is not None:
            raise ValueError(f"failpoint spec {part!r}: action {verb!r} takes no argument")
        err = 0
        if verb == "errno":
            if not arg:
                raise ValueError(f"failpoint spec {part!r}: errno needs a name, "
                                 f"e.g. errno:EBUSY (one of {', '.join(ERRNOS)})")
            if arg not in ERRNOS:
                raise ValueError(f"failpoint spec {part!r}: errno {arg!r} is not one of "
                                 f"{', '.join(ERRNOS)}")
            if not is_c:
                raise ValueError(f"failpoint spec {part!r}: errno:{arg} is only for C "
                                 f"failpoints ({', '.join(C_NAMES)})")
            err = ERRNOS[arg]
        elif verb == "raise":
            if is_c:
                raise ValueError(f"failpoint spec {part!r}: raise is only for Python "
                                 "failpoints (a C failpoint takes kill or errno:NAME)")
        elif verb == "off":
            if skip_s is not None or count_s is not None:
                raise ValueError(f"failpoint spec {part!r}: off takes no skip or count")
        elif verb != "kill":
            raise ValueError(f"failpoint spec {part!r}: unknown action {verb!r} "
                             "(expected kill, raise, errno:NAME or off)")
        out.append(Spec(name, verb, err, skip, count))
    return out


def _c_arm(s: Spec) -> None:
    from pynetlib._ffi import lib

    action = {"off": _C_OFF, "errno": _C_ERRNO, "kill": _C_KILL}[s.action]
    rc = lib.pnl_failpoint_arm(s.name.encode(), action, s.errno, s.skip, s.count)
    if rc < 0:  # the name tables of C and Python disagree: a build problem
        raise ValueError(f"failpoint {s.name!r}: the C library refused it "
                         f"({os.strerror(-rc)})")


def arm(spec: str) -> None:
    """Arm every failpoint in ``spec`` (all or none: the whole spec is parsed first).
    Failpoints not named in ``spec`` keep their arming; a named one is re-armed with its
    hit count restarted."""
    specs = parse(spec)
    with _lock:
        for s in specs:
            if s.name in C_NAMES:
                _c_arm(s)
                if s.action == "off":
                    _C.pop(s.name, None)
                else:
                    _C[s.name] = s
            elif s.action == "off":
                _PY.pop(s.name, None)
            else:
                _PY[s.name] = _Armed(s)


def disarm_all() -> None:
    """Disarm every failpoint, Python and C."""
    from pynetlib._ffi import lib

    with _lock:
        _PY.clear()
        _C.clear()
        lib.pnl_failpoint_disarm_all()


def armed() -> dict[str, str]:
    """The armed failpoints: name -> action in spec form (e.g. ``"2+errno:EBUSY*1"``)."""
    with _lock:
        out = {name: str(a.spec) for name, a in _PY.items()}
        out.update((name, str(s)) for name, s in _C.items())
    return out


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    os._exit(128 + signal.SIGKILL)  # not reached


def _fire(a: _Armed) -> None:
    if not a.fires():
        return
    if a.spec.action == "kill":
        _kill()
    raise FailpointError(a.spec.name)


def failpoint(name: str) -> None:
    """A Python failpoint: nothing unless ``name`` is armed; then per its action SIGKILL
    the process or raise :class:`FailpointError`."""
    a = _PY.get(name)
    if a is not None:
        _fire(a)


def _arm_from_env() -> None:
    spec = os.environ.get(ENV)
    if spec:
        try:
            arm(spec)
        except ValueError as e:
            raise ValueError(f"{ENV}: {e}") from None


_arm_from_env()

__all__ = ["ENV", "PYTHON_NAMES", "C_NAMES", "ERRNOS", "FailpointError", "Spec", "names",
           "parse", "arm", "disarm_all", "armed", "failpoint"]
