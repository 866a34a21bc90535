"""The argparse tree of the ``pynetlib`` command."""

from __future__ import annotations

import argparse

from pynetlib import __version__
from pynetlib.cli import commands

READ_ONLY = "read_only"


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 2 with one ``pynetlib: error:`` line after the usage."""

    def error(self, message: str):
        self.print_usage()
        self.exit(2, f"pynetlib: error: {message}; see `{self.prog} --help`\n")


def _globals(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The global options, accepted before the command and after it."""
    d = (lambda v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = p.add_argument_group("global options")
    g.add_argument("--state-dir", dest="g_state_dir", metavar="DIR", default=d(None),
                   help="work directly on this state directory (default: $PYNETLIB_STATE_DIR "
                        "or /var/lib/pynetlib)")
    g.add_argument("--host", dest="g_host", metavar="unix:///PATH", default=d(None),
                   help="work through the daemon on this socket (default: $PYNETLIB_HOST)")
    g.add_argument("--format", dest="format", choices=("table", "json"), default=d("table"),
                   help="output: aligned tables (default) or JSON")
    g.add_argument("--debug", dest="debug", action="store_true", default=d(False),
                   help="print the traceback of an internal error")


def _command(sub, name: str, func, help_: str, *, read_only: bool = False, path: str = ""):
    p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
    _globals(p, suppress=True)
    p.set_defaults(func=func, command_path=path or name, **{READ_ONLY: read_only})
    return p


def _group(sub, name: str, help_: str):
    p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".")
    return p.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND",
                            parser_class=_Parser)


def _network(sub) -> None:
    net = _group(sub, "network", "create, list, inspect and remove networks")
    c = _command(net, "create", commands.network_create, "create a network",
                 path="network create")
    c.add_argument("name", metavar="NAME")
    c.add_argument("-d", "--driver", default="bridge",
                   help="network driver: bridge (default), host or null")
    c.add_argument("--subnet", metavar="CIDR", help="IPv4 subnet, e.g. 10.20.0.0/24")
    c.add_argument("--gateway", metavar="IP",
                   help="IPv4 gateway inside the subnet (default: its first address)")
    c.add_argument("--ip-range", metavar="CIDR",
                   help="allocate container addresses from this part of the subnet")
    c.add_argument("--ipv6", action="store_true", help="enable IPv6")
    c.add_argument("--subnet-v6", metavar="CIDR", help="IPv6 subnet (implies --ipv6)")
    c.add_argument("--mtu", type=int, metavar="N", help="MTU of the bridge and its veths")
    c.add_argument("--internal", action="store_true",
                   help="no traffic to or from outside the network")
    c.add_argument("-o", "--opt", action="append", metavar="KEY=VALUE",
                   help="driver option (repeatable); true/false become booleans, "
                        "integers numbers")
    ls = _command(net, "ls", commands.network_ls, "list networks", read_only=True,
                  path="network ls")
    only = ls.add_mutually_exclusive_group()
    only.add_argument("--name", metavar="N", help="only the network with this name")
    only.add_argument("--partial-id", metavar="P", help="only networks whose id starts so")
    i = _command(net, "inspect", commands.network_inspect,
                 "show networks as JSON", read_only=True, path="network inspect")
    i.add_argument("networks", nargs="+", metavar="NET", help="name, id or unique id prefix")
    rm = _command(net, "rm", commands.network_rm, "remove networks (without endpoints)",
                  path="network rm")
    rm.add_argument("networks", nargs="+", metavar="NET", help="name, id or unique id prefix")


def _endpoint_args(p) -> None:
    p.add_argument("network", metavar="NET", help="network name, id or unique id prefix")
    p.add_argument("endpoint", metavar="EP", help="endpoint name, id or unique id prefix")


