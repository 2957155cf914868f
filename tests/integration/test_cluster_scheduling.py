"""What the live control plane's policies see and do: tiers, GPU models, estimates, attained service,
jobs that cannot be placed (now or ever), and a policy that raises on one job."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skyline.cluster.agent_executor import AgentExecutor
from skyline.cluster.clock import WallClock
from skyline.cluster.control import ControlConfig, ControlPlane
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import JobEvent, JobStatus, Resources, Tier
from skyline.errors import ConfigError
from skyline.scheduling.policies import POLICIES, make_policy
from skyline.scheduling.policy import Policy
from skyline.scheduling.view import Decision, RoundView

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'cluster.db'}")
    yield opened
    opened.close()


def _control(store: Store, policy: Policy) -> ControlPlane:
    return ControlPlane(store, AgentExecutor(store), policy, WallClock(), ControlConfig())


def _node(store: Store, name: str, tier: Tier, *, gpus: int = 8, gpu_type: str | None = None) -> None:
    capacity = Resources.of(cpus=32, memory_mib=65536, gpus=gpus, gpu_type=gpu_type)
    store.nodes.register(name, tier=tier, address="127.0.0.1", capacity=capacity, labels={})


def _submit(control: ControlPlane, name: str, *, gpus: float = 1, replicas: int = 4, **fields: object) -> str:
    request = JobRequest(
        command="true",
        name=name,
        resources=Resources.of(cpus=1, memory_mib=64, gpus=gpus, gpu_type=fields.pop("gpu_type", None)),  # type: ignore[arg-type]
        replicas=replicas,
        **fields,  # type: ignore[arg-type]
    )
    return control.submit(request, owner="alice")[0].id


def _nodes_of(store: Store, job_id: str) -> set[str]:
    record = store.jobs.get(job_id)
    return {r.node_id for r in store.jobs.replicas(job_id, record.attempt)}


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_tiered_jobs_run_only_on_their_tier_and_one_that_cannot_run_blocks_nobody(
    store: Store, name: str
) -> None:
    _node(store, "dc", Tier.DATACENTER)
    _node(store, "edge", Tier.EDGE)
    _node(store, "cloud", Tier.CLOUD)
    store.db.now = lambda: 1e12  # the cloud node goes silent: lost (its tier has no alive node now)
    store.nodes.mark_lost(silent_for_s=5)
    store.db.now = __import__("time").time
    _node(store, "dc", Tier.DATACENTER)
    _node(store, "edge", Tier.EDGE)
    control = _control(store, make_policy(name))
    cloud = _submit(control, "cloud-only", tiers=frozenset({Tier.CLOUD}))  # first in the queue
    edge = _submit(control, "edge-only", tiers=frozenset({Tier.EDGE}))
    dc = _submit(control, "dc-only", tiers=frozenset({Tier.DATACENTER}))
    anywhere = _submit(control, "anywhere")
    control.run_once()
    assert store.jobs.get(cloud).status is JobStatus.PENDING
    assert store.jobs.get(cloud).message == "no alive node of tier cloud"
    assert _nodes_of(store, edge) == {"edge"} and _nodes_of(store, dc) == {"dc"}
    assert store.jobs.get(anywhere).status is JobStatus.PLACED


def test_a_job_no_registered_node_could_ever_hold_is_refused_at_submit(store: Store) -> None:
    _node(store, "dc", Tier.DATACENTER, gpus=8, gpu_type="v100")
    control = _control(store, make_policy("fifo"))
    with pytest.raises(ConfigError, match="no registered node of tier edge"):
        _submit(control, "edge", tiers=frozenset({Tier.EDGE}))
    with pytest.raises(ConfigError, match="no registered node has GPU model a100"):
        _submit(control, "a100", gpu_type="a100")
    with pytest.raises(ConfigError, match="the gang asks 16 GPUs"):
        _submit(control, "huge", replicas=16)
    assert store.jobs.find() == []  # nothing was queued


def test_gpu_models_from_agents_are_matched_against_requests(store: Store) -> None:
    _node(store, "old", Tier.DATACENTER, gpu_type="k80")
    _node(store, "new", Tier.DATACENTER, gpu_type="v100")
    control = _control(store, make_policy("fifo-backfill"))
    fast = _submit(control, "fast", gpu_type="v100")
    either = _submit(control, "either", gpu_type="k80|v100", replicas=8)
    control.run_once()
    assert _nodes_of(store, fast) == {"new"} and _nodes_of(store, either) == {"old"}


def test_shortest_first_ranks_by_estimates_own_or_from_history(store: Store) -> None:
    _node(store, "n", Tier.DATACENTER, gpus=1)
    control = _control(store, make_policy("sjf"))
    earlier = _submit(control, "before", replicas=1)  # finishes: its command's history is 2 s
    control.run_once()
    assert store.jobs.apply_event(JobEvent(job_id=earlier, status=JobStatus.RUNNING, at_s=100.0))
    store.db.now = lambda: 102.0
    assert store.jobs.apply_event(JobEvent(job_id=earlier, status=JobStatus.SUCCEEDED, at_s=102.0))
    store.db.now = __import__("time").time
    assert store.jobs.get(earlier).service_s == pytest.approx(2.0)
    long_job = _submit(control, "long", replicas=1, estimate_s=50.0)
    repeat = JobRequest(command="true", name="repeat", resources=Resources.of(cpus=1, memory_mib=64, gpus=1))
    again = control.submit(repeat, owner="alice")[0].id  # no estimate: the history says 2 s
    control.run_once()
    assert store.jobs.get(again).status is JobStatus.PLACED
    assert store.jobs.get(long_job).status is JobStatus.PENDING


def test_a_policy_that_raises_on_one_job_fails_only_that_jobs_decision(store: Store) -> None:
    class Brittle(Policy):
        """FIFO with backfill that cannot bear a job named poison (a bug, on purpose)."""

        name = "brittle"

        def decide(self, view: RoundView) -> Decision:
            if any(job.id == poison for job in view.waiting):
                raise ValueError("cannot rank this one")
            return make_policy("fifo-backfill").decide(view)

    _node(store, "n", Tier.DATACENTER)
    control = _control(store, Brittle())
    before = _submit(control, "before", replicas=2)
    poison = _submit(control, "poison", replicas=2)
    after = _submit(control, "after", replicas=2)
    control.run_once()
    assert (
        store.jobs.get(before).status is JobStatus.PLACED and store.jobs.get(after).status is JobStatus.PLACED
    )
    held = store.jobs.get(poison)
    assert held.status is JobStatus.PENDING and "policy brittle failed on this job" in held.message
