"""Child program for the persistence and crash tests: one operation on a state directory.

    python tests/_proc_ops.py STATE_DIR OP [ARGS...] [--kill-after]

Opens a controller on STATE_DIR (reconcile runs first), does OP, prints a JSON result on
stdout, then exits normally, or SIGKILLs itself right after the operation returned when
``--kill-after`` is given (nothing flushed, nothing closed: the durability check). A
failpoint armed through ``PYNETLIB_FAILPOINTS`` may kill it in the middle instead.

OPs:
  create_network NAME CIDR            a bridge network (AddressIPv4=CIDR)
  delete_network NAME
  create_endpoint NET NAME [PORT]     PORT: map tcp/80 to that host port
  delete_endpoint NET NAME
  join NET NAME CID
  leave NET NAME CID
  fill NET PREFIX COUNT [ports]       COUNT endpoints NET/PREFIX-i; prints their addresses
                                      (and, with "ports", an automatic host port each)
  populate NET PREFIX COUNT           COUNT endpoints NET/PREFIX-i, each joined to PREFIX-ci
  churn NET WORKER SECONDS            join/leave/delete/create loop (see test_crash_churn)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import pynetlib  # noqa: E402
from pynetlib import netlabel  # noqa: E402


def _addr(ep) -> str:
    return str(ep.info().interfaces[0].address.ip)


def main(argv: list[str]) -> int:
    kill_after = "--kill-after" in argv
    argv = [a for a in argv if a != "--kill-after"]
    state, op, args = argv[1], argv[2], argv[3:]
    ctrl = pynetlib.Controller(state, host_routes=lambda: [])
    out: dict = {"op": op}
    if op == "create_network":
        name, cidr = args
        net = ctrl.new_network("bridge", name, {netlabel.GENERIC_DATA: {"AddressIPv4": cidr}})
        out["id"] = net.id
    elif op == "delete_network":
        ctrl.network_by_name(args[0]).delete()
    elif op == "create_endpoint":
        net = ctrl.network_by_name(args[0])
        opts = None
        if len(args) > 2:
            opts = {netlabel.PORT_MAP: [pynetlib.PortBinding("tcp", 80,
                                                             host_port=int(args[2]))]}
        ep = net.create_endpoint(args[1], options=opts)
        out.update(id=ep.id, ip=_addr(ep))
    elif op == "delete_endpoint":
        ctrl.network_by_name(args[0]).endpoint_by_name(args[1]).delete()
    elif op == "join":
        ep = ctrl.network_by_name(args[0]).endpoint_by_name(args[1])
        out["key"] = ep.join(args[2]).sandbox_key
    elif op == "leave":
        ctrl.network_by_name(args[0]).endpoint_by_name(args[1]).leave(args[2])
    elif op == "fill":
        net = ctrl.network_by_name(args[0])
        ports = len(args) > 3 and args[3] == "ports"
        out["ips"], out["ports"] = [], []
        for i in range(int(args[2])):
            opts = {netlabel.PORT_MAP: [pynetlib.PortBinding("tcp", 80)]} if ports else None
            ep = net.create_endpoint(f"{args[1]}-{i}", options=opts)
            out["ips"].append(_addr(ep))
            if ports:
                out["ports"].append(ep.driver_info()[netlabel.PORT_MAP][0].host_port)
    elif op == "populate":
        net = ctrl.network_by_name(args[0])
        out["eps"] = []
        for i in range(int(args[2])):
            ep = net.create_endpoint(f"{args[1]}-{i}")
            key = ep.join(f"{args[1]}-c{i}").sandbox_key
            out["eps"].append([ep.name, _addr(ep), key])
    elif op == "churn":
        return churn(ctrl, *args)
    else:
        raise SystemExit(f"unknown op {op}")
    print(json.dumps(out), flush=True)
    if kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    ctrl.close()
    return 0


def churn(ctrl, netname: str, worker: str, seconds: str) -> int:
    """Endpoint w<worker>-<n>: create, join, report its address, leave, delete; forever
    (until ``seconds`` pass). Every step is reported on stdout before and after, so the
    supervisor knows which step a SIGKILL may have interrupted."""
    net = ctrl.network_by_name(netname)
    deadline = time.monotonic() + float(seconds)
    n = 0
    while time.monotonic() < deadline:
        name, cid = f"w{worker}-{os.getpid()}-{n}", f"c{worker}-{os.getpid()}-{n}"
        n += 1
        ep = net.create_endpoint(name)
        ep.join(cid)
        print(json.dumps({"joined": name, "ip": _addr(ep)}), flush=True)
        time.sleep(0.02)                 # overlap with other workers' joins
        ep.leave(cid)
        ep.delete()
    ctrl.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
