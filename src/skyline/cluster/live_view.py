"""`LiveViews`: the `RoundView` a policy decides on, read from the control plane's store each pass.

The same view the simulator keeps alive: node pools (GPU model, tier), each job's request with its
tiers and models, attained service (its finished attempts' running time plus the running one's, so it
keeps growing while the job runs), duration estimates for oracle policies (the job's own, else the
history of its owner's same command), forecasts and the throughput matrix.

Job specs never change and one attempt's placement never changes, so both are read once and cached;
each pass reads only the small mutable part of the queue (`QueueRow`). A job no alive node could hold
(its tier, GPU model or size) is kept out of the view, so it never blocks a FIFO queue; `unfit` says why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from skyline.cluster.job_rows import QueueRow
from skyline.cluster.job_store import ACTIVE
from skyline.cluster.store import Store
from skyline.core import Cluster, DemandForecast, JobSpec, JobStatus, Placement, Resources
from skyline.scheduling.packing import GPU, Packer, Request
from skyline.scheduling.policy import commit_running, packer_for, request_for
from skyline.scheduling.reasons import unplaceable
from skyline.scheduling.view import JobView, RoundView

ESTIMATES_TTL_S = 10.0  # history estimates are re-read this often (a job's estimate is a median)


@dataclass(slots=True)
class LivePass:
    """One pass's inputs: the view, the spec of each view index, and the jobs kept out (id → why)."""

    view: RoundView
    specs: list[JobSpec]
    unfit: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Snapshot:
    rows: list[QueueRow]
    cluster: Cluster  # the capacity the policy may use (incremental: what running CPU jobs left)
    full: Cluster  # the alive nodes' whole capacity (what "could ever fit" is judged on)


