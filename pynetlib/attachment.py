"""Join and leave: the endpoint/sandbox state machine.

join:  created --(intent: attaching, sandbox record)--> kernel work --> attached
leave: attached --(intent: detaching)--> kernel work --> created (sandbox record gone
       with its last endpoint)

The intent is committed before the kernel is touched, with everything reconcile needs
to undo or finish the step after a crash: the sandbox key, the interface name chosen
inside the sandbox, and whether this endpoint provides the default routes.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from pynetlib import etchosts, resolvconf
from pynetlib.driverinfo import JoinInfo, PlumbTarget
from pynetlib.endpoint import ContainerData, interfaces_from_json
from pynetlib.errors import (BadRequestError, ForbiddenError, InvalidContainerIDError,
                             InvalidJoinError, NoContainerError, NoSuchEndpointError,
                             NoSuchNetworkError)
from pynetlib.failpoints import failpoint
from pynetlib.names import check_container_id
from pynetlib.sandbox import DEFAULT, EXTERNAL, OWNED, default_paths, sandbox_key
from pynetlib.store import dumps, loads, owner_token

log = logging.getLogger(__name__)
LIVE_STATES = ("attaching", "attached", "detaching")


# -- join ----------------------------------------------------------------------------------

@dataclass
class JoinArgs:
    """A join's checked arguments."""
    container_id: str
    hostname: str | None = None
    domainname: str | None = None
    hosts_path: str | None = None
    resolv_conf_path: str | None = None
    extra: list = field(default_factory=list)
    dns: tuple = ()
    dns_search: tuple = ()
    parents: list = field(default_factory=list)
    use_default_sandbox: bool = False
    netns_path: str | None = None
    generic: dict = field(default_factory=dict)
    move_interfaces: bool = True


def check_join(container_id: str, *, hostname=None, domainname=None, hosts_path=None,
               resolv_conf_path=None, extra_hosts=(), dns=(), dns_search=(),
               parent_updates=(), use_default_sandbox=False, netns_path=None,
               generic=None, move_interfaces=True) -> JoinArgs:
    """Every check of a join's arguments, before anything changes."""
    check_container_id(container_id)
    if not isinstance(move_interfaces, bool):
        raise BadRequestError("move_interfaces must be a bool")
    if generic is not None and not isinstance(generic, dict):
        raise BadRequestError("generic join options must be a dict")
    extra = _records(extra_hosts, "extra_hosts")
    parents = _parent_updates(parent_updates)
    for p in (hosts_path, resolv_conf_path):
        if p is not None and (not isinstance(p, str) or not os.path.isabs(p)):
            raise BadRequestError(f"invalid file path {p!r}: an absolute path")
    if hostname is not None:
        etchosts.check_hostname(hostname)
    if domainname is not None:
        etchosts.check_hostname(domainname, "domain name")
    for d in dns:
        etchosts.check_ip(d, "DNS server")
    return JoinArgs(container_id, hostname, domainname, hosts_path, resolv_conf_path, extra,
                    tuple(dns), tuple(dns_search), parents, use_default_sandbox, netns_path,
                    dict(generic or {}), move_interfaces)


def join(ep, container_id: str, **kwargs) -> ContainerData:
    args = check_join(container_id, **kwargs)
    ctrl = ep._net._ctrl
    try:
        with ctrl._call(), ep._lock, ctrl._container_lock(container_id):
            step = begin_join(ep, args)
            plumb_join(step)
            with ctrl.store.tx() as c:
                commit_join(c, step)
            return ContainerData(step.sb.key, tuple(
                tuple(h) for h in step.done["record"].get("handed", [])))
    finally:
        refill_pool(ctrl)


def refill_pool(ctrl) -> None:
    """Let the warm pool replace what this call took: behind the call, not beside it
    (pynetlib/netnspool.py)."""
    if ctrl._netns_pool is not None:
        ctrl._netns_pool.refill()


@dataclass
class JoinStep:
    """One join on its way: committed intent, then kernel work, then 'attached'."""
    ep: object
    args: JoinArgs
    plan: dict
    new_sandbox: bool
    sb: object = None
    done: dict | None = None
    paths: tuple = ()
    record_paths: tuple = (None, None)      # the sandbox record's files


