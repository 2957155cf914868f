"""`RayExecutor`: replicas run as Ray tasks in placement groups pinned to the nodes the policy chose.

It connects to an existing Ray cluster. A Ray node is a skyline node when it carries a custom resource
``skyline_node_<name>`` (``ray start --resources '{"skyline_node_gpu1": 1}'``): each replica's bundle
asks for a sliver of its node's resource, so Ray can put it nowhere else. A gang is one placement group,
so it starts whole or not at all: its replicas are launched, and the job reported running, only once Ray
has reserved the group; a group not ready within ``ready_timeout_s`` is removed and the job goes back to
the queue with the reason. Output is returned when a replica ends (not streamed). ``MASTER_PORT`` comes
from the configured range as in `skyline.cluster.agent_executor`; rank 0 checks it on its node.

Each node's utilization is measured on the node itself: a zero-CPU probe task pinned there samples
psutil (and NVML) and its answer is the node's heartbeat, as an agent's would be.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyline.cluster.node_store import UsageSample
from skyline.cluster.records import JobRecord
from skyline.cluster.replica_process import PORT_TAKEN_EXIT_CODE, rendezvous_problem
from skyline.cluster.store import Store
from skyline.core import JobEvent, JobSpec, JobStatus, Placement, Resources, Tier
from skyline.core.net import PortRange
from skyline.errors import UnavailableError

log = logging.getLogger("skyline.cluster.ray")
NODE_RESOURCE_PREFIX = "skyline_node_"
_TAIL_LINES = 2000
_SLIVER = 0.001  # of a node's skyline_node_<name> resource: pins a task there without using it up
_STOP_GRACE_S = 5.0  # a cancelled replica's processes get this long after SIGTERM


def _pidfile(key: str) -> Path:
    folder = Path(tempfile.gettempdir()) / "skyline-ray"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key}.pid"


def run_replica(key: str, command: str, env: Mapping[str, str]) -> tuple[int, list[str]]:
    """Run one replica in a shell on the Ray worker; its exit code and its last output lines.

    The command runs in its own session, its process group recorded under ``key`` on the node, so
    that `stop_replica` (a task sent to the same node) can stop all of it, children included.
    """
    import os

    problem = rendezvous_problem(env)
    if problem is not None:
        return PORT_TAKEN_EXIT_CODE, [problem]
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    pidfile = _pidfile(key)
    pidfile.write_text(str(proc.pid))
    try:
        out, _ = proc.communicate()
    finally:
        pidfile.unlink(missing_ok=True)
    lines = out.decode(errors="replace").splitlines()
    return proc.returncode, lines[-_TAIL_LINES:]


def stop_replica(key: str) -> None:
    """Stop the process group of replica ``key`` on this node: SIGTERM, then SIGKILL after a grace."""
    import os
    import signal

    try:
        pgid = int(_pidfile(key).read_text())
    except (FileNotFoundError, ValueError):
        return  # not started, or already ended
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + _STOP_GRACE_S
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def sample_node() -> tuple[float, float, float | None]:
    """CPU, memory and GPU utilization (percent) of the node this runs on, over a short window."""
    import psutil

    from skyline.cluster.monitor import Nvml

    cpu = float(psutil.cpu_percent(interval=0.2))
    nvml = Nvml.open()
    return cpu, float(psutil.virtual_memory().percent), nvml.utilization_percent() if nvml else None


@dataclass(slots=True)
class _Gang:
    spec: JobSpec
    record: JobRecord  # placed: its attempt, port and command are settled
    placements: tuple[Placement, ...]
    group: Any  # ray.util.placement_group.PlacementGroup
    ready: Any  # the group's ready() reference
    created_s: float  # monotonic
    refs: list[Any] = field(default_factory=list)  # empty until the group is ready
    done: dict[int, int] = field(default_factory=dict)  # rank → exit code

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(p.node_id for p in self.placements)


class RayExecutor:
    """The `Executor` port over a Ray cluster (``address``: ``ray://`` or ``host:port``; None = auto)."""

    name = "ray"

    def __init__(
        self,
        store: Store,
        *,
        address: str | None = None,
        master_ports: PortRange | None = None,
        ready_timeout_s: float = 30.0,
    ) -> None:
        import ray

        self.store = store
        self.master_ports = master_ports or PortRange()
        self.ready_timeout_s = ready_timeout_s
        if not ray.is_initialized():
            try:
                ray.init(address=address or "auto", include_dashboard=False, log_to_driver=False)
            except ConnectionError as exc:
                raise UnavailableError(f"no Ray cluster at {address or 'auto'}: {exc}") from exc
        self._remote = ray.remote(run_replica)
        self._stopper = ray.remote(stop_replica)
        self._probe = ray.remote(sample_node)
        self._probes: dict[str, Any] = {}  # node name → its sampling task in flight
        self._gangs: dict[str, _Gang] = {}
        # stopped gangs: their stop tasks, and when to free their groups anyway
        self._stopping: list[tuple[_Gang, list[Any], float]] = []
        self._events: list[JobEvent] = []
        self._lock = threading.Lock()
        self._addresses: dict[str, str] = {}
        self.refresh()

    # ------------------------------------------------------------------ nodes
    def refresh(self) -> None:
        """Register (and keep alive) every Ray node that carries a ``skyline_node_<name>`` resource;
        the answers of its utilization probes are its samples."""
        import ray

        for node in ray.nodes():  # type: ignore[no-untyped-call]
            if not node.get("Alive"):
                continue
            resources: dict[str, float] = node.get("Resources", {})
            for key in resources:
                if key.startswith(NODE_RESOURCE_PREFIX):
                    self._keep(key[len(NODE_RESOURCE_PREFIX) :], node, resources)
        self._collect_probes()
        self._reap()

    def _keep(self, name: str, node: Mapping[str, Any], resources: Mapping[str, float]) -> None:
        address = str(node.get("NodeManagerAddress", "127.0.0.1"))
        if not self.store.nodes.touch(name):  # unknown, or declared lost: (re)register it
            self._addresses.pop(name, None)
        if name not in self._addresses:
            capacity = Resources.of(
                cpus=resources.get("CPU", 0.0),
                memory_mib=int(resources.get("memory", 0.0) // 2**20),
                gpus=int(resources.get("GPU", 0.0)),
            )
            self.store.nodes.register(
                name, tier=Tier.DATACENTER, address=address, capacity=capacity, labels={}
            )
            self._addresses[name] = address
        if name not in self._probes:
            options = {"num_cpus": 0, "resources": {f"{NODE_RESOURCE_PREFIX}{name}": _SLIVER}}
            self._probes[name] = self._probe.options(**options).remote()

    def _collect_probes(self) -> None:
        import ray

        if not self._probes:
            return
        ready, _ = ray.wait(list(self._probes.values()), num_returns=len(self._probes), timeout=0)
        answered = {id(ref) for ref in ready}
        busy = self._replicas_by_node()
        for name, ref in list(self._probes.items()):
            if id(ref) not in answered:
                continue
            del self._probes[name]
            try:
                cpu, memory, gpu = ray.get(ref)
            except Exception as exc:  # the node died under the probe: no beat, it will be declared lost
                log.warning("utilization probe on %s failed: %s", name, exc)
                continue
            sample = UsageSample(
                cpu_percent=cpu, memory_percent=memory, gpu_percent=gpu, running_replicas=busy.get(name, 0)
            )
            self.store.nodes.heartbeat(name, sample)

    def _replicas_by_node(self) -> dict[str, int]:
        busy: dict[str, int] = {}
        with self._lock:
            for gang in self._gangs.values():
                for node_id in gang.node_ids:
                    busy[node_id] = busy.get(node_id, 0) + 1
        return busy

    # ------------------------------------------------------------------ jobs
    def start(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        """Reserve the gang's placement group; its replicas launch once Ray has placed it (`events`)."""
        from ray.util.placement_group import placement_group

        if not self.store.jobs.place_many([(spec.id, tuple(placements))], master_port=self.master_ports.pick):
            return
        record = self.store.jobs.get(spec.id)
        bundles = [self._bundle(spec.resources, p.node_id) for p in placements]
        group = placement_group(bundles, strategy="PACK")
        with self._lock:
            self._gangs[spec.id] = _Gang(
                spec, record, tuple(placements), group, group.ready(), time.monotonic()
            )

    def _launch(self, gang: _Gang) -> None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        record, spec = gang.record, gang.spec
        master = self._addresses.get(gang.placements[0].node_id, "127.0.0.1")
        for rank, p in enumerate(gang.placements):
            env = {
                **record.env, "SKYLINE_JOB_ID": spec.id, "RANK": str(rank), "LOCAL_RANK": "0",
                "WORLD_SIZE": str(len(gang.placements)), "MASTER_ADDR": master,
                "MASTER_PORT": str(record.master_port),
            }  # fmt: skip
            strategy = PlacementGroupSchedulingStrategy(
                placement_group=gang.group, placement_group_bundle_index=rank
            )
            options: dict[str, Any] = {"scheduling_strategy": strategy, "num_cpus": spec.resources.cpus}
            if spec.resources.gpu_milli:
                options["num_gpus"] = spec.resources.gpus
            options["resources"] = {f"{NODE_RESOURCE_PREFIX}{p.node_id}": _SLIVER}
            gang.refs.append(
                self._remote.options(**options).remote(self._key(gang, rank), record.command, env)
            )

    @staticmethod
    def _bundle(resources: Resources, node_id: str) -> dict[str, float]:
        bundle: dict[str, float] = {"CPU": resources.cpus, f"{NODE_RESOURCE_PREFIX}{node_id}": _SLIVER}
        if resources.gpu_milli:
            bundle["GPU"] = resources.gpus
        return bundle

    def _kill(self, job_id: str, *, ended: bool = False) -> None:
        """Stop the gang's replicas on their nodes (children included), then cancel its tasks and free
        its placement group (`_reap`, once the stops are done). ``ended``: every replica has exited."""
        with self._lock:
            gang = self._gangs.pop(job_id, None)
        if gang is None:
            return
        stops = []
        if gang.refs and not ended:
            for rank, p in enumerate(gang.placements):
                options = {"num_cpus": 0, "resources": {f"{NODE_RESOURCE_PREFIX}{p.node_id}": _SLIVER}}
                stops.append(self._stopper.options(**options).remote(self._key(gang, rank)))
        self._stopping.append((gang, stops, time.monotonic() + 2 * _STOP_GRACE_S + 5.0))
        self._reap()

    @staticmethod
    def _key(gang: _Gang, rank: int) -> str:
        return f"{gang.spec.id}-{gang.record.attempt}-{rank}"

    def _reap(self) -> None:
        """Cancel the tasks and remove the groups of stopped gangs whose stops are done (or overdue)."""
        import ray
        from ray.util.placement_group import remove_placement_group

        keep = []
        for gang, stops, deadline in self._stopping:
            done, _ = ray.wait(stops, num_returns=len(stops), timeout=0) if stops else ([], [])
            if len(done) == len(stops) or time.monotonic() > deadline:
                for ref in gang.refs:
                    ray.cancel(ref, force=True)
                remove_placement_group(gang.group)
            else:
                keep.append((gang, stops, deadline))
        self._stopping = keep

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
        """Launch the gangs Ray has placed (running), requeue those it could not place in time, and
        collect replicas that ended: their output goes to the store's logs, their gang's outcome here."""
        import ray

        with self._lock:
            gangs = list(self._gangs.items())
        for job_id, gang in gangs:
            if not gang.refs:
                self._check_ready(job_id, gang)
                continue
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

    def _check_ready(self, job_id: str, gang: _Gang) -> None:
        import ray

        ready, _ = ray.wait([gang.ready], timeout=0)
        if ready:
            self._launch(gang)
            self.notify(JobEvent(job_id=job_id, status=JobStatus.RUNNING, at_s=self.store.now()))
        elif time.monotonic() - gang.created_s > self.ready_timeout_s:
            asks = ", ".join(str(self._bundle(gang.spec.resources, n)) for n in gang.node_ids)
            message = (
                f"Ray did not place the gang's placement group within {self.ready_timeout_s:g} s "
                f"(bundles {asks}): back to the queue"
            )
            self._kill(job_id)
            self.notify(
                JobEvent(job_id=job_id, status=JobStatus.PENDING, at_s=self.store.now(), message=message)
            )

    def _collect(self, job_id: str, gang: _Gang, rank: int, ref: Any) -> int:
        import ray

        try:
            code, lines = ray.get(ref)
        except Exception as exc:  # the task itself died (worker crash, node loss)
            code, lines = -1, [f"ray task failed: {exc}"]
        self.store.logs.append(job_id, gang.record.attempt, rank, lines)
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
        self._kill(job_id, ended=not failed)

    def close(self) -> None:
        """Stop every gang and wait (bounded) until their processes are gone and groups freed."""
        for job_id in list(self._gangs):
            self._kill(job_id)
        deadline = time.monotonic() + 2 * _STOP_GRACE_S + 6.0
        while self._stopping and time.monotonic() < deadline:
            time.sleep(0.1)
            self._reap()
