"""`Simulation`: a discrete-event replay of a trace through the one `Scheduler`.

Events are arrivals, completions and (for Tiresias-like policies) the moments a running job crosses a
service level, kept in a heap with lazy invalidation (each job carries a version). Job timelines live
in plain lists indexed by job; a job's progress is brought up to date only when someone looks at it.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence

from skyline.core import JobSpec, Placement, Resources, Tier
from skyline.errors import CapacityError, ConfigError
from skyline.scheduling.packing import GPU, NodeSpec, Packer, Placing
from skyline.scheduling.policy import Policy
from skyline.scheduling.scheduler import Scheduler
from skyline.scheduling.view import JobView, RoundView
from skyline.simulation.config import SimConfig
from skyline.simulation.executor import SimClock, SimExecutor
from skyline.simulation.outcome import Outcome
from skyline.simulation.trace import Trace

_FINISH, _ARRIVAL, _LEVEL, _ROUND = 0, 1, 2, 3
_EPS = 1e-9


class Simulation:
    """Replays ``trace`` on ``nodes`` under ``policy``; `run` returns the per-job `Outcome`."""

    def __init__(
        self, trace: Trace, nodes: Sequence[NodeSpec], policy: Policy, config: SimConfig | None = None
    ) -> None:
        self.trace, self.policy = trace, policy
        self.config = config or SimConfig()
        self.packer = Packer(nodes)
        self.clock = SimClock()
        self.executor = SimExecutor(self.clock, self._started, self._stopped)
        self.scheduler = Scheduler(policy, self.clock, self.executor)
        jobs = trace.jobs
        n = len(jobs)
        self.requests = [j.request() for j in jobs]
        self.gpus = [r.total_gpu_milli / GPU for r in self.requests]
        self.remaining = [j.duration_s for j in jobs]
        self.rate = [0.0] * n
        self.last = [0.0] * n
        self.first_start: list[float | None] = [None] * n
        self.finish: list[float | None] = [None] * n
        self.preemptions = [0] * n
        self.version = [0] * n
        self.views: list[JobView | None] = [None] * n
        self.active: dict[int, JobView] = {}  # unfinished, in arrival order
        self.waiting: dict[int, JobView] = {}  # unfinished and not running, in arrival order
        self._resort = False
        self.rejected: list[int] = []
        self._index = {j.id: i for i, j in enumerate(jobs)}
        if len(self._index) != n:
            raise ConfigError(f"trace {trace.name} has duplicate job ids")
        self._specs: dict[int, JobSpec] = {}
        self._heap: list[tuple[float, int, int, int]] = []
        self._levels = tuple(getattr(policy, "service_levels", ()))
        self.busy_gpus = 0.0
        self.running = 0
        self.timeline: list[tuple[float, float, int]] = []  # (t, busy GPUs, pending jobs) at each decision
        self.busy_gpu_s = 0.0
        self.idle_while_waiting_gpu_s = 0.0
        self.waiting_s = 0.0
        self._t_mark = 0.0
        self._dirty = False  # something happened since the last decision
        self._tick_pending = False  # a round tick is in the heap

    # ------------------------------------------------------------------ the executor's callbacks
    def _spec(self, i: int) -> JobSpec:
        spec = self._specs.get(i)
        if spec is None:
            job, req = self.trace.jobs[i], self.requests[i]
            gpu_type = job.gpu_type if job.gpu_type and "|" not in job.gpu_type else None
            spec = JobSpec(
                id=job.id,
                resources=Resources(
                    gpu_milli=req.gpu_milli,
                    cpu_milli=req.cpu_milli,
                    memory_mib=req.memory_mib,
                    gpu_type=gpu_type,
                )
                if not (req.gpu_milli == 0 and req.cpu_milli == 0 and req.memory_mib == 0)
                else Resources(cpu_milli=1),
                replicas=req.replicas,
                submit_time_s=job.submit_s,
                tiers=frozenset(Tier.parse(t) for t in job.tiers),
                duration_s=job.duration_s,
                job_type=job.job_type,
                priority=job.priority,
            )
            self._specs[i] = spec
        return spec

    def _started(self, spec: JobSpec, placements: Sequence[Placement]) -> None:
        i, t = self._index[spec.id], self.clock.t
        index = self.packer.index
        placing: Placing = tuple((index[p.node_id], tuple(p.gpu_indices)) for p in placements)
        view = self.views[i]
        assert view is not None
        view.placing = placing
        del self.waiting[i]
        if self.first_start[i] is None:
            self.first_start[i] = t
        elif self.config.restart_penalty_s:
            self.remaining[i] += self.config.restart_penalty_s
            if view.remaining_s is not None:
                view.remaining_s = self.remaining[i]
        self.rate[i] = view.rate = self._rate(i, placing)
        self.last[i] = view.progress_at_s = t
        self.busy_gpus += self.gpus[i]
        self.running += 1
        self._schedule(i, t)

    def _stopped(self, job_id: str) -> None:
        i = self._index[job_id]
        self._progress(i, self.clock.t)
        view = self.views[i]
        assert view is not None
        view.placing = None
        self.waiting[i] = view
        self._resort = True
        view.restarts += 1
        self.preemptions[i] += 1
        self.version[i] += 1
        self.busy_gpus -= self.gpus[i]
        self.running -= 1

    # ------------------------------------------------------------------ job timelines
    def _rate(self, i: int, placing: Placing) -> float:
        job, nodes = self.trace.jobs[i], self.packer.nodes
        speed = 1.0
        speeds = self.config.throughput.get(job.job_type)
        if speeds:
            speed = min(speeds.get(nodes[n].gpu_type or "", 1.0) for n, _ in placing)
        used = len({n for n, _ in placing})
        if used > 1 and self.config.consolidation_slowdown != 1.0:
            req = self.requests[i]
            whole = max(req.whole, 1) * req.replicas
            if used > math.ceil(whole / self.packer.max_gpus):
                speed /= self.config.consolidation_slowdown
        return speed

    def _progress(self, i: int, t: float) -> None:
        """Bring a running job's remaining work and attained service up to ``t``."""
        dt = t - self.last[i]
        if dt > 0:
            self.remaining[i] = max(self.remaining[i] - dt * self.rate[i], 0.0)
            view = self.views[i]
            assert view is not None
            view.attained_gpu_s += dt * self.gpus[i]
            if view.remaining_s is not None:
                view.remaining_s = self.remaining[i]
        self.last[i] = t
        view = self.views[i]
        assert view is not None
        view.progress_at_s = t

    def _schedule(self, i: int, t: float) -> None:
        self.version[i] += 1
        v = self.version[i]
        heapq.heappush(self._heap, (t + self.remaining[i] / self.rate[i], _FINISH, i, v))
        if self._levels:
            view = self.views[i]
            assert view is not None
            for level in self._levels:
                if level > view.attained_gpu_s + _EPS:
                    cross = t + (level - view.attained_gpu_s) / max(self.gpus[i], 1e-9)
                    heapq.heappush(self._heap, (cross, _LEVEL, i, v))
                    break

    def _arrive(self, i: int) -> None:
        job, req = self.trace.jobs[i], self.requests[i]
        if not self.packer.could_ever_fit(req):
            self.rejected.append(i)  # would wait forever: counted, never queued
            return
        oracle = self.policy.oracle
        view = JobView(
            index=i,
            id=job.id,
            request=req,
            submit_s=job.submit_s,
            duration_s=job.duration_s if oracle else None,
            remaining_s=job.duration_s if oracle else None,
            job_type=job.job_type,
            priority=job.priority,
        )
        self.views[i] = view
        self.active[i] = view
        self.waiting[i] = view

    def _complete(self, i: int, t: float) -> None:
        view = self.active.pop(i)
        self._progress(i, t)
        assert view.placing is not None
        self.packer.release(view.request, view.placing)
        view.placing = None
        self.finish[i] = t
        self.version[i] += 1
        self.busy_gpus -= self.gpus[i]
        self.running -= 1
        self.executor.finished(view.id)

    def _decide(self, t: float) -> None:
        if self._resort:  # preempted jobs were appended: back to submit (= index) order
            self.waiting = dict(sorted(self.waiting.items()))
            self._resort = False
        round_view = RoundView(
            now_s=t,
            jobs=list(self.active.values()),
            waiting=list(self.waiting.values()),
            packer=self.packer,
            throughput=self.config.throughput,
        )
        self.scheduler.step(round_view, self._spec)
        self.executor.events()  # the simulator is the world: nothing else consumes them
        pending = len(self.active) - self.running
        self.timeline.append((t, self.busy_gpus, pending))

    def _account(self, t: float) -> None:
        """Integrate busy GPUs and idle-while-waiting GPUs from the previous event to ``t``."""
        dt = t - self._t_mark
        if dt > 0:
            self.busy_gpu_s += self.busy_gpus * dt
            if len(self.active) > self.running:
                self.waiting_s += dt
                self.idle_while_waiting_gpu_s += (self.packer.free_gpu_milli / GPU) * dt
        self._t_mark = t

    def run(self, progress: Callable[[int], None] | None = None) -> Outcome:
        """Replay every job; ``progress(k)`` is called as ``k`` more jobs finish."""
        wall = time.perf_counter()
        heap = self._heap
        for i, job in enumerate(self.trace.jobs):
            heap.append((job.submit_s, _ARRIVAL, i, 0))
        heapq.heapify(heap)
        while heap:
            t = heap[0][0]
            self._account(t)
            self.clock.t = t
            tick, done = self._pop_events(t)
            if progress is not None and done:
                progress(done)
            self._maybe_decide(t, tick)
        return self._outcome(time.perf_counter() - wall)

    def _pop_events(self, t: float) -> tuple[bool, int]:
        """Handle every event at ``t``: (whether a round tick was among them, jobs finished)."""
        heap = self._heap
        tick = False
        done = 0
        while heap and heap[0][0] <= t + _EPS:
            _, kind, i, v = heapq.heappop(heap)
            if kind == _ARRIVAL:
                self._arrive(i)
                self._dirty = True
            elif kind == _ROUND:
                tick = True
            elif v == self.version[i]:
                if kind == _FINISH:
                    self._complete(i, t)
                    done += 1
                self._dirty = True
        return tick, done

    def _maybe_decide(self, t: float, tick: bool) -> None:
        """Decide at once (event-driven), or at the next round boundary when something changed."""
        round_s = self.config.round_s
        if round_s <= 0:
            if self._dirty:
                self._decide(t)
                self._dirty = False
            return
        if tick:
            self._tick_pending = False
        on_boundary = abs(t / round_s - round(t / round_s)) < _EPS
        if self._dirty and (tick or on_boundary):
            self._decide(t)
            self._dirty = False
        elif self._dirty and not self._tick_pending:
            heapq.heappush(self._heap, ((math.floor(t / round_s) + 1) * round_s, _ROUND, -1, 0))
            self._tick_pending = True

    def _outcome(self, wall_s: float) -> Outcome:
        return Outcome(
            trace=self.trace,
            policy=self.policy.name,
            config=self.config,
            total_gpus=self.packer.total_gpus,
            first_start=self.first_start,
            finish=self.finish,
            preemptions=self.preemptions,
            rejected=tuple(self.rejected),
            unfinished=tuple(self.active),  # jobs the policy never placed (reported, not hidden)
            decision_s=tuple(self.scheduler.decision_s),
            timeline=tuple(self.timeline),
            busy_gpu_s=self.busy_gpu_s,
            idle_while_waiting_gpu_s=self.idle_while_waiting_gpu_s,
            waiting_s=self.waiting_s,
            wall_s=wall_s,
        )


def simulate(
    trace: Trace,
    policy: Policy,
    *,
    nodes: Sequence[NodeSpec] | None = None,
    config: SimConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Replay ``trace`` under ``policy`` on ``nodes`` (default: the trace's own cluster)."""
    cluster = tuple(nodes) if nodes else trace.nodes
    if not cluster:
        raise CapacityError(f"trace {trace.name} names no cluster: pass nodes (e.g. --cluster 32x8)")
    return Simulation(trace, cluster, policy, config).run(progress)
