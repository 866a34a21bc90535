"""Reconcile and audit: the store against the kernel.

:func:`reconcile` runs when a controller opens a state directory, before it serves
anything. It finishes or rolls back every record a crash left unfinished, re-creates
what the records say should exist but the kernel lost (after a reboot, detected by the
boot id: containers are gone, networks are re-materialised), and removes kernel objects
that carry this store's tag but that no record names. Objects without pynetlib's tag, or
with another store's, are never touched; a dump that the kernel reports as interrupted
is retried, and a partial dump never leads to a deletion.

:func:`audit` changes nothing and lists every discrepancy.
"""

from __future__ import annotations

import logging
import os

from pynetlib import attachment
from pynetlib.errors import NotFoundError
from pynetlib.sandbox import NETNS_PREFIX, OWNED, remove_owned_namespace
from pynetlib.store import loads, owner_alive

log = logging.getLogger(__name__)
BOOT_ID = "/proc/sys/kernel/random/boot_id"


def boot_id() -> str:
    with open(BOOT_ID) as f:
        return f.read().strip()


def _driver(ctrl, ntype):
    return ctrl._drivers.get(ntype)


def reconcile(ctrl) -> list[str]:
    actions: list[str] = []
    store = ctrl.store
    now = boot_id()
    last = store.meta_get("boot_id")
    rebooted = last is not None and last != now
    if rebooted:
        actions.append("the host rebooted since the last run: containers are gone, "
                       "networks are re-created")
    c = store.read()

    # Another process may be working on the same state directory right now: what its
    # operations have in flight (an intent whose owner still runs) is left alone.
    # 1. networks whose create or delete was interrupted
    for nid, name, ntype, state in c.execute(
            "SELECT id, name, type, state FROM networks").fetchall():
        drv = _driver(ctrl, ntype)
        if drv is None:
            actions.append(f"network {name}: no driver {ntype!r} registered; left alone")
            continue
        if state != "ready" and not rebooted and owner_alive(_network_owner(c, nid)):
            continue
        if state == "creating":
            try:
                _quiet(drv.delete_network, nid)
            except Exception as e:      # e.g. a plugin that refuses: the controller starts
                actions.append(f"network {name}: an interrupted create could not be rolled "
                               f"back ({e}); the next reconcile tries again")
                continue
            with store.tx(durable=True) as tx:
                tx.execute("DELETE FROM networks WHERE id=?", (nid,))
                tx.execute("DELETE FROM kv WHERE owner='owner' AND key=?", ("network/" + nid,))
            actions.append(f"network {name}: rolled back an interrupted create")
        elif state == "deleting":
            has_eps = c.execute("SELECT 1 FROM endpoints WHERE network_id=? LIMIT 1",
                                (nid,)).fetchone()
            if has_eps:
                with store.tx(durable=True) as tx:
                    tx.execute("UPDATE networks SET state='ready' WHERE id=?", (nid,))
                    tx.execute("DELETE FROM kv WHERE owner='owner' AND key=?",
                               ("network/" + nid,))
                actions.append(f"network {name}: delete interrupted with endpoints; kept")
            else:
                drv.delete_network(nid)
                with store.tx(durable=True) as tx:
                    tx.execute("DELETE FROM networks WHERE id=?", (nid,))
                    tx.execute("DELETE FROM kv WHERE owner='owner' AND key=?",
                               ("network/" + nid,))
                actions.append(f"network {name}: finished an interrupted delete")

    # 2. networks the kernel lost (a reboot, or someone deleting a bridge)
    for net in ctrl.networks():
        ensure = getattr(net._driver, "ensure_network", None)
        if ensure is not None:
            try:
                actions += ensure(net.id)
            except NotFoundError as e:      # its driver record is gone: audit reports it
                actions.append(f"network {net.name}: not re-created: {e}")

    # 3. endpoints: unfinished joins and leaves, containers that are gone
    for (eid,) in c.execute("SELECT id FROM endpoints WHERE state != 'created'").fetchall():
        row = c.execute("SELECT network_id, state, container_id, join_info FROM endpoints "
                        "WHERE id=?", (eid,)).fetchone()
        if row is None or row[1] == "created":
            continue                    # another process finished with it meanwhile
        nid, state, cid, j = row
        record = loads(j, "join info") or {}
        if state != "attached" and not rebooted and owner_alive(record.get("owner")):
            continue                    # in flight in a process that still runs
        try:
            net = ctrl.network_by_id(nid)
            ep = net.endpoint_by_id(eid)
        except NotFoundError:
            continue
        srow = c.execute("SELECT key, kind, hosts_path, resolv_conf_path FROM sandboxes "
                         "WHERE container_id=?", (cid,)).fetchone()
        sb = ctrl._sandbox_handle(cid, *srow) if srow else None
        gone = rebooted or sb is None or (sb.kind != "default" and not os.path.exists(sb.key))
        if state in ("attaching", "detaching") or (state == "attached" and gone):
            for e in attachment.finish_leave(ctrl, net, ep, sb, record):
                actions.append(f"endpoint {ep.name}: leftover not removed: {e}")
            attachment.close_leave(ctrl, ep, cid, sb)
            what = {"attaching": "rolled back an interrupted join",
                    "detaching": "finished an interrupted leave"}.get(
                state, "its container is gone: left")
            actions.append(f"endpoint {ep.name}: {what}")

    # 4. sandbox records that no endpoint uses any more
    for cid, key, kind in c.execute("SELECT container_id, key, kind FROM sandboxes").fetchall():
        with store.tx() as tx:          # the check and the removal in one transaction
            used = tx.execute("SELECT 1 FROM endpoints WHERE container_id=? AND state IN "
                              "('attaching', 'attached', 'detaching') LIMIT 1",
                              (cid,)).fetchone()
            gone = used is None and tx.execute(
                "DELETE FROM sandboxes WHERE container_id=? AND key=?", (cid, key)).rowcount
        if gone:
            sb = ctrl._sandbox_handle(cid, key, kind)
            ctrl._drop_sandbox_handle(cid)
            sb.destroy()
            actions.append(f"sandbox {cid}: removed (no endpoint joined)")

    # 5. tagged kernel objects no record names; then the addresses that deleted
    # endpoints' devices held (those devices are gone now)
    actions += _remove_orphans(ctrl)
    bridge = ctrl._drivers.get("bridge")
    settle = getattr(bridge, "settle_quarantine", None)
    if settle is not None:
        actions += settle()
    # and the firewall's retired-port entries of the devices that went meanwhile
    prune = getattr(bridge, "prune_retired_ports", None)
    if prune is not None:
        actions += prune()
    store.meta_set("boot_id", now)
    for a in actions:
        log.info("reconcile: %s", a)
    return actions


