"""What each route does with the controller. Plain blocking functions: the daemon runs
them in its thread pool, never on the event loop.

Each takes the controller and a :class:`Call` (path parameters, query parameters and
body, already validated against the route's schemas) and returns the JSON value of the
reply; errors are raised as :mod:`pynetlib.errors` exceptions.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pynetlib import netlabel
from pynetlib.controller import Controller
from pynetlib.daemon import views
from pynetlib.errors import BadRequestError, NoSuchEndpointError, NoSuchNetworkError, NotFoundError
from pynetlib.names import check_container_id
from pynetlib.netspec import NetworkSpec, network_options
from pynetlib.types import PortBinding, TransportPort

_NS_GET_NSTYPE = 0xB703          # ioctl on a namespace file: its CLONE_NEW* type
_CLONE_NEWNET = 0x40000000


@dataclass
class Call:
    params: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None


def _one_filter(query: dict[str, str], exact: str, prefix: str) -> tuple[str | None, str | None]:
    if exact in query and prefix in query:
        raise BadRequestError(f"Unsupported query: {exact}= and {prefix}= exclude each other")
    return query.get(exact), query.get(prefix)


def _surviving(items: Iterable, view: Callable) -> list:
    """Views of ``items``, leaving out those deleted while the list was being built."""
    out = []
    for item in items:
        try:
            out.append(view(item))
        except (NoSuchNetworkError, NoSuchEndpointError):
            continue
    return out


# -- networks --------------------------------------------------------------------------

def list_networks(ctrl: Controller, call: Call) -> list:
    name, partial = _one_filter(call.query, "name", "partial-id")
    nets = [n for n in ctrl.networks()
            if (name is None or n.name == name)
            and (partial is None or n.id.startswith(partial))]
    return _surviving(nets, views.network)


def create_network(ctrl: Controller, call: Call) -> str:
    b = call.body
    spec = NetworkSpec(driver=b.get("network_type", "bridge"), subnet=b.get("subnet"),
                       gateway=b.get("gateway"), ip_range=b.get("ip_range"),
                       ipv6=b.get("enable_ipv6", False), subnet_v6=b.get("subnet_v6"),
                       mtu=b.get("mtu"), internal=b.get("internal", False),
                       driver_opts=dict(b.get("driver_opts", {})))
    options = network_options(spec)
    return ctrl.new_network(spec.driver, b["name"], options).id


def get_network(ctrl: Controller, call: Call) -> dict:
    return views.network(ctrl.network_by_id(call.params["nid"]))


def delete_network(ctrl: Controller, call: Call) -> None:
    ctrl.network_by_id(call.params["nid"]).delete()


# -- endpoints -------------------------------------------------------------------------

def list_endpoints(ctrl: Controller, call: Call) -> list:
    net = ctrl.network_by_id(call.params["nid"])
    name, partial = _one_filter(call.query, "name", "partial-id")
    eps = [e for e in net.endpoints()
           if (name is None or e.name == name)
           and (partial is None or e.id.startswith(partial))]
    return _surviving(eps, lambda e: views.endpoint(net, e))


def _endpoint_options(body: dict) -> dict:
    options: dict = {}
    if body.get("port_mapping"):
        options[netlabel.PORT_MAP] = [
            PortBinding(p["proto"], p["port"], p.get("host_port", 0), p.get("host_ip"))
            for p in body["port_mapping"]]
    if body.get("exposed_ports"):
        options[netlabel.EXPOSED_PORTS] = [TransportPort(p["proto"], p["port"])
                                           for p in body["exposed_ports"]]
    return options


def create_endpoint(ctrl: Controller, call: Call) -> str:
    b = call.body
    net = ctrl.network_by_id(call.params["nid"])
    ep = net.create_endpoint(b["name"], _endpoint_options(b), ipv4=b.get("ipv4"),
                             ipv6=b.get("ipv6"), mac=b.get("mac"))
    return ep.id


def _endpoint(ctrl: Controller, call: Call):
    net = ctrl.network_by_id(call.params["nid"])
    return net, net.endpoint_by_id(call.params["eid"])


def get_endpoint(ctrl: Controller, call: Call) -> dict:
    return views.endpoint(*_endpoint(ctrl, call))


def delete_endpoint(ctrl: Controller, call: Call) -> None:
    _endpoint(ctrl, call)[1].delete()


# -- join / leave ----------------------------------------------------------------------

def check_netns_path(path: str) -> None:
    """A runtime's namespace must be an existing network-namespace file."""
    if not os.path.isabs(path) or "\0" in path:
        raise BadRequestError(f"netns_path {path!r}: an absolute path")
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):     # namespace files are; no devices
            raise BadRequestError(f"netns_path {path!r} is not a network namespace")
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFoundError(f"network namespace {path} not found") from None
    except OSError as e:
        raise BadRequestError(f"netns_path {path!r}: {e.strerror}") from None
    try:
        kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError as e:
        if e.errno not in (errno.ENOTTY, errno.EINVAL):
            raise
        kind = 0
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise BadRequestError(f"netns_path {path!r} is not a network namespace")


def join(ctrl: Controller, call: Call) -> dict:
    b = call.body
    if b.get("netns_path") is not None:
        check_netns_path(b["netns_path"])
    _, ep = _endpoint(ctrl, call)
    data = ep.join(b["container_id"], hostname=b.get("host_name"),
                   domainname=b.get("domain_name"), hosts_path=b.get("hosts_path"),
                   resolv_conf_path=b.get("resolv_conf_path"),
                   extra_hosts=[(h["name"], h["address"]) for h in b.get("extra_hosts", [])],
                   dns=list(b.get("dns", [])), dns_search=list(b.get("dns_search", [])),
                   use_default_sandbox=b.get("use_default_sandbox", False),
                   netns_path=b.get("netns_path"))
    return {"sandbox_key": data.sandbox_key}


def leave(ctrl: Controller, call: Call) -> None:
    check_container_id(call.params["cid"])
    _endpoint(ctrl, call)[1].leave(call.params["cid"])


# -- sandboxes, audit, reconcile -------------------------------------------------------

def list_sandboxes(ctrl: Controller, call: Call) -> list:
    cid, partial = _one_filter(call.query, "container-id", "partial-container-id")
    sbs = [s for s in ctrl.sandboxes()
           if (cid is None or s.container_id == cid)
           and (partial is None or s.container_id.startswith(partial))]
    return [views.sandbox(s) for s in sbs]


def get_sandbox(ctrl: Controller, call: Call) -> dict:
    cid = check_container_id(call.params["cid"])
    return views.sandbox(ctrl.sandbox_by_container(cid))


def audit(ctrl: Controller, call: Call) -> list:
    ctrl.flush_teardown()         # devices whose removal is already under way are not
    return ctrl.audit()           # discrepancies


def reconcile(ctrl: Controller, call: Call) -> list:
    return ctrl.reconcile()
