"""Autoscaler decisions checked by hand on tiny series (capacity 10 per unit, hourly steps)."""

from __future__ import annotations

import pytest

from skyline.errors import ConfigError
from skyline.scheduling.autoscaling import (
    PredictiveAutoscaler,
    ReactiveAutoscaler,
    ScalingTarget,
    StaticAutoscaler,
    dominated_share,
    dominates,
    simulate,
    sweep,
)
from skyline.scheduling.forecasting import Series, make_forecaster
from skyline.scheduling.forecasting.baselines import SeasonalNaive
from skyline.testing.forecasting import noisy_weekly

pytestmark = pytest.mark.unit

HOUR = 3600.0
TEN = ScalingTarget(capacity_per_step=10, startup_s=0)


def _series(values: list[float]) -> Series:
    return Series.of(values, step_s=HOUR)


def test_replica_capacity_follows_the_latency_slo() -> None:
    # S = 30 s, SLO 60 s: utilisation ≤ 1 - 30/60 = 0.5, so 0.5 · 3600 / 30 = 60 requests per hour
    target = ScalingTarget.replicas(step_s=HOUR, service_time_s=30, latency_slo_s=60, startup_s=0)
    assert target.capacity_per_step == pytest.approx(60)
    assert target.units_for(61) == 2 and target.units_for(0) == 1  # replicas keep one warm
    assert ScalingTarget.nodes(boot_s=600, total_nodes=3).units_for(5) == 3


def test_static_by_hand() -> None:
    result = simulate(_series([10, 10, 25, 5, 30]), StaticAutoscaler(units=2), TEN, start_step=1)
    assert result.units.tolist() == [2, 2, 2, 2]
    assert result.summary() == {
        "slo_violations": 2,  # 25 and 30 exceed 2 x 10
        "unserved": 15.0,
        "provisioned_hours": 8.0,
        "scaling_actions": 1,  # 1 unit at the start (enough for the last history step) -> 2
    }


def test_reactive_by_hand() -> None:
    series = _series([10, 10, 40, 40, 10, 10, 10])
    policy = ReactiveAutoscaler(target_utilisation=0.5, window_steps=2)
    result = simulate(series, policy, TEN, start_step=1)
    # t1: saw 10 on 1 unit, utilisation 1.0 = 2x target -> 2. t2: 10 on 2 = 0.5, keep 2; demand 40 > 20.
    # t3: saw 40 on 2 = 2.0 -> 8. t4: keep. t5: saw 10 on 8 -> 2, but the window holds 8: stay.
    # t6: window [2, 2] -> scale down to 2.
    assert result.units.tolist() == [2, 2, 8, 8, 8, 2]
    assert result.summary() == {
        "slo_violations": 1,
        "unserved": 20.0,
        "provisioned_hours": 30.0,
        "scaling_actions": 3,
    }


def _alternating() -> Series:
    return _series([10, 40] * 4)


def _predictive() -> PredictiveAutoscaler:
    return PredictiveAutoscaler(SeasonalNaive(period_s=2 * HOUR, label="2h"))


def test_predictive_by_hand_meets_every_step_that_reactive_misses() -> None:
    predictive = simulate(_alternating(), _predictive(), TEN, start_step=4)
    assert predictive.units.tolist() == [1, 4, 1, 4]  # forecast = two steps ago, exact here
    assert (predictive.slo_violations, predictive.provisioned_hours, predictive.scaling_actions) == (0, 10, 4)
    reactive = simulate(
        _alternating(), ReactiveAutoscaler(target_utilisation=1.0, window_steps=1), TEN, start_step=4
    )
    assert reactive.slo_violations == 2  # it sizes for the step it saw, always one step late
    assert dominates(predictive, reactive)


def test_predictive_covers_the_start_up_lead_time() -> None:
    # Replicas take half a step to start: size for this step and the next, so never drop to 1.
    slow = ScalingTarget(capacity_per_step=10, startup_s=HOUR / 2)
    result = simulate(_alternating(), _predictive(), slow, start_step=4)
    assert result.units.tolist() == [4, 4, 4, 4]
    assert result.slo_violations == 0 and result.scaling_actions == 0


def test_a_unit_starting_mid_step_serves_part_of_it() -> None:
    slow = ScalingTarget(capacity_per_step=10, startup_s=HOUR / 2)
    result = simulate(_series([10, 14, 14]), StaticAutoscaler(units=2), slow, start_step=1)
    assert result.capacity.tolist() == [15.0, 20.0]  # 10 + half of 10, then 20
    assert result.slo_violations == 0


def test_static_default_sizes_for_a_high_percentile_of_history() -> None:
    result = simulate(_series([0, 10, 20, 30, 40, 5]), StaticAutoscaler(percentile=100), TEN, start_step=5)
    assert result.units.tolist() == [4]


def test_dominance_and_sweep_on_a_weekly_series() -> None:
    series = noisy_weekly(days=17)
    target = ScalingTarget(capacity_per_step=10, startup_s=600, min_units=1)
    points = sweep(
        series,
        target,
        start_step=len(series) - 72,
        forecaster=lambda: make_forecaster("seasonal-naive-weekly", horizon=2),
        static_units=[2, 4],
    )
    assert {p.family for p in points} == {"static", "reactive", "predictive"}
    assert len(points) == 2 + 8 + 16
    share = dominated_share(points, by="predictive", of="reactive")
    assert 0.0 <= share <= 1.0
    assert dominated_share(points, by="static", of="nobody") == 0.0


def test_bad_autoscaler_settings() -> None:
    with pytest.raises(ConfigError):
        ScalingTarget(capacity_per_step=0, startup_s=0)
    with pytest.raises(ConfigError, match="latency SLO"):
        ScalingTarget.replicas(step_s=HOUR, service_time_s=60, latency_slo_s=30, startup_s=0)
    with pytest.raises(ConfigError):
        ReactiveAutoscaler(target_utilisation=1.5)
    with pytest.raises(ConfigError):
        StaticAutoscaler(units=-1)
    with pytest.raises(ConfigError, match="simulation start"):
        simulate(_series([1, 2]), StaticAutoscaler(units=1), TEN, start_step=2)