def _quiet(fn, *args) -> None:
    try:
        fn(*args)
    except NotFoundError:
        pass


def _network_owner(c, nid: str) -> str | None:
    row = c.execute("SELECT value FROM kv WHERE owner='owner' AND key=?",
                    ("network/" + nid,)).fetchone()
    return loads(row[0], "network owner") if row else None


def _remove_orphans(ctrl) -> list[str]:
    """Kernel objects first, records second: a record always precedes its object, so
    an object made by a process still running after the dump has its record read."""
    actions = []
    c = ctrl.store.read()
    bridge = ctrl._drivers.get("bridge")
    owned = getattr(bridge, "owned_devices", None)
    devices = owned() if owned is not None else []      # a complete dump, or it raised
    try:
        names = os.listdir(ctrl.netns_dir)
    except FileNotFoundError:
        names = []
    attached = {r[0] for r in c.execute(
        "SELECT id FROM endpoints WHERE state IN ('attaching', 'attached', 'detaching')")}
    networks = {r[0] for r in c.execute("SELECT id FROM networks")}
    if devices:
        host = ctrl.host_socket()
        for kind, ident, name, index in devices:
            if (kind == "endpoint" and ident not in attached) or \
                    (kind == "network" and ident not in networks):
                try:
                    host.link_delete(index)
                    actions.append(f"removed orphaned {kind} device {name}")
                except OSError as e:
                    actions.append(f"orphaned {kind} device {name} not removed: {e}")
    keys = {r[0] for r in c.execute("SELECT key FROM sandboxes WHERE kind=?", (OWNED,))}
    prefix = f"{NETNS_PREFIX}{ctrl.store_id}-"
    for name in names:
        path = os.path.join(ctrl.netns_dir, name)
        if name.startswith(prefix) and path not in keys:
            try:
                remove_owned_namespace(path)
                actions.append(f"removed orphaned namespace {path}")
            except OSError as e:
                actions.append(f"orphaned namespace {path} not removed: {e}")
    return actions


