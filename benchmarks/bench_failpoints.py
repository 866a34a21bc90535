"""The cost of a disarmed failpoint on the hot path (while another one is armed)."""

from __future__ import annotations

import pytest

from pynetlib.failpoints import arm, disarm_all, failpoint


@pytest.mark.benchmark(group="failpoint (disarmed)")
def bench_disarmed_failpoint(benchmark):
    arm("endpoint.join.after_kernel=raise")
    try:
        benchmark(failpoint, "network.create.before_kernel")
    finally:
        disarm_all()
