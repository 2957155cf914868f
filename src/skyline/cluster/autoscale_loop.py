"""`AutoscaleLoop`: the gateway's telemetry into the metrics history, and each service's autoscaler run on it.

Every ``metrics_interval_s`` (on the wall clock's multiples of it) the loop takes each service's telemetry
window from the gateway and stores it (``service_metrics``). A service's demand series is its requests per
autoscaling step (``step_s``, steps aligned to multiples of it); when a step ends, the service's
autoscaler (`build_autoscaler`: the same `HybridAutoscaler` that `skyline.scheduling.autoscaling.simulate`
replays) decides the replica count from the series so far, and the decision is recorded with its inputs
(observed demand, forecast, each rule's answer, the lead time, why). A predictive service's forecast,
in replicas per future step, is also handed to the scheduler (`ClusterState.forecasts`, series
``service:<name>``) so that batch work leaves that capacity free.
"""

from __future__ import annotations

import logging
import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from skyline.cluster.service_spec import AutoscaleSpec, ServiceSpec
from skyline.cluster.service_store import ServiceRecord
from skyline.core import DemandForecast
from skyline.scheduling.autoscaling import (
    HybridAutoscaler,
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    RollingForecasts,
    ScalingTarget,
)
from skyline.scheduling.forecasting import UPPER_QUANTILE, Series, make_forecaster

if TYPE_CHECKING:
    from skyline.cluster.gateway import Gateway
    from skyline.cluster.services import ServicesConfig
    from skyline.cluster.store import Store

log = logging.getLogger("skyline.cluster.autoscale")
DEFAULT_LEAD_S = 10.0  # until a replica of the service has been seen starting


def build_autoscaler(spec: AutoscaleSpec, *, lead_steps: int) -> HybridAutoscaler:
    """The autoscaler a service with ``spec`` runs; the replay of its history builds the same one."""
    reactive = ReactiveAutoscaler(target_utilisation=spec.target_utilisation, window_steps=spec.window_steps)
    cooldown_steps = math.ceil(spec.cooldown_s / spec.step_s - 1e-9)
    if spec.mode == "reactive":
        return HybridAutoscaler(None, floor=reactive, cooldown_steps=cooldown_steps)
    forecaster = make_forecaster(spec.forecaster, horizon=lead_steps + 1)
    forecasts = RollingForecasts(forecaster, refit_every=spec.refit_every_steps)
    return HybridAutoscaler(PredictiveAutoscaler(forecasts), floor=reactive, cooldown_steps=cooldown_steps)


def scaling_target(spec: ServiceSpec, *, lead_s: float) -> ScalingTarget:
    """One replica serves ``target_rps_per_replica`` × ``step_s`` requests per step; ready ``lead_s`` after asked."""
    rps = spec.autoscale.target_rps_per_replica or 1.0
    return ScalingTarget(
        capacity_per_step=rps * spec.autoscale.step_s,
        startup_s=lead_s,
        min_units=spec.min_replicas,
        max_units=spec.max_replicas,
    )


def lead_steps_of(lead_s: float, step_s: float) -> int:
    return math.ceil(lead_s / step_s - 1e-9)


@dataclass(slots=True)
class _Scaler:
    """One service's autoscaler and its demand series (requests per step since ``origin_s``)."""

    spec: ServiceSpec
    lead_s: float
    autoscaler: HybridAutoscaler
    origin_s: float
    values: list[float] = field(default_factory=list)
    decided: int = 0  # steps decided on so far
    synced_s: float = float("-inf")  # the newest telemetry window read from the store

    def add(self, at_s: float, requests: float) -> None:
        step = math.ceil((at_s - self.origin_s) / self.spec.autoscale.step_s - 1e-9) - 1
        if step < self.decided:  # a window of a step already decided on (late): count it in the next one
            step = self.decided
        if step >= len(self.values):
            self.values.extend([0.0] * (step + 1 - len(self.values)))
        self.values[step] += requests