def begin_join(ep, args: JoinArgs) -> JoinStep:
    """Commit the intent (inside the caller's transaction, if any). Needs the endpoint's
    and the container's locks."""
    net = ep._net
    ctrl = net._ctrl
    key, kind = sandbox_key(ctrl.store_id, args.container_id, ctrl.netns_dir,
                            args.use_default_sandbox, args.netns_path)
    plan, new_sandbox, paths = _intent(ctrl, net, ep, args, key, kind)
    return JoinStep(ep, args, plan, new_sandbox, record_paths=paths)


def plumb_join(step: JoinStep) -> None:
    """The kernel work and the container's files. On failure everything of this join
    is undone (records included) before the exception propagates."""
    ep, a, plan = step.ep, step.args, step.plan
    net = ep._net
    ctrl = net._ctrl
    cid = a.container_id
    if step.new_sandbox:        # its record names the files: they are written below
        sb = ctrl._sandbox_handle(cid, plan["sandbox_key"], plan["kind"])
    else:                       # the container's files exist: extend them
        sb = ctrl._sandbox_handle(cid, plan["sandbox_key"], plan["kind"],
                                  *step.record_paths, keep_paths=True)
    step.sb = sb
    done = None
    try:
        failpoint("endpoint.join.before_kernel")
        if step.new_sandbox:
            ctrl._teardown.take(cid)             # the container's previous sandbox
            if plan["kind"] == OWNED:
                sb.create_namespace(ctrl.netns_dir)
        done = _plumb(ctrl, net, ep, sb, plan, dict(a.generic))
        step.paths = _write_files(ep, sb, done["jinfo"], step.new_sandbox, a.hostname,
                                  a.domainname, a.hosts_path, a.resolv_conf_path, a.extra,
                                  a.dns, a.dns_search)
        for eid, name, ip in a.parents:
            ctrl._update_parent_hosts(eid, name, ip)
        failpoint("endpoint.join.after_kernel")
        sb.hosts_path, sb.resolv_conf_path = step.paths
    except BaseException:
        if done is not None:
            _unplumb(ctrl, net, ep, sb, done["record"], raise_=False)
        _abort_join(ctrl, ep, sb, cid, step.new_sandbox)
        raise
    step.done = done


def commit_join(c, step: JoinStep) -> None:
    """Record the join as done (in the caller's transaction)."""
    cid = step.args.container_id
    c.execute("UPDATE endpoints SET state='attached', join_info=? WHERE id=?",
              (dumps(step.done["record"]), step.ep.id))
    if tuple(step.paths) != tuple(step.record_paths):
        c.execute("UPDATE sandboxes SET hosts_path=?, resolv_conf_path=? WHERE "
                  "container_id=?", (step.paths[0], step.paths[1], cid))


