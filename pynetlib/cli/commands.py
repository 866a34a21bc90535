"""One function per command: read the parsed arguments, call the backend, print.

Each returns the exit code. Errors propagate as exceptions; ``app`` turns them into one
line on stderr and the exit code of their category.
"""

from __future__ import annotations

import argparse
import sys

from pynetlib.cli import output, values
from pynetlib.cli.backend import Backend, resolve_endpoint, resolve_network
from pynetlib.cli.failures import OK, OTHER, exit_code, message


def _json(args: argparse.Namespace) -> bool:
    return args.format == "json"


def _each(args, refs: list[str], act) -> tuple[int, list]:
    """Run ``act`` on every reference; report each failure and go on (first code wins)."""
    code, done = OK, []
    for ref in refs:
        try:
            done.append(act(ref))
        except Exception as e:          # noqa: BLE001 - reported per item, like docker
            if args.debug:
                raise
            sys.stderr.write(message(e, args.command_path) + "\n")
            code = code or exit_code(e)
    return code, done


# -- networks ---------------------------------------------------------------------------

def network_create(args, backend: Backend) -> int:
    body = {"name": args.name, "network_type": args.driver,
            "driver_opts": values.driver_options(args.opt)}
    for key, value in (("subnet", args.subnet), ("gateway", args.gateway),
                       ("ip_range", args.ip_range), ("subnet_v6", args.subnet_v6),
                       ("mtu", args.mtu)):
        if value is not None:
            body[key] = value
    if args.ipv6:
        body["enable_ipv6"] = True
    if args.internal:
        body["internal"] = True
    nid = backend.create_network(body)
    output.as_json(nid) if _json(args) else print(nid)
    return OK


def _network_rows(nets: list[dict]) -> list[list]:
    return [[output.short_id(n["id"]), n["name"], n["type"], len(n["endpoints"])]
            for n in nets]


def network_ls(args, backend: Backend) -> int:
    nets = backend.networks(name=args.name, partial_id=args.partial_id)
    nets.sort(key=lambda n: n["name"])
    if _json(args):
        output.as_json(nets)
    else:
        output.table(["NETWORK ID", "NAME", "DRIVER", "ENDPOINTS"], _network_rows(nets))
    return OK


def network_inspect(args, backend: Backend) -> int:
    code, nets = _each(args, args.networks, lambda ref: resolve_network(backend, ref))
    if nets or not code:
        output.as_json(nets)
    return code


def network_rm(args, backend: Backend) -> int:
    def remove(ref: str) -> str:
        backend.delete_network(resolve_network(backend, ref)["id"])
        return ref

    code, removed = _each(args, args.networks, remove)
    output.as_json(removed) if _json(args) else output.lines(removed)
    return code


# -- endpoints --------------------------------------------------------------------------

def _addresses(ep: dict, key: str) -> str:
    return ",".join(i[key] for i in ep["interfaces"] if i.get(key))


def _ports(ep: dict) -> str:
    return ",".join(f"{p['host_ip'] + ':' if p['host_ip'] else ''}{p['host_port']}->"
                    f"{p['port']}/{p['proto']}" for p in ep["port_mapping"])


def endpoint_create(args, backend: Backend) -> int:
    nid = resolve_network(backend, args.network)["id"]
    body: dict = {"name": args.name}
    for key, value in (("ipv4", args.ip), ("ipv6", args.ipv6), ("mac", args.mac)):
        if value is not None:
            body[key] = value
    if args.publish:
        body["port_mapping"] = [values.publish(p) for p in args.publish]
    if args.expose:
        body["exposed_ports"] = [values.expose(p) for p in args.expose]
    eid = backend.create_endpoint(nid, body)
    output.as_json(eid) if _json(args) else print(eid)
    return OK


def endpoint_ls(args, backend: Backend) -> int:
    eps = backend.endpoints(resolve_network(backend, args.network)["id"])
    eps.sort(key=lambda e: e["name"])
    if _json(args):
        output.as_json(eps)
        return OK
    output.table(["ENDPOINT ID", "NAME", "IPV4", "IPV6", "MAC", "CONTAINER", "PORTS"],
                 [[output.short_id(e["id"]), e["name"], _addresses(e, "address"),
                   _addresses(e, "address_ipv6"), _addresses(e, "mac_address"),
                   e["container_id"], _ports(e)] for e in eps])
    return OK


def _endpoint(args, backend: Backend) -> tuple[str, dict]:
    nid = resolve_network(backend, args.network)["id"]
    return nid, resolve_endpoint(backend, nid, args.endpoint)


def endpoint_inspect(args, backend: Backend) -> int:
    nid, ep = _endpoint(args, backend)
    output.as_json(backend.endpoint(nid, ep["id"]))
    return OK


def endpoint_rm(args, backend: Backend) -> int:
    nid, ep = _endpoint(args, backend)
    backend.delete_endpoint(nid, ep["id"])
    output.as_json(ep["id"]) if _json(args) else print(args.endpoint)
    return OK


# -- join / leave -----------------------------------------------------------------------

def join(args, backend: Backend) -> int:
    nid, ep = _endpoint(args, backend)
    body: dict = {"container_id": args.container_id}
    for key, value in (("netns_path", args.netns), ("host_name", args.hostname),
                       ("domain_name", args.domainname)):
        if value is not None:
            body[key] = value
    if args.dns:
        body["dns"] = list(args.dns)
    if args.dns_search:
        body["dns_search"] = list(args.dns_search)
    if args.add_host:
        body["extra_hosts"] = [values.extra_host(h) for h in args.add_host]
    joined = backend.join(nid, ep["id"], body)
    output.as_json(joined) if _json(args) else print(joined["sandbox_key"])
    return OK


def leave(args, backend: Backend) -> int:
    nid, ep = _endpoint(args, backend)
    backend.leave(nid, ep["id"], args.container_id)
    if _json(args):
        output.as_json(None)
    return OK


# -- sandboxes, audit, reconcile --------------------------------------------------------

def sandbox_ls(args, backend: Backend) -> int:
    sbs = sorted(backend.sandboxes(), key=lambda s: s["container_id"])
    if _json(args):
        output.as_json(sbs)
        return OK
    output.table(["CONTAINER ID", "KEY", "ENDPOINTS"],
                 [[s["container_id"], s["key"],
                   ",".join(output.short_id(e) for e in s["endpoints"])] for s in sbs])
    return OK


def sandbox_inspect(args, backend: Backend) -> int:
    output.as_json(backend.sandbox(args.container_id))
    return OK


def _print_findings(args, items: list, none: str) -> None:
    if _json(args):
        output.as_json(items)
    elif items:
        output.lines(items)
    else:
        print(none)


def audit(args, backend: Backend) -> int:
    found = backend.audit()
    _print_findings(args, found, "no discrepancies")
    if found:
        sys.stderr.write(f"pynetlib: error: audit found {len(found)} discrepanc"
                         f"{'y' if len(found) == 1 else 'ies'}; `pynetlib reconcile` "
                         "repairs what it can\n")
        return OTHER
    return OK


def reconcile(args, backend: Backend) -> int:
    _print_findings(args, backend.reconcile(), "nothing to repair")
    return OK
