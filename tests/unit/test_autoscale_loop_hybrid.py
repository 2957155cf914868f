"""`HybridAutoscaler` (what the live loop runs) checked by hand: floor, cooldown, the floor alone early."""

from __future__ import annotations

import pytest

from skyline.errors import ConfigError, DataError
from skyline.scheduling.autoscaling import (
    HybridAutoscaler,
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    ScalingTarget,
    StaticAutoscaler,
    simulate,
)
from skyline.scheduling.forecasting import Series, make_forecaster

pytestmark = pytest.mark.unit

TEN = ScalingTarget(capacity_per_step=10, startup_s=0, min_units=1, max_units=20)


def _series(values: list[float]) -> Series:
    return Series.of(values, step_s=60.0)


def test_the_floor_decides_alone_until_the_forecaster_can_fit() -> None:
    predictive = PredictiveAutoscaler(make_forecaster("persistence", horizon=1))
    hybrid = HybridAutoscaler(predictive, floor=ReactiveAutoscaler(target_utilisation=0.5))
    # One step of history: persistence needs two to measure its errors (DataError), the floor sees 30
    # requests on 1 unit = 3x its 50% target -> 6 units.
    assert hybrid.decide(_series([30]), 1, TEN) == 6
    assert hybrid.last is not None and hybrid.last.primary is None and hybrid.last.floor == 6
    # Without a floor the DataError is the caller's to see.
    with pytest.raises(DataError):
        HybridAutoscaler(PredictiveAutoscaler(make_forecaster("persistence", horizon=1))).decide(
            _series([30]), 1, TEN
        )


def test_the_larger_rule_wins() -> None:
    hybrid = HybridAutoscaler(StaticAutoscaler(units=4), floor=StaticAutoscaler(units=7))
    assert hybrid.decide(_series([1, 1]), 4, TEN) == 7
    assert hybrid.last is not None and (hybrid.last.primary, hybrid.last.floor) == (4, 7)


def test_cooldown_holds_decreases_after_an_increase() -> None:
    # The primary asks 5, then 2 for ever; a cooldown of 2 steps keeps 5 for two steps after the increase.
    class Script(StaticAutoscaler):
        def __init__(self, plan: list[int]) -> None:
            super().__init__(units=0)
            self.plan = plan

        def decide(self, history: Series, current: int, target: ScalingTarget) -> int:
            return self.plan[len(history) - 1]

    hybrid = HybridAutoscaler(Script([5, 2, 2, 2, 2]), cooldown_steps=2)
    units, current = [], 1
    for n in range(1, 6):
        current = hybrid.decide(_series([0.0] * n), current, TEN)
        units.append(current)
    assert units == [5, 5, 5, 2, 2]


def test_simulate_replays_the_same_object_the_live_loop_would_call() -> None:
    series = _series([10, 10, 40, 40, 10, 10, 10])
    hybrid = HybridAutoscaler(None, floor=ReactiveAutoscaler(target_utilisation=0.5, window_steps=2))
    result = simulate(series, hybrid, ScalingTarget(capacity_per_step=10, startup_s=0), start_step=1)
    # Same as the reactive rule alone (tests/unit/test_autoscaling.py::test_reactive_by_hand).
    assert result.units.tolist() == [2, 2, 8, 8, 8, 2]


def test_needs_a_rule() -> None:
    with pytest.raises(ConfigError):
        HybridAutoscaler(None)
    with pytest.raises(ConfigError):
        HybridAutoscaler(StaticAutoscaler(units=1), cooldown_steps=-1)