class LiveViews:
    """Reads the store and builds each pass's `LivePass` (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._specs: dict[str, JobSpec] = {}
        self._requests: dict[str, Request] = {}
        self._commands: dict[str, tuple[str, str]] = {}  # job id → (owner, command), for estimates
        self._estimated: dict[str, float | None] = {}  # job id → its own estimate_s
        self._placed: dict[tuple[str, int], tuple[Placement, ...]] = {}
        self._cluster = Cluster()
        self._nodes_version: tuple[tuple[object, ...], ...] = ()
        self._fit: Packer | None = None  # the alive nodes, empty: what could ever fit
        self._history: dict[tuple[str, str], float] = {}
        self._history_at = float("-inf")
        self._looked_up: set[tuple[str, str]] = set()
        self._finished_seen = -1

    def snapshot(self, *, incremental: bool) -> _Snapshot | None:
        """What the pass decides on; None when nothing waits (incremental) or nothing is unfinished.

        ``incremental`` (a policy that never preempts): the queue and the capacity left, with CPU-only
        running jobs folded into their nodes' capacity (one aggregate query) and GPU jobs handed over
        with their placements (their devices are named). A pass then costs in proportion to the queue.
        """
        if incremental:
            pending = self.store.jobs.queue_view((str(JobStatus.PENDING),))
            if not pending:
                return None
            rows = pending + self.store.jobs.queue_view(ACTIVE, gpu_only=True)
        else:
            rows = self.store.jobs.queue_view()
            if not rows:
                return None
        self._cache(rows)
        full = self._alive_cluster()
        if not len(full):
            return None
        return _Snapshot(rows, self._left_after_cpu_jobs(full) if incremental else full, full)

    def build(
        self,
        snap: _Snapshot,
        *,
        now_s: float,
        oracle: bool,
        throughput: Mapping[str, Mapping[str, float]],
        forecasts: Mapping[str, DemandForecast],
        exclude: frozenset[str] = frozenset(),
    ) -> LivePass:
        """A fresh view of ``snap`` (its packer may be taken apart by the policy), without ``exclude``."""
        packer = packer_for(snap.cluster)
        fit = self._fit
        assert fit is not None, "snapshot() reads the nodes first"
        alive = {n.id for n in snap.cluster}
        estimates = self._estimates(snap.rows, now_s) if oracle else {}
        jobs: list[JobView] = []
        specs: list[JobSpec] = []
        unfit: dict[str, str] = {}
        for row in snap.rows:
            if row.id in exclude:
                continue
            job = self._job_view(row, len(specs), now_s, estimates.get(row.id))
            if row.status == str(JobStatus.PENDING):
                why = unplaceable(fit, job.request, nodes="alive node")
                if why is not None:
                    unfit[row.id] = why
                    continue
            else:
                placements = self._placed.get((row.id, row.attempt))
                if not placements or any(p.node_id not in alive for p in placements):
                    continue  # its node vanished: the lost-node check requeues it
                job.placing = commit_running(packer, job.request, placements)
            jobs.append(job)
            specs.append(self._specs[row.id])
        waiting = [j for j in jobs if j.placing is None]
        view = RoundView(
            now_s=now_s, jobs=jobs, waiting=waiting, packer=packer, throughput=throughput, forecasts=forecasts
        )
        return LivePass(view, specs, unfit)

    def _job_view(self, row: QueueRow, index: int, now_s: float, estimate_s: float | None) -> JobView:
        spec, request = self._specs[row.id], self._requests[row.id]
        gpus = request.total_gpu_milli / GPU
        progress_at = row.running_since if row.running_since is not None else now_s
        view = JobView(
            index=index,
            id=row.id,
            request=request,
            submit_s=spec.submit_time_s,
            attained_gpu_s=row.service_s * gpus,
            job_type=spec.job_type,
            priority=spec.priority,
            restarts=row.restarts,
            kind=str(spec.kind),
            group=spec.labels.get("service", ""),
            progress_at_s=progress_at,
        )
        if estimate_s is not None:  # oracle policies: the estimate, and what is left of it
            view.duration_s = estimate_s
            view.remaining_s = max(estimate_s - row.service_s, 0.0)
        return view

    def _estimates(self, rows: list[QueueRow], now_s: float) -> dict[str, float]:
        """Each job's duration estimate: its own ``estimate_s``, else its owner's same command's median."""
        missing = {self._commands[r.id] for r in rows if self._estimated.get(r.id) is None}
        # Look again when jobs finished since, a command is new, or now and then (other writers).
        fresh = (self.store.jobs.finished, missing <= self._looked_up)
        if missing and (
            fresh != (self._finished_seen, True) or time.monotonic() - self._history_at > ESTIMATES_TTL_S
        ):
            self._history = self.store.jobs.history_estimates(missing)
            self._history_at, self._looked_up = time.monotonic(), missing
            self._finished_seen = self.store.jobs.finished
        out: dict[str, float] = {}
        for row in rows:
            own = self._estimated.get(row.id)
            value = own if own is not None else self._history.get(self._commands[row.id])
            if value is not None:
                out[row.id] = value
        return out

    # ------------------------------------------------------------------ caches
    def _cache(self, rows: list[QueueRow]) -> None:
        unseen = [row.id for row in rows if row.id not in self._specs]
        for start in range(0, len(unseen), 500):
            for record in self.store.jobs.by_ids(unseen[start : start + 500]):
                self._specs[record.id] = spec = record.as_spec()
                self._requests[record.id] = request_for(spec)
                self._commands[record.id] = (record.owner, record.command)
                self._estimated[record.id] = record.estimate_s
        active = [(row.id, row.attempt) for row in rows if row.status != str(JobStatus.PENDING)]
        uncached = [job_id for job_id, attempt in active if (job_id, attempt) not in self._placed]
        for start in range(0, len(uncached), 500):
            found = self.store.jobs.active_placements(uncached[start : start + 500])
            for key, replicas in found.items():
                spec = self._specs[key[0]]
                self._placed[key] = tuple(
                    Placement(node_id=node_id, resources=spec.resources, gpu_indices=gpus)
                    for node_id, gpus in replicas
                )
        if len(self._specs) > 2 * len(rows) + 1000:  # forget finished jobs now and then
            live = {row.id for row in rows}
            for cache in (self._specs, self._requests, self._commands, self._estimated):
                for job_id in [k for k in cache if k not in live]:
                    del cache[job_id]
            self._placed = {k: v for k, v in self._placed.items() if k[0] in live}

    def _alive_cluster(self) -> Cluster:
        versions = self.store.nodes.alive_versions()
        if versions != self._nodes_version or self._fit is None:
            self._cluster = Cluster(n.as_node() for n in self.store.nodes.find(alive_only=True))
            self._fit = packer_for(self._cluster) if len(self._cluster) else None
            self._nodes_version = versions
        return self._cluster

    def _left_after_cpu_jobs(self, cluster: Cluster) -> Cluster:
        used = self.store.jobs.cpu_usage_by_node()
        nodes = []
        for node in cluster:
            cpu_milli, memory_mib = used.get(node.id, (0, 0))
            cap = node.capacity
            if cpu_milli or memory_mib:
                left = Resources(
                    cpu_milli=max(cap.cpu_milli - cpu_milli, 0),
                    memory_mib=max(cap.memory_mib - memory_mib, 0),
                    gpu_milli=cap.gpu_milli,
                    gpu_type=cap.gpu_type,
                )
                node = replace(node, capacity=left)
            nodes.append(node)
        return Cluster(nodes)
