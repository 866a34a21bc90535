"""The bridge driver's nftables programming (libnetwork's iptables rules, section 6.4).

:class:`BridgeFirewall` owns exactly two tables, ``inet pynetlib`` and
``bridge pynetlib``; it never touches another table and never flushes the ruleset.
Every change is one libnftables JSON batch, so the kernel applies it whole or not at all.

Layout of ``inet pynetlib``::

    chain forward      filter, hook forward, priority filter, policy accept
        ct state established,related accept        # pynetlib base:ct
        jump user                                   # pynetlib base:user
        jump isolation                              # pynetlib base:isolation
        jump ports                                  # pynetlib base:ports
        jump networks                               # pynetlib base:networks
    chain user         for the administrator; pynetlib never writes or flushes it
    chain isolation    per network: iifname BR oifname @bridges oifname != BR drop
                                    oifname BR iifname @bridges iifname != BR drop
    chain ports        per mapping: oifname BR ip daddr CIP tcp dport P ct status dnat accept
    chain networks     per network: iifname BR oifname != BR accept   (internal: drop)
                                    oifname BR iifname != BR drop     (no unsolicited inbound)
    chain prerouting   nat, dstnat: per mapping DNAT (fib daddr type local, or ip daddr HOSTIP)
    chain output       nat, hook output, dstnat: the same for locally originated traffic
                       (loopback destinations excluded, as Docker's OUTPUT rule)
    chain postrouting  nat, srcnat: per network masquerade, per mapping hairpin masquerade
                       (ip saddr CIP oifname BR ip daddr CIP tcp dport P ct status dnat)
    set bridges        type ifname: the bridges pynetlib owns (one element per network)

``bridge pynetlib`` has chain ``forward`` (filter) and, per network, a set
``ports_<nid>`` of its bridge ports (the veth host ends); with ICC off the network gets
``iifname @ports_<nid> oifname @ports_<nid> drop``. (The kernel here lacks
``meta ibrname``, so ports are named explicitly.) It also has set ``retired`` (type
iface_index: the bridge ports a leave took out of service, until the reaper deletes
them) and three chains at priority -300 that drop every frame from or to them:
``retired_in`` (prerouting: ``iif @retired drop``, before the bridge learns the source
address), ``retired_fwd`` (forward: ``oif @retired drop``) and ``retired_out`` (output,
frames the host sends: ``oif @retired drop``). Its elements are added and removed from C
(:mod:`pynetlib.kernel.nftset`), one small nftables transaction that never waits for
the RTNL lock.

Tags (rule and element comments, at most 128 bytes in nft):

* ``pynetlib base:<what>``           the fixed rules made by :meth:`ensure`
* ``pynetlib n=<nid>``               a network's rules and elements
* ``pynetlib n=<nid32> e=<eid>``     an endpoint's port-mapping rules; ``nid32`` is the
  first 32 hex characters of the network id (both full 64-character ids do not fit).
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass
from typing import Any, Iterable

from pynetlib.drivers.bridge.nftables import FirewallError, Nft
from pynetlib.errors import BadRequestError, InvalidIDError, InvalidNameError
from pynetlib.kernel import validate
from pynetlib.types import PortBinding

__all__ = ["BridgeFirewall", "FirewallError", "OwnedObject", "TABLE"]

TABLE = "pynetlib"
TAG = "pynetlib"
_ID_RE = re.compile(r"^[0-9a-f]{1,64}\Z")
# Names end up as nft string constants: '*' is a wildcard, '@' a set reference, '$' a
# variable, '\\' and '"' escapes. Allow only the conservative set on top of ifname().
_SAFE_IFNAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_NID_IN_EP_TAG = 32

_BASE_CHAINS = {
    "forward": {"type": "filter", "hook": "forward", "prio": 0, "policy": "accept"},
    "prerouting": {"type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"},
    "output": {"type": "nat", "hook": "output", "prio": -100, "policy": "accept"},
    "postrouting": {"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"},
}
_REGULAR_CHAINS = ("user", "isolation", "ports", "networks")
_BRIDGE_CHAIN = {"type": "filter", "hook": "forward", "prio": -200, "policy": "accept"}
#: the set of bridge ports out of service (host veth ends left, waiting for the reaper),
#: by interface index; filled and emptied from C (pynetlib.kernel.nftset), not here.
RETIRED_SET = "retired"
# Before everything else (and before the bridge learns a source address): frames from
# a retired port; frames to one, forwarded or sent by the host.
_RETIRED_CHAINS = {
    "retired_in": {"type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"},
    "retired_fwd": {"type": "filter", "hook": "forward", "prio": -300, "policy": "accept"},
    "retired_out": {"type": "filter", "hook": "output", "prio": -300, "policy": "accept"},
}
_RETIRED_RULES = {"retired_in": "iif", "retired_fwd": "oif", "retired_out": "oif"}


# --- validation ------------------------------------------------------------------------

def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not _ID_RE.match(value):
        raise InvalidIDError(value, f"a {what} id is 1 to 64 lowercase hex characters")
    return value


def _check_ifname(name: object) -> str:
    validate.ifname(name)
    assert isinstance(name, str)
    if not _SAFE_IFNAME_RE.match(name):
        raise InvalidNameError(name, "the firewall accepts interface names made of "
                                     "letters, digits, '_', '.' and '-'")
    return name


def _check_net(value: object, version: int, what: str):
    if value is None:
        return None
    net = validate.network(value)
    if net.version != version:
        raise BadRequestError(f"invalid {what} {value!r}: an IPv{version} network")
    return net


def _check_addr(value: object, version: int, what: str):
    if value is None:
        return None
    if isinstance(value, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        value = value.ip
    addr = validate.address(value)
    if addr.version != version:
        raise BadRequestError(f"invalid {what} {value!r}: an IPv{version} address")
    return addr


def _net_tag(nid: str) -> str:
    return f"{TAG} n={nid}"


def _ep_tag(nid: str, eid: str) -> str:
    return f"{TAG} n={nid[:_NID_IN_EP_TAG]} e={eid}"


def _ports_set(nid: str) -> str:
    return f"ports_{nid}"


def parse_tag(tag: str) -> dict[str, str] | None:
    """``{"kind": "base"|"network"|"endpoint", ...}`` for a pynetlib tag, else None."""
    if not isinstance(tag, str) or not tag.startswith(TAG + " "):
        return None
    rest = tag[len(TAG) + 1:]
    if rest.startswith("base:"):
        return {"kind": "base", "name": rest[5:]}
    fields = dict(p.split("=", 1) for p in rest.split() if "=" in p)
    if "e" in fields:
        return {"kind": "endpoint", "network": fields.get("n", ""), "endpoint": fields["e"]}
    if "n" in fields:
        return {"kind": "network", "network": fields["n"]}
    return None


# --- JSON expression helpers -----------------------------------------------------------

def _match(left: dict, op: str, right: Any) -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _payload(proto: str, field: str) -> dict:
    return {"payload": {"protocol": proto, "field": field}}


def _prefix(net) -> dict:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _ipproto(version: int) -> str:
    return "ip" if version == 4 else "ip6"


_ACCEPT = {"accept": None}
_DROP = {"drop": None}
_MASQ = {"masquerade": None}


@dataclass(frozen=True)
class OwnedObject:
    """A rule or set element that pynetlib's tables hold, with its tag (for audits)."""

    kind: str            # "rule" or "element"
    family: str
    table: str
    container: str       # chain name for a rule, set name for an element
    handle: int | None   # rule handle; None for an element
    tag: str
    value: Any           # the rule's expressions or the element's value

    def as_dict(self) -> dict:
        d = {"kind": self.kind, "family": self.family, "table": self.table,
             "chain" if self.kind == "rule" else "set": self.container,
             "handle": self.handle, "tag": self.tag,
             "expr" if self.kind == "rule" else "elem": self.value}
        parsed = parse_tag(self.tag)
        if parsed:
            d.update({k: v for k, v in parsed.items() if k != "kind"}, tag_kind=parsed["kind"])
        return d