def audit(ctrl) -> list[str]:
    problems: list[str] = []
    c = ctrl.store.read()
    for nid, name, state in c.execute("SELECT id, name, state FROM networks"):
        if state != "ready":
            problems.append(f"network {name}: unfinished ({state})")
    eps_by_net: dict[str, dict[str, str]] = {}
    seen: dict[tuple[str, str], str] = {}
    for eid, nid, state, cid, ifaces, j in c.execute(
            "SELECT id, network_id, state, container_id, interfaces, join_info FROM endpoints"):
        eps_by_net.setdefault(nid, {})[eid] = state
        if state not in ("created", "attached"):
            problems.append(f"endpoint {eid}: unfinished ({state})")
        for d in loads(ifaces, "endpoint interfaces") or []:
            for kind in ("v4", "v6", "mac"):
                v = d.get(kind)
                if not v:
                    continue
                k = (nid, f"{kind}:{v.split('/')[0]}")
                if k in seen:
                    problems.append(f"endpoints {seen[k]} and {eid} share {kind} {v} in "
                                    f"network {nid}")
                seen[k] = eid
        if state == "attached":
            key = (loads(j, "join info") or {}).get("sandbox_key")
            srow = c.execute("SELECT key, kind FROM sandboxes WHERE container_id=?",
                             (cid,)).fetchone()
            if srow is None:
                problems.append(f"endpoint {eid}: joined to {cid} but no sandbox record")
            elif srow[1] != "default" and not os.path.exists(srow[0]):
                problems.append(f"endpoint {eid}: sandbox namespace {srow[0]} is missing")
            elif key and key != srow[0]:
                problems.append(f"endpoint {eid}: joined to {key}, sandbox is {srow[0]}")
    for net in ctrl.networks():
        check = getattr(net._driver, "audit_network", None)
        if check is not None:
            problems += check(net.id, eps_by_net.get(net.id, {}))
        ipam_check = getattr(net._driver, "audit_addresses", None)
        if ipam_check is not None:
            problems += ipam_check(net.id)
    for cid, key, kind in c.execute("SELECT container_id, key, kind FROM sandboxes"):
        used = c.execute("SELECT 1 FROM endpoints WHERE container_id=? AND state IN "
                         "('attaching', 'attached', 'detaching') LIMIT 1", (cid,)).fetchone()
        if not used:
            problems.append(f"sandbox {cid}: recorded without a joined endpoint")
        if kind == OWNED and not os.path.exists(key):
            problems.append(f"sandbox {cid}: namespace {key} is missing")
    # tagged kernel objects without records
    attached = {r[0] for r in c.execute("SELECT id FROM endpoints WHERE state='attached'")}
    networks = {r[0] for r in c.execute("SELECT id FROM networks")}
    owned = getattr(ctrl._drivers.get("bridge"), "owned_devices", None)
    if owned is not None:
        # Devices waiting in the reap group are on their way out: not a discrepancy.
        for kind, ident, name, _ in owned(include_pending=False):
            if (kind == "endpoint" and ident not in attached) or \
                    (kind == "network" and ident not in networks):
                problems.append(f"device {name}: tagged as {kind} {ident} of this store, "
                                "but no record names it")
    keys = {r[0] for r in c.execute("SELECT key FROM sandboxes")}
    prefix = f"{NETNS_PREFIX}{ctrl.store_id}-"
    try:
        for name in os.listdir(ctrl.netns_dir):
            path = os.path.join(ctrl.netns_dir, name)
            if name.startswith(prefix) and path not in keys:
                problems.append(f"namespace {path}: ours, but no sandbox record names it")
    except FileNotFoundError:
        pass
    return problems
