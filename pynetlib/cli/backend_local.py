"""The local backend: a Controller on a state directory, opened for one command and
closed after it (closing waits for the teardown that leave started)."""

from __future__ import annotations

from pynetlib.cli import resources
from pynetlib.controller import Controller
from pynetlib.errors import BadRequestError, NotFoundError
from pynetlib.netspec import NetworkSpec, network_options

_NETWORK_FIELDS = {"name", "network_type", "subnet", "gateway", "ip_range", "enable_ipv6",
                   "subnet_v6", "mtu", "internal", "driver_opts"}


class LocalBackend:
    def __init__(self, state_dir: str, *, reconcile: bool = True) -> None:
        self.state_dir = state_dir
        self._ctrl = Controller(state_dir, reconcile=reconcile)

    def close(self) -> None:
        self._ctrl.close()

    # -- networks ---------------------------------------------------------------------
    def networks(self, name: str | None = None, partial_id: str | None = None) -> list[dict]:
        if name is not None and partial_id is not None:
            raise BadRequestError("Unsupported query: name and partial-id together")
        nets = self._ctrl.networks()
        if name is not None:
            nets = [n for n in nets if n.name == name]
        if partial_id is not None:
            nets = [n for n in nets if n.id.startswith(partial_id)]
        return [resources.network_resource(n) for n in nets]

    def network(self, nid: str) -> dict:
        return resources.network_resource(self._ctrl.network_by_id(nid))

    def create_network(self, body: dict) -> str:
        unknown = set(body) - _NETWORK_FIELDS
        if unknown:
            raise BadRequestError(f"unknown network fields: {sorted(unknown)}")
        spec = NetworkSpec(driver=body.get("network_type") or "bridge",
                           subnet=body.get("subnet"), gateway=body.get("gateway"),
                           ip_range=body.get("ip_range"), ipv6=bool(body.get("enable_ipv6")),
                           subnet_v6=body.get("subnet_v6"), mtu=body.get("mtu"),
                           internal=bool(body.get("internal")),
                           driver_opts=dict(body.get("driver_opts") or {}))
        options = network_options(spec)
        return self._ctrl.new_network(spec.driver, body["name"], options).id

    def delete_network(self, nid: str) -> None:
        self._ctrl.network_by_id(nid).delete()

    # -- endpoints --------------------------------------------------------------------
    def endpoints(self, nid: str) -> list[dict]:
        net = self._ctrl.network_by_id(nid)
        return [resources.endpoint_resource(ep) for ep in net.endpoints()]

    def endpoint(self, nid: str, eid: str) -> dict:
        return resources.endpoint_resource(self._ctrl.network_by_id(nid).endpoint_by_id(eid))

    def create_endpoint(self, nid: str, body: dict) -> str:
        net = self._ctrl.network_by_id(nid)
        ep = net.create_endpoint(body["name"], resources.endpoint_options(body),
                                 ipv4=body.get("ipv4"), ipv6=body.get("ipv6"),
                                 mac=body.get("mac"))
        return ep.id

    def delete_endpoint(self, nid: str, eid: str) -> None:
        self._ctrl.network_by_id(nid).endpoint_by_id(eid).delete()

    def join(self, nid: str, eid: str, body: dict) -> dict:
        ep = self._ctrl.network_by_id(nid).endpoint_by_id(eid)
        data = ep.join(body["container_id"], hostname=body.get("host_name"),
                       domainname=body.get("domain_name"),
                       hosts_path=body.get("hosts_path"),
                       resolv_conf_path=body.get("resolv_conf_path"),
                       dns=body.get("dns") or (), dns_search=body.get("dns_search") or (),
                       extra_hosts=[(h["name"], h["address"])
                                    for h in body.get("extra_hosts") or ()],
                       use_default_sandbox=bool(body.get("use_default_sandbox")),
                       netns_path=body.get("netns_path"))
        return {"sandbox_key": data.sandbox_key}

    def leave(self, nid: str, eid: str, container_id: str) -> None:
        self._ctrl.network_by_id(nid).endpoint_by_id(eid).leave(container_id)

    # -- sandboxes and state ----------------------------------------------------------
    def sandboxes(self) -> list[dict]:
        return [resources.sandbox_resource(sb) for sb in self._ctrl.sandboxes()]

    def sandbox(self, container_id: str) -> dict:
        try:
            sb = self._ctrl.sandbox_by_container(container_id)
        except NotFoundError:
            raise NotFoundError(f"sandbox {container_id} not found") from None
        return resources.sandbox_resource(sb)

    def audit(self) -> list[str]:
        return self._ctrl.audit()

    def reconcile(self) -> list[str]:
        return self._ctrl.reconcile()