class AutoscaleLoop:
    """Stores telemetry and runs every autoscaled service's decisions; ``forecasts`` for the scheduler.

    ``ready_counts()`` gives each service's ready replicas (stored with its telemetry); ``wake()`` tells
    the reconciler that a service's desired count changed; ``publish(forecasts)`` hands every
    predictive service's latest forecast to the scheduler after each pass that changed one.
    """

    def __init__(
        self,
        store: Store,
        gateway: Gateway,
        config: ServicesConfig,
        *,
        ready_counts: Callable[[], Mapping[str, int]] = dict,
        wake: Callable[[], None] = lambda: None,
        publish: Callable[[Mapping[str, DemandForecast]], None] = lambda _forecasts: None,
    ) -> None:
        self.store, self.gateway, self.config = store, gateway, config
        self.ready_counts, self.wake, self.publish = ready_counts, wake, publish
        self.forecasts: dict[str, DemandForecast] = {}
        self._scalers: dict[str, _Scaler] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    # ------------------------------------------------------------------ life cycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="skyline-autoscale", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        interval = self.config.metrics_interval_s
        tick = math.ceil(time.time() / interval) * interval
        while not self._stop.wait(max(tick - time.time(), 0.0)):
            try:
                self.run_once(tick)
            except Exception:  # the loop must survive a bad pass; telemetry of this interval is lost
                log.exception("autoscale pass failed")
            tick += interval
            if tick < time.time():  # fell behind (a long forecaster fit): skip to the next multiple
                tick = math.ceil(time.time() / interval) * interval

    # ------------------------------------------------------------------ one pass
    def run_once(self, now_s: float) -> None:
        """Store the windows ending at ``now_s`` (a multiple of the interval) and decide on ended steps."""
        records = {r.name: r for r in self.store.services.find()}
        windows = [w for w in self.gateway.take_telemetry(wall_s=now_s) if w.service in records]
        ready = self.ready_counts()
        self.store.services.add_metrics(
            [(records[w.service].id, w, ready.get(w.service, 0), records[w.service].desired) for w in windows]
        )
        for name in [n for n in self._scalers if n not in records]:
            del self._scalers[name]
            self.forecasts.pop(f"service:{name}", None)
        before = dict(self.forecasts)
        for record in records.values():
            if record.status != "active" or record.spec.autoscale.mode == "off":
                self._scalers.pop(record.name, None)
                self.forecasts.pop(f"service:{record.name}", None)
                continue
            try:
                scaler = self._scaler(record, now_s)
                self._sync(record, scaler, now_s)
                self._decide_due(record, scaler, now_s)
            except Exception:  # one service's failure (a forecaster that cannot fit) never stops the others
                log.exception("service %s: autoscaling failed", record.name)
        if self.forecasts != before:
            self.publish(dict(self.forecasts))
        if now_s - self._pruned_at > 3600:
            self.store.services.prune_metrics(before_s=now_s - self.config.retention_s)
            self._pruned_at = now_s

    def _sync(self, record: ServiceRecord, scaler: _Scaler, now_s: float) -> None:
        """Add the windows stored since the last sync to the demand series (the store is the history)."""
        for row in self.store.services.metrics(record.id, since_s=scaler.synced_s, until_s=now_s):
            scaler.add(row["at_s"], row["requests"])
            scaler.synced_s = row["at_s"]

    def _scaler(self, record: ServiceRecord, now_s: float) -> _Scaler:
        scaler = self._scalers.get(record.name)
        lead_s = self._lead_s(record)
        step_s = record.spec.autoscale.step_s
        same_lead = scaler is not None and lead_steps_of(lead_s, step_s) == lead_steps_of(
            scaler.lead_s, step_s
        )
        if scaler is not None and same_lead and scaler.spec.autoscale == record.spec.autoscale:
            scaler.spec = record.spec  # bounds may have changed; the autoscaler's state stays
            return scaler
        start = max(record.created_at, now_s - self.config.retention_s)
        origin = math.floor(start / step_s) * step_s
        autoscaler = build_autoscaler(record.spec.autoscale, lead_steps=lead_steps_of(lead_s, step_s))
        scaler = _Scaler(
            spec=record.spec, lead_s=lead_s, autoscaler=autoscaler, origin_s=origin, synced_s=origin
        )
        self._sync(record, scaler, now_s)  # the history so far, each window in its own step
        # Steps that ended before now were decided before (a restarted loop does not decide them again).
        scaler.decided = max(math.floor((now_s - origin) / step_s - 1e-9), 0)
        self._scalers[record.name] = scaler
        return scaler

    def _lead_s(self, record: ServiceRecord) -> float:
        if record.spec.autoscale.startup_s is not None:
            return record.spec.autoscale.startup_s
        measured = self.store.services.startup_times(record.id)
        return statistics.median(measured) if measured else DEFAULT_LEAD_S

    def _decide_due(self, record: ServiceRecord, scaler: _Scaler, now_s: float) -> None:
        step_s = record.spec.autoscale.step_s
        current = record.desired
        while scaler.origin_s + (scaler.decided + 1) * step_s <= now_s + 1e-6:
            k = scaler.decided
            if k >= len(scaler.values):
                scaler.values.extend([0.0] * (k + 1 - len(scaler.values)))
            history = Series.of(
                scaler.values[: k + 1], step_s=step_s, start_s=scaler.origin_s, name=f"service:{record.name}"
            )
            current = self._decide(record, scaler, history, current)
            scaler.decided = k + 1

    def _decide(self, record: ServiceRecord, scaler: _Scaler, history: Series, current: int) -> int:
        spec, autoscaler = record.spec, scaler.autoscaler
        target = scaling_target(spec, lead_s=scaler.lead_s)
        wanted = autoscaler.decide(history, current, target)
        last = autoscaler.last
        assert last is not None
        forecast = (
            self._forecast(record.name, autoscaler, history, target) if last.primary is not None else None
        )
        reason = (
            "cooldown" if last.held else _reason(last.primary, last.floor, wanted, autoscaler.primary is None)
        )
        self.store.services.add_decision(
            record.id, at_s=history.end_s, mode=spec.autoscale.mode, observed=float(history.values[-1]),
            forecast=forecast, predictive=last.primary, reactive=last.floor, current=current, target=wanted,
            lead_s=scaler.lead_s, reason=reason,
        )  # fmt: skip
        if wanted != current:
            self.store.services.set_desired(record.id, wanted)
            self.wake()
            log.info("service %s: %d -> %d replicas (%s)", record.name, current, wanted, reason)
        return wanted

    def _forecast(
        self, name: str, autoscaler: HybridAutoscaler, history: Series, target: ScalingTarget
    ) -> float:
        """The P90 demand the decision sized for (highest over the lead); publishes it in replicas."""
        predictive = autoscaler.primary
        assert isinstance(predictive, PredictiveAutoscaler)
        lead = lead_steps_of(target.startup_s, history.step_s)
        point, upper = predictive.forecasts.at(history, lead + 1)  # cached by the decision just taken
        predictive.forecasts.forget()
        self.forecasts[f"service:{name}"] = DemandForecast(
            series=f"service:{name}",
            start_s=history.end_s,
            step_s=history.step_s,
            point=tuple(float(target.units_for(float(v))) for v in point),
            quantiles={UPPER_QUANTILE: tuple(float(target.units_for(float(v))) for v in upper)},
        )
        return float(upper.max())

    def record_scale_from_zero(self, record: ServiceRecord, wanted: int) -> None:
        """The reconciler scaled ``record`` up from zero for a waiting request: recorded as a decision."""
        self.store.services.add_decision(
            record.id, at_s=time.time(), mode=record.spec.autoscale.mode, observed=0.0, forecast=None,
            predictive=None, reactive=None, current=0, target=wanted, lead_s=0.0,
            reason="a request arrived while scaled to zero",
        )  # fmt: skip

    def service_forecasts(self) -> Mapping[str, DemandForecast]:
        """The latest forecast of each predictive service (what the scheduler's policies read)."""
        return dict(self.forecasts)


def _reason(primary: int | None, floor: int | None, wanted: int, reactive_only: bool) -> str:
    """Which rule set the replica count (the larger one; min/max when they overrode both)."""
    if wanted != max(u for u in (primary, floor, 0) if u is not None):
        return "min/max bounds"
    if primary is None:
        return "reactive" if reactive_only else "reactive (too little history for the forecaster yet)"
    return "reactive floor above the forecast" if floor is not None and floor > primary else "forecast"
