"""Rollout arithmetic by hand: waves, verdicts, and the fleet store's desired versions (pin, waves, reject)."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyline.edge.fleet import AgentRecord, FleetStore
from skyline.edge.rollout import RolloutController, RolloutSpec, judge, parse_fraction
from skyline.errors import ConfigError, ConflictError

pytestmark = pytest.mark.unit
SPEC = RolloutSpec(model="m", version=2, min_accuracy=0.9, min_samples=10, bake_s=5.0)


def _agent(name: str, version: int, stats: dict[int, dict[str, float]], seen: float = 100.0) -> AgentRecord:
    return AgentRecord(
        name=name, labels={}, last_seen=seen,
        models={"m": {"version": version, "stats": {str(v): s for v, s in stats.items()}}},
    )  # fmt: skip


def test_fractions_and_waves() -> None:
    assert parse_fraction("10%") == 0.1 and parse_fraction("0.5") == 0.5
    for bad in ("0%", "150%", "ten"):
        with pytest.raises(ConfigError):
            parse_fraction(bad)
    assert RolloutSpec(model="m", version=2, canary=0.05, steps=(0.1, 0.5, 1.0)).waves() == [
        0.05,
        0.1,
        0.5,
        1.0,
    ]
    assert SPEC.waves() == [0.1, 0.5, 1.0]
    with pytest.raises(ConfigError, match="end at 100%"):
        RolloutSpec(model="m", version=2, steps=(0.1, 0.5))
    assert RolloutSpec.from_json(SPEC.to_json()) == SPEC


def test_verdicts_by_hand() -> None:
    base = [_agent("b", 1, {1: {"answered": 100, "errors": 2}})]  # 2% errors on version 1
    fine = [_agent("w", 2, {2: {"answered": 50, "errors": 2}})]  # 4%: +2 points, below the 5-point limit
    assert judge(SPEC, 1, fine, base, (19, 20), elapsed_s=1.0).state == "waiting"  # baking
    assert judge(SPEC, 1, fine, base, (19, 20), elapsed_s=6.0).state == "healthy"
    assert judge(SPEC, 1, fine, base, (5, 9), elapsed_s=6.0).state == "waiting"  # 9 labelled < 10 samples
    errors = [_agent("w", 2, {2: {"answered": 50, "errors": 5}})]  # 10%: +8 points
    verdict = judge(SPEC, 1, errors, base, (20, 20), elapsed_s=0.0)
    assert verdict.state == "regressed" and "error rate 10.0% vs 2.0%" in verdict.reason  # at once, no bake
    assert judge(SPEC, 1, fine, base, (17, 20), elapsed_s=0.0).state == "regressed"  # 85% < 90%
    syncing = [*fine, _agent("w2", 1, {1: {"answered": 10}})]  # one wave agent not on version 2 yet
    assert judge(SPEC, 1, syncing, base, (19, 20), elapsed_s=6.0).state == "waiting"


def test_desired_versions_follow_pins_waves_and_rejections(tmp_path: Path) -> None:
    fleet = FleetStore(tmp_path / "fleet.db")
    assert fleet.desired("a", "m", []) is None
    assert fleet.desired("a", "m", [1]) == 1 and fleet.pinned("m") == 1  # the first answer pins
    assert fleet.desired("b", "m", [1, 2]) == 1  # a newer version waits for a rollout
    rollout = fleet.create_rollout(model="m", version=2, previous=1, spec=SPEC.to_json(), now=0.0)
    with pytest.raises(ConflictError):
        fleet.create_rollout(model="m", version=2, previous=1, spec=SPEC.to_json(), now=0.0)
    record = fleet.rollout(rollout)
    fleet.start_wave(record, 0, ["a"], "wave 1", now=1.0)
    assert fleet.desired("a", "m", [1, 2]) == 2 and fleet.desired("b", "m", [1, 2]) == 1
    fleet.finish(fleet.rollout(rollout), succeeded=False, reason="regressed", now=2.0)
    assert fleet.desired("a", "m", [1, 2]) == 1 and fleet.rejected("m") == {2}
    assert fleet.rollout(rollout).waves == (("a",),)
    fleet.close()


def test_the_controller_waits_for_an_online_agent_then_times_out(tmp_path: Path) -> None:
    fleet = FleetStore(tmp_path / "fleet.db")
    fleet.report("a", labels={}, metrics={}, models={}, now=0.0)  # seen long ago: offline
    controller = RolloutController(fleet, lambda model, version, agents: (0, 0))
    spec = RolloutSpec(model="m", version=2, bake_s=1.0, wave_timeout_s=10.0, offline_after_s=5.0)
    record = controller.create(spec, [1, 2], now=100.0)
    assert record.wave == -1 and record.state == "running"  # nobody online to be the canary
    controller.tick(now=105.0)
    assert fleet.rollout(record.id).state == "running"
    controller.tick(now=111.0)
    assert (
        fleet.rollout(record.id).state == "rolled-back"
        and "no matching agent was online" in fleet.rollout(record.id).reason
    )
    fleet.close()
