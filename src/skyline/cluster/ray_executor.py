"""`RayExecutor`: replicas run as Ray tasks in placement groups pinned to the nodes the policy chose.

It connects to an existing Ray cluster. A Ray node is a skyline node when it carries a custom resource
``skyline_node_<name>`` (``ray start --resources '{"skyline_node_gpu1": 1}'``): each replica's bundle
asks for a sliver of its node's resource, so Ray can put it nowhere else. A gang is one placement group,
so it starts whole or not at all. Output is returned when a replica ends (not streamed). ``MASTER_PORT``
comes from the configured range as in `skyline.cluster.agent_executor`; rank 0 checks it on its node.
"""

from __future__ import annotations

import logging
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skyline.cluster.node_store import UsageSample
from skyline.cluster.replica_process import PORT_TAKEN_EXIT_CODE, rendezvous_problem
from skyline.cluster.store import Store
from skyline.core import JobEvent, JobSpec, JobStatus, Placement, Resources, Tier
from skyline.core.net import PortRange
from skyline.errors import UnavailableError

log = logging.getLogger("skyline.cluster.ray")
NODE_RESOURCE_PREFIX = "skyline_node_"
_TAIL_LINES = 2000


def run_replica(command: str, env: Mapping[str, str]) -> tuple[int, list[str]]:
    """Run one replica in a shell on the Ray worker; its exit code and its last output lines."""
    import os

    problem = rendezvous_problem(env)
    if problem is not None:
        return PORT_TAKEN_EXIT_CODE, [problem]
    proc = subprocess.run(
        ["/bin/sh", "-c", command],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = proc.stdout.decode(errors="replace").splitlines()
    return proc.returncode, lines[-_TAIL_LINES:]


@dataclass(slots=True)
class _Gang:
    spec: JobSpec
    attempt: int
    group: Any  # ray.util.placement_group.PlacementGroup
    node_ids: tuple[str, ...]
    refs: list[Any] = field(default_factory=list)
    done: dict[int, int] = field(default_factory=dict)  # rank → exit code


class RayExecutor:
    """The `Executor` port over a Ray cluster (``address``: ``ray://`` or ``host:port``; None = auto)."""

    name = "ray"

    def __init__(
        self, store: Store, *, address: str | None = None, master_ports: PortRange | None = None
    ) -> None:
        import ray

        self.store = store
        self.master_ports = master_ports or PortRange()
        if not ray.is_initialized():
            try:
                ray.init(address=address or "auto", include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise UnavailableError(f"no Ray cluster at {address or 'auto'}: {exc}") from exc
        self._remote = ray.remote(run_replica)
        self._gangs: dict[str, _Gang] = {}
        self._events: list[JobEvent] = []
        self._lock = threading.Lock()
        self._addresses: dict[str, str] = {}
        self.refresh()

    def refresh(self) -> None:
        """Register (and keep alive) every Ray node that carries a ``skyline_node_<name>`` resource."""
        import ray

        busy: dict[str, int] = {}
        with self._lock:
            for gang in self._gangs.values():
                for node_id in gang.node_ids:
                    busy[node_id] = busy.get(node_id, 0) + 1
        for node in ray.nodes():  # type: ignore[no-untyped-call]
            if not node.get("Alive"):
                continue
            resources: dict[str, float] = node.get("Resources", {})
            names = [k[len(NODE_RESOURCE_PREFIX) :] for k in resources if k.startswith(NODE_RESOURCE_PREFIX)]
            for name in names:
                self._addresses[name] = node.get("NodeManagerAddress", "127.0.0.1")
                capacity = Resources.of(
                    cpus=resources.get("CPU", 0.0),
                    memory_mib=int(resources.get("memory", 0.0) // 2**20),
                    gpus=int(resources.get("GPU", 0.0)),
                )
                sample = UsageSample(cpu_percent=0.0, memory_percent=0.0, running_replicas=busy.get(name, 0))
                if not self.store.nodes.heartbeat(name, sample):
                    self.store.nodes.register(
                        name,
                        tier=Tier.DATACENTER,
                        address=self._addresses[name],
                        capacity=capacity,
                        labels={},
                    )

    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if not self.store.jobs.place_many([(spec.id, tuple(placements))], master_port=self.master_ports.pick):
            return
        record = self.store.jobs.get(spec.id)  # placed: its attempt and port are settled
        bundles = [self._bundle(spec.resources, p.node_id) for p in placements]
        group = placement_group(bundles, strategy="PACK")
        gang = _Gang(
            spec=spec, attempt=record.attempt, group=group, node_ids=tuple(p.node_id for p in placements)
        )
        master = self._addresses.get(placements[0].node_id, "127.0.0.1")
        for rank, p in enumerate(placements):
            env = {
                **record.env,
                "SKYLINE_JOB_ID": spec.id,
                "RANK": str(rank),
                "LOCAL_RANK": "0",
                "WORLD_SIZE": str(len(placements)),
                "MASTER_ADDR": master,
                "MASTER_PORT": str(record.master_port),
            }
            strategy = PlacementGroupSchedulingStrategy(
                placement_group=group, placement_group_bundle_index=rank
            )
            options: dict[str, Any] = {"scheduling_strategy": strategy, "num_cpus": spec.resources.cpus}
            if spec.resources.gpu_milli:
                options["num_gpus"] = spec.resources.gpus
            options["resources"] = {f"{NODE_RESOURCE_PREFIX}{p.node_id}": 0.001}
            gang.refs.append(self._remote.options(**options).remote(record.command, env))
        with self._lock:
            self._gangs[spec.id] = gang
        # The gang is whole in one placement group: once Ray holds it, the replicas are launched.
        self.notify(JobEvent(job_id=spec.id, status=JobStatus.RUNNING, at_s=self.store.now()))

    @staticmethod
    def _bundle(resources: Resources, node_id: str) -> dict[str, float]:
        bundle: dict[str, float] = {"CPU": resources.cpus, f"{NODE_RESOURCE_PREFIX}{node_id}": 0.001}
        if resources.gpu_milli:
            bundle["GPU"] = resources.gpus
        return bundle

    def _kill(self, job_id: str) -> None:
        import ray
        from ray.util.placement_group import remove_placement_group

        with self._lock:
            gang = self._gangs.pop(job_id, None)
        if gang is None:
            return
        for ref in gang.refs:
            ray.cancel(ref, force=True)
        remove_placement_group(gang.group)

    def stop(self, job_id: str) -> None:
        self.store.jobs.requeue(job_id, "preempted by the scheduling policy")
        self._kill(job_id)

    def release(self, job_id: str) -> None:
        self._kill(job_id)

    def flush(self) -> None:
        """Starts are immediate here: nothing is batched."""

    def notify(self, event: JobEvent) -> None:
        with self._lock:
            self._events.append(event)

    def events(self) -> Sequence[JobEvent]:
        """Collect replicas that ended: their output goes to the store's logs, their gang's outcome here."""
        import ray

        with self._lock:
            gangs = list(self._gangs.items())
        for job_id, gang in gangs:
            pending = [(rank, ref) for rank, ref in enumerate(gang.refs) if rank not in gang.done]
            ready, _ = ray.wait([ref for _, ref in pending], num_returns=len(pending), timeout=0)
            ready_ids = {id(r) for r in ready}
            for rank, ref in pending:
                if id(ref) in ready_ids:
                    gang.done[rank] = self._collect(job_id, gang, rank, ref)
            self._judge(job_id, gang)
        with self._lock:
            drained, self._events = self._events, []
        return drained

    def _collect(self, job_id: str, gang: _Gang, rank: int, ref: Any) -> int:
        import ray

        try:
            code, lines = ray.get(ref)
        except Exception as exc:  # the task itself died (worker crash, node loss)
            code, lines = -1, [f"ray task failed: {exc}"]
        self.store.jobs.append_logs(job_id, gang.attempt, rank, lines)
        return int(code)

    def _judge(self, job_id: str, gang: _Gang) -> None:
        failed = {rank: code for rank, code in gang.done.items() if code != 0}
        now = self.store.now()
        if failed:
            rank, code = min(failed.items())
            message = f"replica {rank} exited with code {code}"
            self.notify(
                JobEvent(job_id=job_id, status=JobStatus.FAILED, at_s=now, exit_code=code, message=message)
            )
        elif len(gang.done) == len(gang.refs):
            self.notify(JobEvent(job_id=job_id, status=JobStatus.SUCCEEDED, at_s=now, exit_code=0))
        else:
            return
        self._kill(job_id)

    def close(self) -> None:
        for job_id in list(self._gangs):
            self._kill(job_id)
