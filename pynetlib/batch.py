"""Attach and detach many endpoints in one call: a runtime starting or stopping a pod.

``attach_many`` does for every :class:`AttachSpec` what ``create_endpoint`` + ``join``
do, with the store work of all of them in two transactions (the endpoints and the
join intents in one, the finished joins in the other) instead of three per endpoint.
It is all or nothing: if one attach fails, the ones done are left and every endpoint
of the batch is deleted again before the error propagates. ``detach_many`` does
``leave`` + ``delete`` for many endpoints the same way: the leave intents in one
transaction, the kernel side, the records and the deletes in another.

Several specs may name the same container (one sandbox, interfaces eth0, eth1, ...).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from pynetlib import attachment
from pynetlib.errors import BadRequestError, EndpointNameError
from pynetlib.names import check_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttachSpec:
    """One attach of a batch: the endpoint ``name`` on ``network`` (with the arguments
    of ``create_endpoint``), joined to ``container_id`` (with ``join``'s keyword
    arguments in ``join``)."""
    network: object
    name: str
    container_id: str
    options: dict | None = None
    ipv4: object = None
    ipv6: object = None
    mac: str | None = None
    join: dict = field(default_factory=dict)


def _container_locks(ctrl, cids):
    """The container lock stripes of ``cids``, each once, in one global order."""
    stack = contextlib.ExitStack()
    seen = {}
    for cid in cids:
        lock = ctrl._container_lock(cid)
        seen[id(lock)] = lock
    for _, lock in sorted(seen.items()):
        stack.enter_context(lock)
    return stack


def attach_many(ctrl, specs) -> list:
    specs = list(specs)
    ctrl._check_open()
    args = []
    names = set()
    for i, s in enumerate(specs):
        if not isinstance(s, AttachSpec):
            raise BadRequestError(f"attach_many: item {i} is not an AttachSpec")
        if getattr(s.network, "_ctrl", None) is not ctrl:
            raise BadRequestError(f"attach_many: item {i}: the network is not this "
                                  "controller's")
        check_name(s.name, "endpoint name")
        if (s.network.id, s.name) in names:
            raise EndpointNameError(s.name)
        names.add((s.network.id, s.name))
        if not isinstance(s.join, dict):
            raise BadRequestError(f"attach_many: item {i}: join must be a dict of join "
                                  "arguments")
        try:
            args.append(attachment.check_join(s.container_id, **s.join))
        except TypeError as e:
            raise BadRequestError(f"attach_many: item {i}: {e}") from None
    if not specs:
        return []
    try:
        with ctrl._call():
            return _attach(ctrl, specs, args)
    finally:
        attachment.refill_pool(ctrl)


def _attach(ctrl, specs, args) -> list:
    with _container_locks(ctrl, [a.container_id for a in args]), \
            contextlib.ExitStack() as ep_locks:
        with ctrl.store.tx():
            eps = [s.network.create_endpoint(s.name, s.options, ipv4=s.ipv4, ipv6=s.ipv6,
                                             mac=s.mac) for s in specs]
            for ep in eps:
                ep_locks.enter_context(ep._lock)
            steps = [attachment.begin_join(ep, a) for ep, a in zip(eps, args)]
        done = []
        try:
            for step in steps:
                # An earlier endpoint of this batch in the same sandbox may have taken
                # the default routes since the intents were written.
                for prev in done:
                    if prev.args.container_id == step.args.container_id:
                        owned = prev.done["record"]["gw_owner"]
                        step.plan["route4"] &= not owned[0]
                        step.plan["route6"] &= not owned[1]
                attachment.plumb_join(step)     # undoes its own step when it fails
                done.append(step)
        except BaseException:
            _undo_attach(ctrl, steps, done)
            raise
        with ctrl.store.tx() as c:
            for step in steps:
                attachment.commit_join(c, step)
    return eps


def _undo_attach(ctrl, steps, done) -> None:
    """Best effort, step by step: one undo that fails does not stop the others."""
    started = {id(s) for s in done}
    failed = next((s for s in steps if id(s) not in started), None)
    undo = []
    # Joins never started: their intents back to 'created' (before the done ones
    # leave, so a shared sandbox goes with the last of them).
    for s in steps:
        if id(s) not in started and s is not failed:
            undo.append((s, lambda s=s: attachment.close_leave(
                ctrl, s.ep, s.args.container_id, None, defer=False)))
    for s in reversed(done):
        def leave(s=s):
            attachment._unplumb(ctrl, s.ep._net, s.ep, s.sb, s.done["record"], raise_=False)
            attachment.close_leave(ctrl, s.ep, s.args.container_id, s.sb, defer=False)
        undo.append((s, leave))
    undo += [(s, lambda s=s: s.ep._net._delete_endpoint_locked(s.ep)) for s in steps]
    for s, fn in undo:
        try:
            fn()
        except Exception:
            log.exception("attach_many: undoing endpoint %s", s.ep.name)


def detach_many(ctrl, endpoints) -> None:
    eps = list(endpoints)
    ctrl._check_open()
    seen = set()
    for i, ep in enumerate(eps):
        if getattr(getattr(ep, "_net", None), "_ctrl", None) is not ctrl:
            raise BadRequestError(f"detach_many: item {i} is not an endpoint of this "
                                  "controller")
        if ep.id in seen:
            raise BadRequestError(f"detach_many: endpoint {ep.name} is named twice")
        seen.add(ep.id)
    if not eps:
        return
    with ctrl._call():
        _detach(ctrl, eps)


def _detach(ctrl, eps) -> None:
    eps.sort(key=lambda e: e.id)                      # one global lock order
    cids = {ep.id: ep.joined_container for ep in eps}
    errors: list[BaseException] = []
    with _container_locks(ctrl, [c for c in cids.values() if c]), \
            contextlib.ExitStack() as ep_locks:
        for ep in eps:
            ep_locks.enter_context(ep._lock)
        with ctrl.store.tx() as c:
            steps = [attachment.begin_leave(c, ep, cids[ep.id]) for ep in eps
                     if cids[ep.id]]
        for step in steps:
            attachment.unplug_leave(step)
        with ctrl.store.tx():
            for step in steps:
                try:
                    attachment.end_leave(step)
                except Exception as e:
                    errors.append(e)
        with ctrl.store.tx():
            for ep in eps:
                ep._net._delete_endpoint_locked(ep)
    if errors:
        raise errors[0]
