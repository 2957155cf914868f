"""`ForecastReserve`: batch work placed so that the capacity services are forecast to need stays free.

Autoscaled services publish the replicas they are forecast to need (series ``service:<name>`` in the
view's forecasts: replicas per future step, its upper quantile in ``quantiles[0.9]``). Each decision:

1. waiting service replicas are placed first (submit order, best fit); one that does not fit preempts
   running batch jobs, those that received the least service first, until it does — the forecast was
   wrong (demand came sooner or higher than reserved), and a service's latency matters more than a
   batch job's completion time;
2. the reserve: for each forecast service, its forecast peak minus the replicas it already has (running
   or waiting), each the size of the service's replicas;
3. waiting batch jobs are placed in submit order (backfilling) only where the reserve still fits after
   them: the capacity a scale-up will ask for in the next minutes is not handed to batch work.

A service without a forecast (not predictive, or too little history yet) reserves nothing; nor does one
with no replica in the view (its replica size is unknown while it is scaled to zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import replace as _replace

from skyline.core import DemandForecast
from skyline.errors import ConfigError
from skyline.scheduling.packing import Packer, Placing, Request
from skyline.scheduling.policy import Policy, PolicyOptions
from skyline.scheduling.view import Decision, JobView, RoundView

SERVICE_KIND = "service"
SERIES_PREFIX = "service:"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveOptions(PolicyOptions):
    """``quantile``: the forecast quantile reserved for (the point forecast when the forecast lacks it)."""

    quantile: float = 0.9

    def __post_init__(self) -> None:
        if not 0 < self.quantile < 1:
            raise ConfigError(f"forecast-reserve quantile must be in (0, 1), got {self.quantile}")


class ForecastReserve(Policy):
    """Services first (preempting batch work if they must), batch work only outside the forecast reserve."""

    name = "forecast-reserve"
    preemptive = True
    Options = ReserveOptions

    def decide(self, view: RoundView) -> Decision:
        decision = Decision()
        if not view.waiting:
            return decision
        packer = view.packer
        victims = sorted(
            (j for j in view.jobs if j.placing is not None and j.kind != SERVICE_KIND),
            key=lambda j: (j.attained_at(view.now_s), -j.submit_s, j.index),
        )
        for job in (j for j in view.waiting if j.kind == SERVICE_KIND):
            placing = packer.best_fit(job.request) or self._make_room(packer, job, victims, decision)
            if placing is not None:
                packer.take(job.request, placing)
                decision.start[job.index] = placing
        reserve = self.reserve(view)
        for job in (j for j in view.waiting if j.kind != SERVICE_KIND):
            placing = packer.best_fit(job.request)
            if placing is None:
                continue
            packer.take(job.request, placing)
            if reserve and not fits(packer, reserve):
                packer.release(job.request, placing)
                continue
            decision.start[job.index] = placing
        return decision

    def _make_room(
        self, packer: Packer, job: JobView, victims: list[JobView], decision: Decision
    ) -> Placing | None:
        """Release running batch jobs (in ``victims`` order) until ``job`` fits; those it needs are stopped."""
        released: list[JobView] = []
        placing = None
        for victim in list(victims):
            assert victim.placing is not None
            packer.release(victim.request, victim.placing)
            released.append(victim)
            placing = packer.best_fit(job.request)
            if placing is not None:
                break
        if placing is not None:
            packer.take(job.request, placing)  # held while the others are offered their room back
        for victim in reversed(released):
            assert victim.placing is not None
            if packer.can_take(victim.request, victim.placing):
                packer.take(victim.request, victim.placing)  # not needed after all: it keeps running
            else:
                decision.stop.append(victim.index)
                victims.remove(victim)
        if placing is not None:
            packer.release(job.request, placing)  # the caller takes it
        return placing

    def reserve(self, view: RoundView) -> list[Request]:
        """One single-replica request per replica the services are forecast to add."""
        members: dict[str, list[JobView]] = {}
        for job in view.jobs:
            if job.kind == SERVICE_KIND and job.group:
                members.setdefault(job.group, []).append(job)
        reserve: list[Request] = []
        for series, forecast in view.forecasts.items():
            have = members.get(series.removeprefix(SERIES_PREFIX), [])
            if not series.startswith(SERIES_PREFIX) or not have:
                continue
            extra = self._peak(forecast) - len(have)
            reserve += [_replace(have[0].request, replicas=1)] * max(extra, 0)
        return reserve

    def _peak(self, forecast: DemandForecast) -> int:
        values = forecast.quantiles.get(self.options.quantile, forecast.point)  # type: ignore[attr-defined]
        return math.ceil(max(values, default=0.0) - 1e-9)


def fits(packer: Packer, requests: list[Request]) -> bool:
    """Whether every request could be placed now (tried in ``packer``, then given back)."""
    taken: list[tuple[Request, Placing]] = []
    ok = True
    for request in requests:
        placing = packer.best_fit(request)
        if placing is None:
            ok = False
            break
        packer.take(request, placing)
        taken.append((request, placing))
    for request, placing in reversed(taken):
        packer.release(request, placing)
    return ok