class _State:
    """A parsed listing of both tables."""

    def __init__(self, inet: dict | None, bridge: dict | None) -> None:
        self.tables: set[str] = set()
        self.chains: dict[tuple[str, str], dict] = {}
        self.sets: dict[tuple[str, str], dict] = {}
        self.rules: list[dict] = []
        for fam, listing in (("inet", inet), ("bridge", bridge)):
            if listing is None:
                continue
            for item in listing.get("nftables", []):
                if "table" in item:
                    self.tables.add(fam)
                elif "chain" in item:
                    self.chains[(fam, item["chain"]["name"])] = item["chain"]
                elif "set" in item:
                    self.sets[(fam, item["set"]["name"])] = item["set"]
                elif "rule" in item:
                    self.rules.append(item["rule"])

    def apply(self, cmds: list[dict], echoed: list[dict]) -> None:
        """Bring this listing up to date after ``cmds`` succeeded (``echoed``: nft's echo
        of the add/insert commands, which carries the new handles)."""
        echo = iter(echoed)
        for cmd in cmds:
            verb, body = next(iter(cmd.items()))
            kind, obj = next(iter(body.items()))
            if verb in ("add", "insert", "create") and kind == "rule":
                rule = dict(obj)
                for e in echo:
                    ev, eb = next(iter(e.items()))
                    if ev == verb and "rule" in eb:
                        rule["handle"] = eb["rule"]["handle"]
                        break
                if "handle" not in rule:
                    raise FirewallError("nft did not echo the handle of a new rule")
                if verb == "insert":
                    self.rules.insert(0, rule)
                else:
                    self.rules.append(rule)
            elif verb == "delete" and kind == "rule":
                self.rules = [r for r in self.rules if not (
                    r["family"] == obj["family"] and r["chain"] == obj["chain"]
                    and r["handle"] == obj["handle"])]
            elif verb == "add" and kind == "table":
                self.tables.add(obj["family"])
            elif verb == "delete" and kind == "table":
                fam = obj["family"]
                self.tables.discard(fam)
                self.chains = {k: v for k, v in self.chains.items() if k[0] != fam}
                self.sets = {k: v for k, v in self.sets.items() if k[0] != fam}
                self.rules = [r for r in self.rules if r["family"] != fam]
            elif verb == "add" and kind == "chain":
                self.chains.setdefault((obj["family"], obj["name"]), dict(obj))
            elif verb == "add" and kind == "set":
                self.sets.setdefault((obj["family"], obj["name"]), dict(obj, elem=[]))
            elif verb == "delete" and kind == "set":
                self.sets.pop((obj["family"], obj["name"]), None)
            elif kind == "element":
                s = self.sets.get((obj["family"], obj["name"]))
                if s is None:
                    continue
                elems = s.setdefault("elem", [])
                for new in obj["elem"]:
                    val = new["elem"]["val"] if isinstance(new, dict) else new
                    elems[:] = [e for e in elems if
                                (e["elem"]["val"] if isinstance(e, dict) else e) != val]
                    if verb == "add":
                        elems.append(new)

    def chain_rules(self, family: str, chain: str) -> list[dict]:
        return [r for r in self.rules if r["family"] == family and r["chain"] == chain]

    def tagged(self, pred) -> list[dict]:
        return [r for r in self.rules if pred(r.get("comment", ""))]

    def set_elements(self, family: str, name: str) -> list[tuple[Any, str]]:
        s = self.sets.get((family, name))
        out = []
        for e in (s or {}).get("elem", []) or []:
            if isinstance(e, dict) and "elem" in e:
                out.append((e["elem"].get("val"), e["elem"].get("comment", "")))
            else:
                out.append((e, ""))
        return out