def _intent(ctrl, net, ep, args: JoinArgs, key, kind):
    """Commit 'attaching' with the plan; returns (plan, whether the sandbox is new, the
    sandbox record's (hosts path, resolv.conf path))."""
    cid, use_default, netns_path = args.container_id, args.use_default_sandbox, args.netns_path
    move = args.move_interfaces
    with ctrl.store.tx() as c:
        row = c.execute("SELECT state, container_id, interfaces FROM endpoints WHERE id=?",
                        (ep.id,)).fetchone()
        if row is None:
            raise NoSuchEndpointError(ep.id)
        if row[0] != "created":
            raise InvalidJoinError()
        nrow = c.execute("SELECT state FROM networks WHERE id=?", (net.id,)).fetchone()
        if nrow is None or nrow[0] != "ready":
            raise NoSuchNetworkError(net.name)
        sb = c.execute("SELECT key, kind, hosts_path, resolv_conf_path FROM sandboxes WHERE "
                       "container_id=?", (cid,)).fetchone()
        new = sb is None
        if new:         # the files the first join writes (_write_files), known already
            hp, rp = default_paths(ctrl._files_root, cid)
            paths = (args.hosts_path or hp, args.resolv_conf_path or rp)
            c.execute("INSERT INTO sandboxes (container_id, key, kind, hosts_path, "
                      "resolv_conf_path) VALUES (?, ?, ?, ?, ?)", (cid, key, kind, *paths))
        else:
            paths = (sb[2], sb[3])
            want = DEFAULT if use_default else EXTERNAL if netns_path else OWNED
            if sb[1] != want or (want == EXTERNAL and sb[0] != key):
                raise BadRequestError(f"container {cid} already has sandbox {sb[0]}; a join "
                                      "cannot ask for another")
            key, kind = sb[0], sb[1]
        used, gw4, gw6 = set(), False, False
        for (j,) in () if new else c.execute("SELECT join_info FROM endpoints WHERE container_id=? AND "
                              "state IN ('attaching', 'attached', 'detaching') AND id != ?",
                              (cid, ep.id)):
            info = loads(j, "join info") or {}
            used.update(info.get("ifnames", []))
            gw4 |= bool(info.get("gw_owner", [False, False])[0])
            gw6 |= bool(info.get("gw_owner", [False, False])[1])
        ifname = None
        if ep._ifaces is None:
            ep._ifaces = interfaces_from_json(row[2])
        if move and kind != DEFAULT and ep._ifaces:
            i = 0
            while f"eth{i}" in used:
                i += 1
            ifname = f"eth{i}"
        plan = {"sandbox_key": key, "kind": kind, "ifname": ifname, "used": sorted(used),
                "route4": not gw4, "route6": not gw6, "ifnames": [ifname] if ifname else [],
                "owner": owner_token(), "move": move}
        c.execute("UPDATE endpoints SET state='attaching', container_id=?, join_info=? "
                  "WHERE id=?", (cid, dumps(plan), ep.id))
    return plan, new, paths


def _plumb(ctrl, net, ep, sb, plan, generic) -> dict:
    """The driver's join and the controller's share of the plumbing."""
    ifaces = ep._interfaces()
    by_id = {i.id(): i for i in ifaces}
    target = None
    if plan["ifname"]:
        target = PlumbTarget(sb.netns, plan["ifname"], plan["route4"], plan["route6"],
                             sb.lo_pending)
    jinfo = JoinInfo(ifaces, target)
    driver = net._driver
    driver.join(net.id, ep.id, sb.key, jinfo, generic)
    moved: list[tuple[str, str]] = []
    handed: list[tuple[str, str]] = []
    used = set(plan["used"])
    ifnames = [target.ifname] if target else []
    try:
        plumbed = [n for n in jinfo.interface_names() if n.plumbed]
        if plumbed and (len(plumbed) > 1 or target is None or
                        plumbed[0].dst_name != target.ifname):
            raise BadRequestError("a driver plumbs at most one interface per join, under "
                                  "the name its plumb target gives")
        for n in jinfo.interface_names():
            if n.plumbed or n.src_name is None:
                continue
            if not plan.get("move", True):
                handed.append((n.src_name, n.dst_name))     # the caller moves it
                continue
            if n.dst_name in used:
                raise ForbiddenError(f"interface {n.dst_name} already exists in sandbox "
                                     f"{sb.key}")
            if n.dst_name not in ifnames:
                ifnames.append(n.dst_name)
            ctrl._move_into_sandbox(sb, n.src_name, n.dst_name, by_id[n.id()])
            moved.append((n.src_name, n.dst_name))
        gw_owner = _gateways(ctrl, sb, jinfo, target if plumbed else None, moved, plan)
    except BaseException:
        for src, dst in reversed(moved):
            try:
                ctrl._move_out_of_sandbox(sb, src, dst)
            except Exception:
                log.exception("moving %s out of %s", dst, sb.key)
        driver.leave(net.id, ep.id)
        raise
    if sb.lo_pending:
        if not (target is not None and any(n.plumbed for n in jinfo.interface_names())):
            sb.netns.socket().link_set(1, up=True)      # lo: no driver pipeline did it
        sb.lo_pending = False
    placed = {n.dst_name for n in jinfo.interface_names() if n.plumbed or n.src_name}
    ifnames = [n for n in ifnames if n in placed]
    record = {"sandbox_key": sb.key, "kind": sb.kind, "ifnames": ifnames,
              "moved": [list(m) for m in moved], "handed": [list(h) for h in handed],
              "gw_owner": list(gw_owner),
              "gateway": str(jinfo.gateway) if jinfo.gateway else None,
              "gateway6": str(jinfo.gateway_ipv6) if jinfo.gateway_ipv6 else None}
    return {"jinfo": jinfo, "record": record}


