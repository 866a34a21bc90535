"""Kernel-state oracle and child-process runner shared by the persistence, crash and
multi-process tests. Kernel state is read with iproute2 and nft, never through
pynetlib; the child is ``tests/_proc_ops.py``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OPS = os.path.join(HERE, "_proc_ops.py")
ROOT = os.path.dirname(HERE)


def run_op(state: str, *args: str, failpoints: str | None = None, kill_after: bool = False,
           timeout: float = 60) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYNETLIB_FAILPOINTS"}
    if failpoints:
        env["PYNETLIB_FAILPOINTS"] = failpoints
    argv = [sys.executable, OPS, state, *args] + (["--kill-after"] if kill_after else [])
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def op_ok(state: str, *args: str) -> dict:
    r = run_op(state, *args)
    assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def ip_j(*args: str, ns: str | None = None) -> list:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-j", *args]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return json.loads(out) if out.strip() else []


def owned_links(store_id: str) -> dict[str, dict[str, dict]]:
    """{"network": {nid: link}, "endpoint": {eid: link}} of links tagged with this store."""
    out: dict[str, dict[str, dict]] = {"network": {}, "endpoint": {}}
    for link in ip_j("-d", "link", "show"):
        alias = link.get("ifalias") or ""
        parts = alias.split(":")
        if len(parts) == 4 and parts[0] == "pynetlib" and parts[1] == store_id:
            out[parts[2]][parts[3]] = link
    return out


def link_names() -> set[str]:
    return {l["ifname"] for l in ip_j("link", "show")}


def owned_netns(store_id: str) -> set[str]:
    return {n for n in os.listdir("/run/netns") if n.startswith(f"pnl-{store_id}-")}


def nft_tags() -> dict[str, set[str]]:
    """{"network": {nid}, "endpoint": {eid}} named by pynetlib's nftables rule comments."""
    out: dict[str, set[str]] = {"network": set(), "endpoint": set()}
    r = subprocess.run(["nft", "-j", "list", "ruleset"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        return out
    for obj in json.loads(r.stdout).get("nftables", []):
        rule = obj.get("rule")
        if not rule:
            continue
        c = rule.get("comment", "")
        m = re.match(r"pynetlib n=([0-9a-f]+) e=([0-9a-f]+)$", c)
        if m:
            out["endpoint"].add(m.group(2))
            continue
        m = re.match(r"pynetlib n=([0-9a-f]+)$", c)
        if m:
            out["network"].add(m.group(1))
    return out


def ping(ns: str, ip: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c1", "-W1", ip],
                          capture_output=True).returncode == 0


def settled(check, timeout: float = 10.0):
    """``check()`` (which asserts), retried until it passes or ``timeout`` runs out. The
    kernel destroys a deleted namespace, and the veth inside it, asynchronously: the host
    end of a left endpoint may linger for a moment after leave returned (FM11)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def audit_settled(c, timeout: float = 10.0) -> list[str]:
    """``c.audit()`` once pending teardown is done (see :func:`settled`)."""
    flush = getattr(c, "flush_teardown", None)
    if flush is not None:
        flush()

    def check():
        problems = c.audit()
        assert problems == [], problems
        return problems

    try:
        return settled(check, timeout)
    except AssertionError:
        return c.audit()


def kernel_empty(store_id: str) -> None:
    assert owned_links(store_id) == {"network": {}, "endpoint": {}}
    assert owned_netns(store_id) == set()
