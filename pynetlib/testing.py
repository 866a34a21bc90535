"""Helpers for test and benchmark runs that create kernel objects.

:func:`isolate_pytest_run` re-executes the running pytest once under
``unshare --net --mount`` with private mount propagation and mounts a private tmpfs on
``/run/netns``: everything the run creates (links, addresses, routes, named namespaces,
nftables rules) lives in namespaces the run made itself, never the machine's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

SANDBOX_ENV = "PYNETLIB_TEST_SANDBOX"
_PARENT_ENV = "PYNETLIB_TEST_PARENT_NETNS"
_READY_ENV = "PYNETLIB_TEST_SANDBOX_READY"


def netns_inode() -> int:
    """The inode of the calling thread's network namespace."""
    return os.stat("/proc/thread-self/ns/net").st_ino


def in_sandbox() -> bool:
    return os.environ.get(SANDBOX_ENV) == "1"


def _reexec() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise RuntimeError("an isolated run needs util-linux's unshare")
    env = dict(os.environ, **{SANDBOX_ENV: "1", _PARENT_ENV: str(netns_inode())})
    argv = [unshare, "--net", "--mount", "--propagation", "private", "--",
            sys.executable, "-m", "pytest", *sys.argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(unshare, argv, env)


def _prepare_sandbox() -> None:
    if str(netns_inode()) == os.environ.get(_PARENT_ENV, ""):
        raise RuntimeError("the run is not isolated: it shares its caller's network namespace")
    if os.environ.get(_READY_ENV):
        return
    os.makedirs("/run/netns", exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "pynetlib-test", "/run/netns"],
                   check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    os.environ[_READY_ENV] = "1"


def isolate_pytest_run(config) -> None:
    """Call from ``pytest_configure``: as root, re-exec into private namespaces."""
    if in_sandbox():
        _prepare_sandbox()
        return
    if os.geteuid() != 0:
        return  # kernel tests skip themselves
    # pytest captures fds 1 and 2 already: give the real ones back before exec.
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(in_=True)
    _reexec()