def _gateways(ctrl, sb, jinfo, target, moved, plan) -> tuple[bool, bool]:
    """Default routes come from the first endpoint of the sandbox that offers them:
    either the driver installed them while plumbing (``target``), or the controller
    adds them on the first device it moved in."""
    if sb.kind == DEFAULT:
        return False, False
    own = []
    for gw, free, done in ((jinfo.gateway, plan["route4"], target and target.route4),
                           (jinfo.gateway_ipv6, plan["route6"], target and target.route6)):
        if gw is None or not free or not (done or moved):
            own.append(False)
            continue
        if not done:
            ctrl._add_default_route(sb, gw, moved[0][1])
        own.append(True)
    return own[0], own[1]


def _write_files(ep, sb, jinfo, first, hostname, domainname, hosts_path, resolv_conf_path,
                 extra, dns, dns_search) -> tuple[str, str]:
    ifaces = ep._interfaces()
    v4 = next((i.address() for i in ifaces if i.address() is not None), None)
    v6 = any(i.address_ipv6() is not None for i in ifaces)
    hp = hosts_path or sb.hosts_path or sb.default_hosts
    rp = resolv_conf_path or sb.resolv_conf_path or sb.default_resolv
    for user_path in (hosts_path, resolv_conf_path):
        if user_path:
            os.makedirs(os.path.dirname(user_path), exist_ok=True)
    if jinfo.hosts_path:                # e.g. the host driver: /etc/hosts verbatim
        with open(jinfo.hosts_path) as f:
            content = f.read()
        with etchosts.path_lock(hp):
            etchosts.write_atomic(hp, content)
    elif first or sb.hosts_path is None:
        etchosts.build(hp, str(v4.ip) if v4 else None, hostname, domainname, extra,
                       fresh=first and hosts_path is None)
    elif v4 is not None and hostname:
        etchosts.add(hp, [etchosts.Record(hostname, str(v4.ip))])
    src = jinfo.resolv_conf_path or resolvconf.HOST_RESOLV_CONF
    if first or sb.resolv_conf_path is None or dns or dns_search:
        resolvconf.build(rp, dns=dns, dns_search=dns_search, ipv6=v6, host_path=src,
                         fresh=first and resolv_conf_path is None)
    return hp, rp


def _abort_join(ctrl, ep, sb, cid, new_sandbox) -> None:
    """Undo a failed join's records; the kernel work was undone by the failing step."""
    try:
        close_leave(ctrl, ep, cid, sb, defer=False)     # nothing left once join raises
    except Exception:
        log.exception("removing the sandbox of %s", cid)


# -- leave ---------------------------------------------------------------------------------

def leave(ep, container_id: str) -> None:
    if not isinstance(container_id, str) or not container_id:
        raise InvalidContainerIDError(container_id, "a container id cannot be empty")
    ctrl = ep._net._ctrl
    with ctrl._call(), ep._lock, ctrl._container_lock(container_id):
        with ctrl.store.tx() as c:
            step = begin_leave(c, ep, container_id)
        unplug_leave(step)
        end_leave(step)


@dataclass
class LeaveStep:
    ep: object
    cid: str
    record: dict
    sb: object
    last: bool
    errors: list = field(default_factory=list)


def begin_leave(c, ep, container_id: str) -> LeaveStep:
    """Commit 'detaching' (in the caller's transaction). Needs the endpoint's and the
    container's locks."""
    row = c.execute("SELECT state, container_id, join_info FROM endpoints WHERE id=?",
                    (ep.id,)).fetchone()
    if row is None:
        raise NoSuchEndpointError(ep.id)
    state, cid, j = row
    if state == "created":
        raise NoContainerError()
    if cid != container_id:
        raise InvalidContainerIDError(container_id, f"not the container joined to "
                                                    f"endpoint {ep.name}")
    if state != "attached":
        raise ForbiddenError(f"endpoint {ep.name} is {state}; reconcile finishes it")
    record = loads(j, "join info") or {}
    record["owner"] = owner_token()       # reconcile elsewhere leaves it alone
    c.execute("UPDATE endpoints SET state='detaching', join_info=? WHERE id=?",
              (dumps(record), ep.id))
    srow = c.execute("SELECT key, kind, hosts_path, resolv_conf_path FROM sandboxes "
                     "WHERE container_id=?", (cid,)).fetchone()
    last = c.execute("SELECT COUNT(*) FROM endpoints WHERE container_id=? AND state "
                     "IN ('attaching', 'attached', 'detaching') AND id != ?",
                     (cid, ep.id)).fetchone()[0] == 0
    sb = ep._net._ctrl._sandbox_handle(cid, *srow) if srow else None
    return LeaveStep(ep, cid, record, sb, last)