def _delete_rule(rule: dict) -> dict:
    return {"delete": {"rule": {"family": rule["family"], "table": rule["table"],
                                "chain": rule["chain"], "handle": rule["handle"]}}}


class BridgeFirewall:
    """nftables state of the bridge driver, in the namespace of its :class:`Nft`.

    All methods are idempotent and thread-safe; each is a single atomic batch.
    ``nft`` defaults to a new context in the calling thread's namespace.
    """

    def __init__(self, nft: Nft | None = None) -> None:
        self.nft = nft or Nft()
        self._lock = threading.RLock()
        self._cache: _State | None = None

    # -- reading and writing -----------------------------------------------------------
    # The tables are listed once and then kept up to date in memory from the echo of
    # each batch (a listing costs ~70 ms at 1,500 rules). If a batch built from the
    # cached view fails, the tables are listed again and the batch rebuilt once.
    def _state(self, fresh: bool = False) -> _State:
        if fresh or self._cache is None:
            self._cache = _State(self.nft.list_table_or_none("inet", TABLE),
                                 self.nft.list_table_or_none("bridge", TABLE))
        return self._cache

    def _transact(self, build) -> None:
        """Build a batch from the current view with ``build(state)`` and run it.

        A :class:`FirewallError` from building or running it with a cached view is
        retried once with a fresh listing.
        """
        with self._lock:
            was_cached = self._cache is not None
            for attempt in (0, 1):
                st = self._state(fresh=attempt == 1)
                try:
                    cmds = build(st)
                    if not cmds:
                        return
                    # the echo (new handles) makes nft fill its cache: only when needed
                    echo = any(("add" in c or "insert" in c) and "rule" in next(iter(c.values()))
                               for c in cmds)
                    out = self.nft.run_json(cmds, echo=echo) if echo else \
                        self.nft.run_json(cmds)
                except FirewallError:
                    self._cache = None
                    if attempt == 0 and was_cached:
                        continue
                    raise
                try:
                    st.apply(cmds, (out or {}).get("nftables", []))
                except Exception:
                    self._cache = None
                return

    def refresh(self) -> None:
        """Forget the in-memory view: the next call lists the tables again."""
        with self._lock:
            self._cache = None

    # -- base structure --------------------------------------------------------------
    def _base_rules(self) -> list[tuple[str, list[dict]]]:
        return [
            ("ct", [_match({"ct": {"key": "state"}}, "in", ["established", "related"]),
                    _ACCEPT]),
            ("user", [{"jump": {"target": "user"}}]),
            ("isolation", [{"jump": {"target": "isolation"}}]),
            ("ports", [{"jump": {"target": "ports"}}]),
            ("networks", [{"jump": {"target": "networks"}}]),
        ]

    def _ensure_cmds(self, st: _State) -> list[dict]:
        """Commands creating whatever base structure ``st`` lacks (``add`` is idempotent)."""
        cmds: list[dict] = []
        fam = "inet"
        if fam not in st.tables:
            cmds.append({"add": {"table": {"family": fam, "name": TABLE}}})
        for name in _REGULAR_CHAINS:
            if (fam, name) not in st.chains:
                cmds.append({"add": {"chain": {"family": fam, "table": TABLE, "name": name}}})
        for name, spec in _BASE_CHAINS.items():
            if (fam, name) not in st.chains:
                cmds.append({"add": {"chain": {"family": fam, "table": TABLE, "name": name,
                                               **spec}}})
        if (fam, "bridges") not in st.sets:
            cmds.append({"add": {"set": {"family": fam, "table": TABLE, "name": "bridges",
                                         "type": "ifname"}}})
        # The base rules must head the forward chain, in order.
        want = [f"{TAG} base:{n}" for n, _ in self._base_rules()]
        have = st.chain_rules(fam, "forward")
        if [r.get("comment", "") for r in have[:len(want)]] != want:
            for r in have:
                if r.get("comment", "").startswith(f"{TAG} base:"):
                    cmds.append(_delete_rule(r))
            for name, expr in reversed(self._base_rules()):  # insert puts at the head
                cmds.append({"insert": {"rule": {"family": fam, "table": TABLE,
                                                 "chain": "forward", "expr": expr,
                                                 "comment": f"{TAG} base:{name}"}}})
        if "bridge" not in st.tables:
            cmds.append({"add": {"table": {"family": "bridge", "name": TABLE}}})
        if ("bridge", "forward") not in st.chains:
            cmds.append({"add": {"chain": {"family": "bridge", "table": TABLE,
                                           "name": "forward", **_BRIDGE_CHAIN}}})
        if ("bridge", RETIRED_SET) not in st.sets:
            cmds.append({"add": {"set": {"family": "bridge", "table": TABLE,
                                         "name": RETIRED_SET, "type": "iface_index"}}})
        for name, spec in _RETIRED_CHAINS.items():
            if ("bridge", name) not in st.chains:
                cmds.append({"add": {"chain": {"family": "bridge", "table": TABLE,
                                               "name": name, **spec}}})
            tag = f"{TAG} base:{name}"
            if not any(r.get("comment") == tag for r in st.chain_rules("bridge", name)):
                cmds.append({"add": {"rule": {"family": "bridge", "table": TABLE,
                                              "chain": name, "comment": tag, "expr": [
                                                  _match(_meta(_RETIRED_RULES[name]), "==",
                                                         "@" + RETIRED_SET), _DROP]}}})
        return cmds

    def ensure(self) -> None:
        """Create both tables, their chains, sets and base rules where absent.

        Reads the kernel afresh (it also repairs base rules deleted behind its back).
        """
        with self._lock:
            self._cache = None
            self._transact(self._ensure_cmds)

    # -- networks --------------------------------------------------------------------
    def add_network(self, nid: str, bridge: str, subnet4=None, subnet6=None, *,
                    masquerade: bool = True, icc: bool = True,
                    internal: bool = False) -> None:
        """Install (or reinstall with new options) the rules of network ``nid``.

        Its earlier network rules are replaced in the same batch; its endpoints' port
        mappings and the members of its port set are kept.
        """
        _check_id(nid, "network")
        _check_ifname(bridge)
        s4 = _check_net(subnet4, 4, "IPv4 subnet")
        s6 = _check_net(subnet6, 6, "IPv6 subnet")
        for flag, name in ((masquerade, "masquerade"), (icc, "icc"), (internal, "internal")):
            if not isinstance(flag, bool):
                raise BadRequestError(f"invalid {name} {flag!r}: a bool")
        tag = _net_tag(nid)
        def build(st: _State) -> list[dict]:
            cmds = self._ensure_cmds(st)
            cmds += [_delete_rule(r) for r in st.tagged(lambda c: c == tag)]
            # the bridge set: drop this network's old element if the bridge name changed
            for val, etag in st.set_elements("inet", "bridges"):
                if etag == tag and val != bridge:
                    cmds.append(self._elem("delete", "inet", "bridges", val, None))
            cmds.append(self._elem("add", "inet", "bridges", bridge, tag))
            pset = _ports_set(nid)
            if ("bridge", pset) not in st.sets:
                cmds.append({"add": {"set": {"family": "bridge", "table": TABLE, "name": pset,
                                             "type": "ifname"}}})

            def rule(fam: str, chain: str, expr: list[dict]) -> None:
                cmds.append({"add": {"rule": {"family": fam, "table": TABLE, "chain": chain,
                                              "expr": expr, "comment": tag}}})

            iif, oif = _meta("iifname"), _meta("oifname")
            # isolation between pynetlib bridges, both directions
            rule("inet", "isolation", [_match(iif, "==", bridge), _match(oif, "==", "@bridges"),
                                       _match(oif, "!=", bridge), _DROP])
            rule("inet", "isolation", [_match(oif, "==", bridge), _match(iif, "==", "@bridges"),
                                       _match(iif, "!=", bridge), _DROP])
            if internal:
                rule("inet", "networks", [_match(iif, "==", bridge), _match(oif, "!=", bridge),
                                          _DROP])
                rule("inet", "networks", [_match(oif, "==", bridge), _match(iif, "!=", bridge),
                                          _DROP])
            else:
                rule("inet", "networks", [_match(iif, "==", bridge), _match(oif, "!=", bridge),
                                          _ACCEPT])
                rule("inet", "networks", [_match(oif, "==", bridge), _match(iif, "!=", bridge),
                                          _DROP])
                if masquerade:
                    for net in (s4, s6):
                        if net is not None:
                            rule("inet", "postrouting", [
                                _match(_payload(_ipproto(net.version), "saddr"), "==",
                                       _prefix(net)),
                                _match(oif, "!=", bridge), _MASQ])
            if not icc:
                rule("bridge", "forward", [_match(iif, "==", "@" + pset),
                                           _match(oif, "==", "@" + pset), _DROP])
            return cmds

        self._transact(build)

    def remove_network(self, nid: str) -> None:
        """Remove every rule, set and element of network ``nid`` (port mappings too).

        An unknown network is a no-op; other networks are left alone.
        """
        _check_id(nid, "network")
        tag = _net_tag(nid)
        ep_prefix = f"{TAG} n={nid[:_NID_IN_EP_TAG]} e="
        def build(st: _State) -> list[dict]:
            cmds = [_delete_rule(r) for r in
                    st.tagged(lambda c: c == tag or c.startswith(ep_prefix))]
            for val, etag in st.set_elements("inet", "bridges"):
                if etag == tag:
                    cmds.append(self._elem("delete", "inet", "bridges", val, None))
            if ("bridge", _ports_set(nid)) in st.sets:
                cmds.append({"delete": {"set": {"family": "bridge", "table": TABLE,
                                                "name": _ports_set(nid)}}})
            return cmds

        self._transact(build)

    @staticmethod
    def _elem(verb: str, family: str, set_name: str, value: Any, tag: str | None) -> dict:
        elem: Any = {"elem": {"val": value, "comment": tag}} if tag else value
        return {verb: {"element": {"family": family, "table": TABLE, "name": set_name,
                                   "elem": [elem]}}}

    # -- bridge ports (ICC) -----------------------------------------------------------
    def add_port(self, nid: str, ifname: str) -> None:
        """Add a bridge port (veth host end) to network ``nid``'s port set."""
        _check_id(nid, "network")
        _check_ifname(ifname)
        pset = _ports_set(nid)

        def build(st: _State) -> list[dict]:
            if ("bridge", pset) not in st.sets:
                raise FirewallError(f"network {nid} has no firewall state (add_network first)")
            if any(v == ifname for v, _ in st.set_elements("bridge", pset)):
                return []
            return [self._elem("add", "bridge", pset, ifname, _net_tag(nid))]

        self._transact(build)

    def remove_port(self, nid: str, ifname: str) -> None:
        """Remove a bridge port from the set; a port or network not there is a no-op."""
        _check_id(nid, "network")
        _check_ifname(ifname)
        pset = _ports_set(nid)

        def build(st: _State) -> list[dict]:
            if not any(v == ifname for v, _ in st.set_elements("bridge", pset)):
                return []
            return [self._elem("delete", "bridge", pset, ifname, None)]

        self._transact(build)

    # -- port mappings ---------------------------------------------------------------
    def add_port_mappings(self, nid: str, eid: str, bridge: str, ip4=None, ip6=None,
                          bindings: Iterable[PortBinding] = ()) -> None:
        """DNAT, forward accept and hairpin masquerade for each binding, all or nothing.

        Every binding needs its resolved ``host_port``. A binding whose ``host_ip`` is
        set matches only that destination address (and only its IP family); otherwise
        any local address (``fib daddr type local``) of each family the endpoint has.
        Earlier mappings of the endpoint are replaced.
        """
        _check_id(nid, "network")
        _check_id(eid, "endpoint")
        _check_ifname(bridge)
        a4 = _check_addr(ip4, 4, "IPv4 address")
        a6 = _check_addr(ip6, 6, "IPv6 address")
        bindings = list(bindings)
        for b in bindings:
            if not isinstance(b, PortBinding):
                raise BadRequestError(f"invalid port binding {b!r}: a PortBinding")
            if b.host_port == 0:
                raise BadRequestError(f"port binding {b} has no host port (allocate it first)")
        tag = _ep_tag(nid, eid)
        cmds: list[dict] = []

        def rule(chain: str, expr: list[dict]) -> None:
            cmds.append({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain,
                                          "expr": expr, "comment": tag}}})

        for b in bindings:
            for cip in (a4, a6):
                if cip is None:
                    continue
                if b.host_ip is not None and b.host_ip.version != cip.version:
                    continue
                fam = _ipproto(cip.version)
                nfproto = _match(_meta("nfproto"), "==", "ipv4" if cip.version == 4 else "ipv6")
                dport = _match(_payload(b.proto, "dport"), "==", b.host_port)
                cport = _match(_payload(b.proto, "dport"), "==", b.port)
                dnat = {"dnat": {"family": fam, "addr": str(cip), "port": b.port}}
                if b.host_ip is not None:
                    dst = [_match(_payload(fam, "daddr"), "==", str(b.host_ip))]
                    out_dst = dst
                else:
                    local = _match({"fib": {"result": "type", "flags": ["daddr"]}}, "==", "local")
                    loop = ipaddress.ip_network("127.0.0.0/8" if cip.version == 4 else "::1/128")
                    dst = [local]
                    out_dst = [local, _match(_payload(fam, "daddr"), "!=", _prefix(loop))]
                rule("prerouting", [nfproto, *dst, dport, dnat])
                rule("output", [nfproto, *out_dst, dport, dnat])
                to_cip = _match(_payload(fam, "daddr"), "==", str(cip))
                rule("ports", [nfproto, _match(_meta("oifname"), "==", bridge), to_cip, cport,
                               _match({"ct": {"key": "status"}}, "in", "dnat"), _ACCEPT])
                # hairpin: the container reaching its own mapped port through a host
                # address gets the bridge address as its peer. (No iifname match: with
                # br_netfilter such a packet is bridged back and postrouting sees no iif.)
                rule("postrouting", [nfproto, _match(_payload(fam, "saddr"), "==", str(cip)),
                                     _match(_meta("oifname"), "==", bridge), to_cip, cport,
                                     _match({"ct": {"key": "status"}}, "in", "dnat"), _MASQ])
        def build(st: _State) -> list[dict]:
            pre = self._ensure_cmds(st)
            old = [_delete_rule(r) for r in st.tagged(lambda c: c == tag)]
            return pre + old + cmds

        self._transact(build)

    def remove_port_mappings(self, nid: str, eid: str) -> None:
        """Remove every rule of endpoint ``eid``'s mappings; none is a no-op."""
        _check_id(nid, "network")
        _check_id(eid, "endpoint")
        tag = _ep_tag(nid, eid)
        self._transact(lambda st: [_delete_rule(r) for r in st.tagged(lambda c: c == tag)])

    # -- audit and teardown ----------------------------------------------------------
    def retired_ports(self) -> list:
        """The elements of the retired-port set, read from the kernel: an interface
        index, or the device's name when it exists (that is how nft lists them)."""
        with self._lock:
            st = self._state(fresh=True)
        return [v for v, _ in st.set_elements("bridge", RETIRED_SET)]

    def owned_rules(self) -> list[dict]:
        """Every rule and set element in pynetlib's tables, with its tag (``""`` if none).

        Each dict has ``kind`` ("rule"/"element"), ``family``, ``table``, ``chain`` or
        ``set``, ``handle``, ``tag``, ``expr`` or ``elem`` and, for pynetlib tags, the
        parsed ``tag_kind`` and ``network``/``endpoint``/``name``. Always read from
        the kernel, not from the in-memory view.
        """
        with self._lock:
            st = self._state(fresh=True)
        out = [OwnedObject("rule", r["family"], r["table"], r["chain"], r["handle"],
                           r.get("comment", ""), r.get("expr", [])).as_dict()
               for r in st.rules]
        for (fam, name) in st.sets:
            for val, tag in st.set_elements(fam, name):
                out.append(OwnedObject("element", fam, TABLE, name, None, tag, val).as_dict())
        return out

    def destroy(self) -> None:
        """Delete both pynetlib tables (whatever they hold); absent tables are fine."""
        with self._lock:
            self._cache = None
            self._transact(lambda st: [{"delete": {"table": {"family": fam, "name": TABLE}}}
                                       for fam in ("inet", "bridge") if fam in st.tables])
            self._cache = None