def _endpoint(sub) -> None:
    ep = _group(sub, "endpoint", "create, list, inspect and remove endpoints")
    c = _command(ep, "create", commands.endpoint_create,
                 "create an endpoint (reserves its addresses)", path="endpoint create")
    c.add_argument("network", metavar="NET", help="network name, id or unique id prefix")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--ip", metavar="A", help="static IPv4 address")
    c.add_argument("--ipv6", metavar="A", help="static IPv6 address")
    c.add_argument("--mac", metavar="M", help="static MAC address")
    c.add_argument("-p", "--publish", action="append",
                   metavar="[HOST_IP:]HOST_PORT:PORT[/PROTO]",
                   help="publish a container port on the host (repeatable)")
    c.add_argument("--expose", action="append", metavar="PORT[/PROTO]",
                   help="expose a container port (repeatable)")
    ls = _command(ep, "ls", commands.endpoint_ls, "list a network's endpoints",
                  read_only=True, path="endpoint ls")
    ls.add_argument("network", metavar="NET", help="network name, id or unique id prefix")
    _endpoint_args(_command(ep, "inspect", commands.endpoint_inspect,
                            "show an endpoint as JSON", read_only=True,
                            path="endpoint inspect"))
    _endpoint_args(_command(ep, "rm", commands.endpoint_rm,
                            "remove an endpoint (releases its addresses)", path="endpoint rm"))


def _join_leave(sub) -> None:
    j = _command(sub, "join", commands.join,
                 "join an endpoint to a container (its sandbox is made on the first join); "
                 "prints the sandbox key")
    _endpoint_args(j)
    j.add_argument("container_id", metavar="CONTAINER_ID")
    j.add_argument("--netns", metavar="PATH",
                   help="a network namespace the runtime already made (default: pynetlib "
                        "makes one)")
    j.add_argument("--hostname", metavar="H")
    j.add_argument("--domainname", metavar="D")
    j.add_argument("--dns", action="append", metavar="IP", help="DNS server (repeatable)")
    j.add_argument("--dns-search", action="append", metavar="D",
                   help="DNS search domain (repeatable)")
    j.add_argument("--add-host", action="append", metavar="NAME:IP",
                   help="extra /etc/hosts entry (repeatable)")
    lv = _command(sub, "leave", commands.leave,
                  "unplug an endpoint from a container (its addresses stay reserved)")
    _endpoint_args(lv)
    lv.add_argument("container_id", metavar="CONTAINER_ID")


def _sandbox(sub) -> None:
    sb = _group(sub, "sandbox", "list and inspect sandboxes (a container's network stack)")
    _command(sb, "ls", commands.sandbox_ls, "list sandboxes", read_only=True,
             path="sandbox ls")
    i = _command(sb, "inspect", commands.sandbox_inspect, "show a sandbox as JSON",
                 read_only=True, path="sandbox inspect")
    i.add_argument("container_id", metavar="CONTAINER_ID")


def _demo(sub) -> None:
    demo = sub.add_parser("demo", help="build a small container network in a private "
                                       "namespace, check it, time it, remove it")
    demo.add_argument("--containers", type=int, default=20, metavar="N",
                      help="how many containers (2..200, default 20)")


def _daemon(sub) -> None:
    from pynetlib.daemon import add_daemon_arguments

    help_ = "serve the HTTP API and the Docker plugin protocol"
    add_daemon_arguments(sub.add_parser("daemon", help=help_, description=help_ + "."))


def build() -> argparse.ArgumentParser:
    parser = _Parser(prog="pynetlib", description="Container networking for Python: "
                     "networks, endpoints and sandboxes on a state directory or through "
                     "the pynetlib daemon.")
    parser.add_argument("--version", action="version", version=f"pynetlib {__version__}")
    _globals(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    _network(sub)
    _endpoint(sub)
    _join_leave(sub)
    _sandbox(sub)
    _command(sub, "audit", commands.audit,
             "list discrepancies between the records and the kernel (exit 1 if any)",
             read_only=True)
    _command(sub, "reconcile", commands.reconcile,
             "repair what a crash or someone else left behind; prints the repairs",
             read_only=True)
    _daemon(sub)
    _demo(sub)
    return parser
