"""Staged rollouts: a model version moves through waves of agents and is rolled back when a wave regresses.

As in AWS IoT Greengrass / Azure IoT Edge staged deployments and Argo Rollouts' canary steps: the waves are
cumulative fractions of the agents that match the rollout's label selector — the canary first, then each
step (``--canary 10% --steps 10%,50%,100%`` gives 10%, 50%, 100%). A wave's agents are assigned the new
version (`skyline.edge.fleet`); the wave is then watched through the agents' telemetry and the labelled
records they uplink:

- regressed — as soon as enough samples say so: the new version's error rate exceeds the previous
  version's by more than ``max_error_increase``, its accuracy on labelled records is below
  ``min_accuracy``, or its median latency grew by more than ``max_latency_increase_ms``: every agent the
  rollout reached goes back to the previous version, and the version is rejected;
- healthy — after ``bake_s``, once every online agent of the wave serves the new version, with
  ``min_samples`` answers (and labelled records, when accuracy is checked) and no regression: the next wave
  starts; after the last one the version becomes the fleet's pinned one;
- no verdict within ``wave_timeout_s`` (agents offline, no traffic): rolled back, as an unconfirmed
  version must not spread.

Only online agents are put into a wave; an agent offline during the rollout gets the fleet's version when
it returns (the new one if the rollout succeeded meanwhile, the previous one otherwise).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from skyline.edge.fleet import AgentRecord, FleetStore, RolloutRecord, VersionStats
from skyline.errors import ConfigError, NotFoundError

_log = logging.getLogger(__name__)
# (model, version, agents) → (labelled records answered right, labelled records) that the agents uplinked.
AccuracySource = Callable[[str, int, Sequence[str]], tuple[int, int]]


def parse_fraction(text: str) -> float:
    """``"10%"`` or ``"0.1"`` as 0.1 (`ConfigError` unless in (0, 1])."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ConfigError(f"{text!r} is not a fraction; write 10% or 0.1") from None
    if not 0 < value <= 1:
        raise ConfigError(f"{text!r} must be above 0% and at most 100%")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutSpec:
    """What to roll out, in which waves, and when a wave counts as regressed (see the module docstring)."""

    model: str
    version: int
    canary: float = 0.1
    steps: tuple[float, ...] = (0.1, 0.5, 1.0)
    max_error_increase: float = 0.05
    min_accuracy: float | None = None
    max_latency_increase_ms: float | None = None
    min_samples: int = 20
    bake_s: float = 30.0
    wave_timeout_s: float = 600.0
    offline_after_s: float = 30.0
    selector: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ConfigError(f"versions are integers >= 1, got {self.version}")
        if not self.steps or any(not 0 < f <= 1 for f in (self.canary, *self.steps)):
            raise ConfigError("--canary and every --steps entry must be in (0%, 100%]")
        if list(self.steps) != sorted(self.steps) or self.steps[-1] != 1.0:
            raise ConfigError(f"--steps must rise and end at 100%, got {[f'{s:.0%}' for s in self.steps]}")
        if self.max_error_increase < 0 or (self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1):
            raise ConfigError("--max-error-increase must be >= 0 and --min-accuracy in [0, 1]")
        if self.min_samples < 1 or self.bake_s < 0 or self.wave_timeout_s <= self.bake_s:
            raise ConfigError("min_samples must be >= 1, bake_s >= 0 and wave_timeout_s > bake_s")
        if self.offline_after_s <= 0:
            raise ConfigError(f"offline_after_s must be positive, got {self.offline_after_s}")

    def waves(self) -> list[float]:
        """Cumulative fractions of the fleet on the new version after each wave (canary first)."""
        return sorted({self.canary, *self.steps})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"], data["selector"] = list(self.steps), dict(self.selector)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutSpec:
        try:
            fields = dict(data)
            fields["steps"] = tuple(float(s) for s in fields["steps"])
            return cls(**fields)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"a rollout spec is malformed ({exc})") from exc