def unplug_leave(step: LeaveStep) -> None:
    """The kernel side, best effort (errors are kept for end_leave to raise)."""
    ep, sb, record = step.ep, step.sb, step.record
    net = ep._net
    failpoint("endpoint.leave.before_kernel")
    if step.last and sb is not None and sb.kind == OWNED and not record.get("moved"):
        # The container's namespace goes (on the teardown thread), and the kernel
        # destroys the veth pairs inside with it, asynchronously and in batches.
        sb.destroy(defer=True)
    step.errors += finish_leave(net._ctrl, net, ep, sb, record)
    failpoint("endpoint.leave.after_kernel")


def end_leave(step: LeaveStep) -> None:
    """The records back to 'created'; raises the first error of the kernel side."""
    ctrl = step.ep._net._ctrl
    close_leave(ctrl, step.ep, step.cid, step.sb)
    if step.errors:
        raise step.errors[0]


def finish_leave(ctrl, net, ep, sb, record) -> list[BaseException]:
    """The kernel side of a leave, best effort: keeps going and returns the errors."""
    errors: list[BaseException] = []
    if sb is not None:
        errors += _unplumb(ctrl, net, ep, sb, record, raise_=False)
    else:
        try:
            net._driver.leave(net.id, ep.id)
        except Exception as e:
            errors.append(e)
    return errors


def close_leave(ctrl, ep, cid, sb, *, defer: bool = True) -> None:
    """The endpoint's records back to 'created'; the sandbox goes with its last endpoint
    (its record, then the namespace and files: on the teardown thread if ``defer``).
    Ends both a leave and a failed join."""
    with ctrl.store.tx() as c:
        c.execute("UPDATE endpoints SET state='created', container_id=NULL, join_info=NULL "
                  "WHERE id=?", (ep.id,))
        others = c.execute("SELECT COUNT(*) FROM endpoints WHERE container_id=? AND state IN "
                           "('attaching', 'attached', 'detaching')", (cid,)).fetchone()[0]
        if others == 0:
            c.execute("DELETE FROM sandboxes WHERE container_id=?", (cid,))
    if others == 0 and sb is not None:
        ctrl._drop_sandbox_handle(cid)
        sb.destroy(defer=defer)


def _unplumb(ctrl, net, ep, sb, record, raise_=True) -> list[BaseException]:
    errors: list[BaseException] = []
    for src, dst in reversed(record.get("moved", [])):
        try:
            ctrl._move_out_of_sandbox(sb, src, dst)
        except Exception as e:
            errors.append(e)
    try:
        net._driver.leave(net.id, ep.id)
    except Exception as e:
        errors.append(e)
    if raise_ and errors:
        raise errors[0]
    return errors


# -- input checks --------------------------------------------------------------------------

def _records(items, what) -> list[etchosts.Record]:
    out = []
    try:
        for name, ip in items:
            etchosts.check_hostname(name, f"{what} name")
            out.append(etchosts.Record(name, etchosts.check_ip(ip, f"{what} address")))
    except (TypeError, ValueError):
        raise BadRequestError(f"{what} must be (name, ip) pairs") from None
    return out


def _parent_updates(items) -> list[tuple[str, str, str]]:
    out = []
    try:
        for eid, name, ip in items:
            if not isinstance(eid, str) or not eid:
                raise BadRequestError(f"invalid parent endpoint id {eid!r}")
            etchosts.check_hostname(name)
            out.append((eid, name, etchosts.check_ip(ip)))
    except (TypeError, ValueError):
        raise BadRequestError("parent_updates must be (endpoint id, name, ip) triples") \
            from None
    return out


