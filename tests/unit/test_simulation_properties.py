"""Hypothesis invariants of the simulator under every fast policy: capacity, completion, JCT, determinism."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyline.scheduling.packing import Packer
from skyline.scheduling.policies import make_policy
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import Simulation
from skyline.simulation.trace import parse_cluster
from skyline.testing.scheduling import trace_of

pytestmark = pytest.mark.unit

FAST = [
    "fifo",
    "fifo-backfill",
    "sjf",
    "srtf",
    "srsf",
    "tiresias-las",
    "tiresias-gittins",
    "best-fit",
    "spread",
    "fragmentation-aware",
]

jobs = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=500, allow_nan=False),
        st.floats(min_value=1, max_value=300, allow_nan=False),
        st.sampled_from([1, 1, 1, 2, 4, 8]),
    ),
    min_size=1,
    max_size=14,
)


class _CheckedPacker(Packer):
    """A packer that asserts after every change that no device is over-committed."""

    def take(self, req, placing):  # type: ignore[no-untyped-def]
        super().take(req, placing)
        assert all(0 <= f <= 1000 for devices in self.dev_free for f in devices)
        assert self.free_gpu_milli >= 0


def _run(rows: list[tuple[float, float, int]], name: str, nodes: str, config: SimConfig):  # type: ignore[no-untyped-def]
    policy = make_policy(name)
    sim = Simulation(trace_of(rows), parse_cluster(nodes), policy, config)
    sim.packer.__class__ = _CheckedPacker
    return sim.run()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=jobs,
    name=st.sampled_from(FAST),
    nodes=st.sampled_from(["1x8", "2x4", "2x8", "1x2,1x8"]),
    penalty=st.sampled_from([0.0, 30.0]),
    slowdown=st.sampled_from([1.0, 1.5]),
)
def test_invariants(
    rows: list[tuple[float, float, int]], name: str, nodes: str, penalty: float, slowdown: float
) -> None:
    config = SimConfig(restart_penalty_s=penalty, consolidation_slowdown=slowdown)
    outcome = _run(rows, name, nodes, config)
    total = outcome.total_gpus
    # every job finishes exactly once (or is rejected as never fitting), never before its work is done
    assert not outcome.unfinished
    assert not outcome.rejected  # every gang here fits on some node set of these clusters
    assert len(outcome.trace.jobs) == len(rows)
    for job, finish in zip(outcome.trace.jobs, outcome.finish, strict=True):
        assert finish is not None
        assert finish - job.submit_s >= job.duration_s - 1e-6
    # capacity is never exceeded
    assert all(0 <= busy <= total + 1e-9 for _, busy, _ in outcome.timeline)
    # deterministic
    again = _run(rows, name, nodes, config)
    assert list(again.finish) == list(outcome.finish)
    assert list(again.preemptions) == list(outcome.preemptions)
