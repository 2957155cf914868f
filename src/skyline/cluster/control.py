"""`ControlPlane`: the loop that keeps the world matching the store.

Each pass: apply the executor's events, declare silent nodes lost (requeueing their jobs), then build
the view a policy decides on (`LiveViews`, the same view the simulator keeps) and ask the policy through
`skyline.scheduling.Scheduler`, which starts and stops jobs via the executor. A pass runs when something
changed (a submit, a report, a cancel) and at least every ``tick_s``.

A job no alive node can hold waits with the reason in its ``message``; one the whole cluster never
could hold is refused at submit (`submit`, 422). A policy that raises on some job fails the decision for
that job only (found by bisection, logged, the job waits with the reason); the others are decided.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from skyline.cluster.executors import ClusterExecutor
from skyline.cluster.live_view import LivePass, LiveViews
from skyline.cluster.node_store import UsageSample
from skyline.cluster.records import Assignment, JobRecord, ReplicaReport
from skyline.cluster.spec import JobRequest
from skyline.cluster.store import Store
from skyline.core import Clock, DemandForecast, JobEvent, JobSpec
from skyline.errors import ConfigError, ConflictError, SkylineError
from skyline.scheduling.packing import Packer
from skyline.scheduling.policy import Policy, packer_for, request_for
from skyline.scheduling.reasons import unplaceable
from skyline.scheduling.scheduler import Scheduler
from skyline.scheduling.view import Decision

log = logging.getLogger("skyline.cluster")
MAX_OFFENDERS = 5  # jobs one pass may set aside for making the policy raise, before it gives up


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    """How often the loop runs and how long a node may stay silent before it is declared lost."""

    tick_s: float = 0.5
    lost_after_s: float = 10.0

    def __post_init__(self) -> None:
        if not 0 < self.tick_s <= 60:
            raise ConfigError(f"tick_s must be in (0, 60] seconds, got {self.tick_s}")
        if not self.lost_after_s > self.tick_s:
            raise ConfigError(f"lost_after_s must exceed tick_s ({self.tick_s}), got {self.lost_after_s}")


class ControlPlane:
    """Owns the scheduling loop thread. `wake` asks for a pass now; `stop` ends the thread.

    ``throughput[job_type][gpu_type]`` (Gavel's matrix) and the forecasts handed in by `set_forecasts`
    reach the policy in its view, as in the simulator.
    """

    def __init__(
        self,
        store: Store,
        executor: ClusterExecutor,
        policy: Policy,
        clock: Clock,
        config: ControlConfig,
        *,
        throughput: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.store = store
        self.executor = executor
        self.clock = clock
        self.config = config
        self.scheduler = Scheduler(policy, clock, executor)
        # A policy that never preempts decides on the queue and the capacity left (`LiveViews.snapshot`).
        self.incremental = not policy.preemptive
        self.throughput = MappingProxyType(dict(throughput or {}))
        self._forecasts: Mapping[str, DemandForecast] = MappingProxyType({})
        self.views = LiveViews(store)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.passes = 0
        self._lost_checked_at = float("-inf")
        self._reasons: dict[str, str] = {}  # the wait reason last written for each job
        self._registered: tuple[int, Packer | None] = (-1, None)  # (node generation, every node's packer)

    @property
    def policy(self) -> Policy:
        return self.scheduler.policy

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="skyline-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.close()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.config.tick_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            started = time.perf_counter()
            try:
                self.run_once()
            except Exception:  # the loop must survive a bad pass; the next one retries from the store
                log.exception("control-plane pass failed")
            # Rest a tenth of the pass (at most tick_s): under a burst of submissions the next pass then
            # places a batch, and the API's event loop gets the interpreter in between. A longer rest
            # places bigger batches but later. Since submits are group-committed the API needs little of
            # that time: in the control-plane benchmark half a pass gave the same jobs/s as a tenth (within
            # its noise) and a p99 of ~90 ms instead of ~55 ms.
            self._stop.wait(min(0.1 * (time.perf_counter() - started), self.config.tick_s))

    def run_once(self) -> Decision:
        """One pass: events, lost nodes, then a scheduling decision. Returns the decision."""
        self.executor.refresh()
        for event in self.executor.events():
            self.store.jobs.apply_event(event)
        lost = self._check_lost()
        if lost:
            requeued = [
                j for j in self.store.jobs.on_nodes(lost) if self.store.jobs.requeue(j, "its node was lost")
            ]
            log.warning("node(s) %s lost; %d job(s) requeued", ", ".join(lost), len(requeued))
        self.passes += 1
        snap = self.views.snapshot(incremental=self.incremental)
        if snap is None:
            return Decision()
        now = self.clock.now_s()

        def build(exclude: frozenset[str]) -> LivePass:
            return self.views.build(
                snap, now_s=now, oracle=self.policy.oracle, throughput=self.throughput,
                forecasts=self._forecasts, exclude=exclude,
            )  # fmt: skip

        live, decision, failed = self._decide(build)
        self.scheduler.apply(live.view, decision, lambda index: live.specs[index])
        self.executor.flush()
        refused = {live.view.jobs[i].id: why for i, why in decision.refused.items()}
        self._publish_reasons({**live.unfit, **failed, **refused})
        return decision

    def _decide(
        self, build: Callable[[frozenset[str]], LivePass]
    ) -> tuple[LivePass, Decision, dict[str, str]]:
        """The policy's decision; when it raises, the decision without the jobs that make it raise.

        An offender is found by bisection over the waiting jobs: the shortest prefix of them whose
        presence makes the policy raise ends with one. Returns the pass, the decision and the jobs set
        aside (id → why).
        """
        excluded: dict[str, str] = {}
        while True:
            live = build(frozenset(excluded))
            try:
                return live, self.scheduler.decide(live.view), excluded
            except Exception as exc:
                candidates = [j.id for j in live.view.waiting]
                offender = self._offender(build, frozenset(excluded), candidates)
                if offender is None or len(excluded) >= MAX_OFFENDERS:
                    log.exception("policy %s failed; nothing placed this pass", self.policy.name)
                    return build(frozenset(excluded)), Decision(), excluded
                log.error("policy %s failed on job %s: %s (the job waits)", self.policy.name, offender, exc)
                excluded[offender] = f"policy {self.policy.name} failed on this job: {exc}; it waits"

    def _offender(
        self, build: Callable[[frozenset[str]], LivePass], excluded: frozenset[str], candidates: list[str]
    ) -> str | None:
        def fails(keep: int) -> bool:  # with only the first ``keep`` candidates waiting
            try:
                self.scheduler.decide(build(excluded | frozenset(candidates[keep:])).view)
            except Exception:
                return True
            return False

        if not candidates or fails(0):
            return None  # not a waiting job's doing
        low, high = 0, len(candidates)  # fails(low) is False, fails(high) is True
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if fails(middle) else (middle, high)
        return candidates[high - 1]

    def _publish_reasons(self, reasons: dict[str, str]) -> None:
        """Write why each pending job that cannot be placed waits (only what changed since the last
        pass); a job that can be placed again loses the reason."""
        changed = {k: v for k, v in reasons.items() if self._reasons.get(k) != v}
        cleared = {k: "waiting for free resources" for k in self._reasons if k not in reasons}
        if changed or cleared:
            self.store.jobs.set_wait_reasons({**cleared, **changed})
        self._reasons = dict(reasons)

    def _check_lost(self) -> list[str]:
        # Once per tick is enough to notice a node silent for lost_after_s (> tick_s); passes woken by
        # every submit and report would otherwise query for it hundreds of times a second.
        now = time.monotonic()
        if now - self._lost_checked_at < self.config.tick_s:
            return []
        self._lost_checked_at = now
        return self.store.nodes.mark_lost(silent_for_s=self.config.lost_after_s)

    # ------------------------------------------------------------------ what the API calls
    def submit(self, request: JobRequest, *, owner: str) -> tuple[JobRecord, bool]:
        """Admit and queue a job (the API's and the console's one path); wake the loop.

        Refused with a `ConfigError` (HTTP 422) when no registered node, alive or lost, could ever hold it
        (its tier, GPU model or size); a cluster no node has joined yet takes every job.
        """
        refusal = self._refusal(request)
        if refusal is not None:
            raise refusal
        record, created = self.store.jobs.submit(request, owner=owner)
        if created:
            self.wake()
        return record, created

    def submit_many(
        self, batch: Sequence[tuple[JobRequest, str]]
    ) -> list[tuple[JobRecord, bool] | Exception]:
        """`submit` for (request, owner) pairs that arrived together: the admitted ones are queued in one
        transaction (a group commit, `JobStore.submit_many`). Answers in order: (record, created), or the
        error `submit` would have raised. Should the joint transaction fail, each job is queued on its own,
        so that one bad request costs only its own submit."""
        refused = {i: why for i, (request, _) in enumerate(batch) if (why := self._refusal(request))}
        queued = iter(self._queue([item for i, item in enumerate(batch) if i not in refused]))
        answers = [refused[i] if i in refused else next(queued) for i in range(len(batch))]
        if any(isinstance(a, tuple) and a[1] for a in answers):
            self.wake()
        return answers

    def _queue(self, items: list[tuple[JobRequest, str]]) -> list[tuple[JobRecord, bool] | Exception]:
        if not items:
            return []
        try:
            return list(self.store.jobs.submit_many(items))
        except Exception as exc:  # rolled back: nothing of the batch was written
            if len(items) == 1:
                return [exc]
        log.warning("a group commit of %d submits failed; queueing them one by one", len(items))
        return [self._queue_one(request, owner) for request, owner in items]

    def _queue_one(self, request: JobRequest, owner: str) -> tuple[JobRecord, bool] | Exception:
        try:
            return self.store.jobs.submit(request, owner=owner)
        except Exception as exc:  # this request's answer (the others' are not affected)
            return exc

    def _refusal(self, request: JobRequest) -> ConfigError | None:
        """Why no registered node, alive or lost, could ever hold this job (None: some could)."""
        fit = self._registered_packer()
        if fit is None:
            return None
        why = unplaceable(fit, request_for(_spec_of(request)), nodes="registered node")
        if why is None:
            return None
        return ConfigError(f"this job can never run here: {why}; change its request or add such a node")

    def _registered_packer(self) -> Packer | None:
        generation = self.store.nodes.generation
        if self._registered[0] != generation:
            nodes = [n.as_node() for n in self.store.nodes.find()]
            self._registered = (generation, packer_for(nodes) if nodes else None)
        return self._registered[1]

    def heartbeat(
        self, node_id: str, sample: UsageSample, reports: Sequence[ReplicaReport]
    ) -> tuple[list[Assignment], list[JobEvent | SkylineError | None]]:
        """An agent's beat: record its sample and reports; the replicas it must run, and per report the
        job event it implied, None, or why it was refused. A job event wakes the loop."""
        if not self.store.nodes.heartbeat(node_id, sample):
            raise ConflictError(f"node {node_id!r} is unknown or was declared lost; register it again")
        outcomes = self.store.jobs.report_replicas(node_id, reports)
        events = [o for o in outcomes if isinstance(o, JobEvent)]
        for event in events:
            self.executor.notify(event)
        if events:
            self.wake()
        return self.store.nodes.assignments(node_id), outcomes

    def set_forecasts(self, forecasts: Mapping[str, DemandForecast]) -> None:
        """Demand forecasts by series name: the policy sees them in its view from the next pass on."""
        self._forecasts = MappingProxyType(dict(forecasts))
        self.wake()

    def cancel(self, job_id: str) -> None:
        self.store.jobs.cancel(job_id)
        self.executor.release(job_id)
        self.wake()


def _spec_of(request: JobRequest) -> JobSpec:
    return JobSpec(
        id="admission", resources=request.resources, replicas=request.replicas, tiers=request.tiers
    )