@dataclass(frozen=True, slots=True)
class Verdict:
    """A wave's state: ``waiting`` (not enough data yet), ``healthy`` or ``regressed``, and why."""

    state: str
    reason: str


def _total(stats: Sequence[VersionStats]) -> tuple[int, int, float | None]:
    answered, errors = sum(s.answered for s in stats), sum(s.errors for s in stats)
    latencies = sorted(s.latency_ms_p50 for s in stats if s.latency_ms_p50 is not None)
    return answered, errors, latencies[len(latencies) // 2] if latencies else None


def judge(
    spec: RolloutSpec,
    previous: int | None,
    wave: Sequence[AgentRecord],
    others: Sequence[AgentRecord],
    accuracy: tuple[int, int],
    elapsed_s: float,
) -> Verdict:
    """The verdict on the agents of the rollout so far (``wave``), against the rest (``others``)."""
    serving = [a for a in wave if a.version(spec.model) == spec.version]
    if not serving:
        return Verdict("waiting", "no agent of the wave serves the new version yet")
    answered, errors, latency = _total([a.stats(spec.model, spec.version) for a in serving])
    base_agents = others if any(a.version(spec.model) == previous for a in others) else wave
    base = [a.stats(spec.model, previous) for a in base_agents] if previous is not None else []
    base_answered, base_errors, base_latency = _total(base)
    if answered >= spec.min_samples:
        rate = errors / answered
        base_rate = base_errors / base_answered if base_answered else 0.0
        if rate - base_rate > spec.max_error_increase:
            return Verdict("regressed", f"error rate {rate:.1%} vs {base_rate:.1%} on version {previous}")
    correct, labelled = accuracy
    if (
        spec.min_accuracy is not None
        and labelled >= spec.min_samples
        and correct / labelled < spec.min_accuracy
    ):
        return Verdict(
            "regressed",
            f"accuracy {correct / labelled:.1%} on {labelled} labelled records < {spec.min_accuracy:.1%}",
        )
    limit = spec.max_latency_increase_ms
    if (
        limit is not None
        and latency is not None
        and base_latency is not None
        and latency - base_latency > limit
    ):
        return Verdict("regressed", f"median latency {latency:.1f} ms vs {base_latency:.1f} ms")
    enough = answered >= spec.min_samples and (spec.min_accuracy is None or labelled >= spec.min_samples)
    if elapsed_s < spec.bake_s or not enough or len(serving) < len(wave):
        return Verdict("waiting", f"{answered} answers, {labelled} labelled records after {elapsed_s:.0f} s")
    accuracy_text = f", accuracy {correct / labelled:.1%}" if labelled else ""
    return Verdict("healthy", f"{answered} answers, error rate {errors / answered:.1%}{accuracy_text}")


class RolloutController:
    """Starts rollouts and moves them wave by wave (`tick`, called every ``tick_s`` by its thread)."""

    def __init__(self, fleet: FleetStore, accuracy: AccuracySource, *, tick_s: float = 1.0) -> None:
        if tick_s <= 0:
            raise ConfigError(f"tick_s must be positive, got {tick_s}")
        self.fleet, self.accuracy, self.tick_s = fleet, accuracy, tick_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def create(
        self, spec: RolloutSpec, available: Sequence[int], *, now: float | None = None
    ) -> RolloutRecord:
        """Start rolling ``spec.version`` out; the previous version is the one the fleet runs now."""
        if spec.version not in available:
            raise NotFoundError(
                f"model {spec.model!r} has no version {spec.version}; versions: {list(available)}"
            )
        pinned = self.fleet.pinned(spec.model)
        rejected = self.fleet.rejected(spec.model)
        older = [v for v in available if v < spec.version and v not in rejected]
        previous = pinned if pinned is not None else (max(older) if older else None)
        if previous == spec.version:
            raise ConfigError(f"version {spec.version} of {spec.model!r} is already the fleet's version")
        rollout_id = self.fleet.create_rollout(
            model=spec.model, version=spec.version, previous=previous, spec=spec.to_json(),
            now=time.time() if now is None else now,
        )  # fmt: skip
        self.tick(now=now)
        return self.fleet.rollout(rollout_id)

    def tick(self, *, now: float | None = None) -> None:
        """Advance every running rollout by at most one step."""
        moment = time.time() if now is None else now
        for record in self.fleet.rollouts(running_only=True):
            self._advance(record, moment)

    def _advance(self, record: RolloutRecord, now: float) -> None:
        spec = RolloutSpec.from_json(record.spec)
        agents = [a for a in self.fleet.agents() if a.matches(spec.selector)]
        assigned = self.fleet.assignments(record.model, record.id)
        if record.wave < 0 or not assigned:  # no agent was online to take the first wave yet
            self._start_wave(record, spec, agents, assigned, max(record.wave, 0), now)
            return
        wave = [a for a in agents if a.name in assigned and now - a.last_seen <= spec.offline_after_s]
        others = [a for a in agents if a.name not in assigned]
        verdict = judge(
            spec, record.previous, wave, others,
            self.accuracy(record.model, record.version, [a.name for a in wave]), now - record.wave_started_at,
        )  # fmt: skip
        label = f"wave {record.wave + 1} ({len(assigned)} agent(s))"
        if verdict.state == "regressed":
            self.fleet.finish(
                record, succeeded=False, reason=f"{label} regressed: {verdict.reason}; rolled back", now=now
            )
        elif verdict.state == "waiting" and now - record.wave_started_at > spec.wave_timeout_s:
            reason = f"{label}: no verdict within {spec.wave_timeout_s:.0f} s ({verdict.reason}); rolled back"
            self.fleet.finish(record, succeeded=False, reason=reason, now=now)
        elif verdict.state == "healthy":
            event = f"{label} healthy: {verdict.reason}"
            if record.wave + 1 >= len(spec.waves()):
                self.fleet.finish(
                    record,
                    succeeded=True,
                    reason=f"{event}; version {record.version} is the fleet's",
                    now=now,
                )
            else:
                self._start_wave(record, spec, agents, assigned, record.wave + 1, now, note=f"{event}; ")

    def _start_wave(
        self,
        record: RolloutRecord,
        spec: RolloutSpec,
        agents: Sequence[AgentRecord],
        assigned: Mapping[str, int],
        wave: int,
        now: float,
        *,
        note: str = "",
    ) -> None:
        target = max(1, math.ceil(spec.waves()[wave] * len(agents))) if agents else 0
        online = [
            a.name for a in agents if now - a.last_seen <= spec.offline_after_s and a.name not in assigned
        ]
        chosen = sorted(online)[: max(0, target - len(assigned))]
        if not agents:
            self.fleet.finish(
                record, succeeded=True, reason="no agent matches the rollout: nothing to do", now=now
            )
            return
        if not chosen and not assigned:
            if now - record.wave_started_at > spec.wave_timeout_s:
                reason = f"no matching agent was online within {spec.wave_timeout_s:.0f} s; rolled back"
                self.fleet.finish(record, succeeded=False, reason=reason, now=now)
            return
        event = (
            f"{note}wave {wave + 1}: version {record.version} to {len(chosen)} more agent(s), "
            f"{len(assigned) + len(chosen)} of {len(agents)}"
        )
        self.fleet.start_wave(record, wave, chosen, event, now)

    def run(self) -> None:
        """Tick until `stop`; one failed tick is logged and the loop goes on."""
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:
                _log.exception("rollout controller: tick failed; retrying in %s s", self.tick_s)

    def start(self) -> RolloutController:
        self._thread = threading.Thread(target=self.run, name="rollout-controller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
