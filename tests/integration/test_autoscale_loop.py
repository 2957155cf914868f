"""The live autoscale loop on a scripted metrics history decides exactly as the replay autoscaler does.

One implementation, two callers: the loop reads the service's telemetry history from a real store step by
step and runs `build_autoscaler`'s `HybridAutoscaler`; `skyline.scheduling.autoscaling.simulate` replays
the same series with a fresh instance of the same autoscaler. Their replica counts must be equal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from skyline.cluster.autoscale_loop import AutoscaleLoop, build_autoscaler, lead_steps_of, scaling_target
from skyline.cluster.gateway import Gateway
from skyline.cluster.service_spec import service_from_mapping
from skyline.cluster.service_telemetry import TelemetryWindow
from skyline.cluster.services import ServicesConfig
from skyline.cluster.store import Store
from skyline.scheduling.autoscaling import simulate
from skyline.scheduling.forecasting import Series

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0  # a multiple of the step: the service's first step starts here
STEP_S, WINDOW_S, LEAD_S = 10.0, 5.0, 20.0


def demand(steps: int) -> np.ndarray:
    """Requests per step: a slow wave, a burst, noise (seeded)."""
    t = np.arange(steps)
    wave = 60 + 40 * np.sin(2 * np.pi * t / 24)
    burst = np.where((t > 30) & (t < 38), 120.0, 0.0)
    return np.round(wave + burst + np.random.default_rng(3).normal(0, 6, steps)).clip(0)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with Gateway() as gw:
        yield gw


@pytest.mark.parametrize("mode", [pytest.param("predictive", marks=pytest.mark.slow), "reactive"])
def test_live_decisions_equal_the_replay(tmp_path: Path, gateway: Gateway, mode: str) -> None:
    values = demand(48)
    autoscale = {"mode": mode, "target_rps_per_replica": 2.0, "step_s": STEP_S, "startup_s": LEAD_S,
                 "cooldown_s": 20.0, "forecaster": "gbdt", "refit_every_steps": 24}  # fmt: skip
    spec = service_from_mapping(
        {"name": "svc", "command": "serve", "min_replicas": 1, "max_replicas": 12, "autoscale": autoscale}
    )
    target = scaling_target(spec, lead_s=LEAD_S)
    first = target.units_for(float(values[0]))  # what simulate starts from
    spec = service_from_mapping(spec.to_json() | {"replicas": first})
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", now=lambda: T0)
    record = store.services.create(spec, owner="test")
    # The scripted history: each step's requests over two telemetry windows, as the gateway would store them.
    windows = []
    for k, requests in enumerate(values):
        half = math.floor(requests / 2)
        for end, count in ((T0 + k * STEP_S + WINDOW_S, half), (T0 + (k + 1) * STEP_S, requests - half)):
            windows.append(
                (
                    record.id,
                    TelemetryWindow(service="svc", at_s=end, window_s=WINDOW_S, requests=int(count)),
                    1,
                    1,
                )
            )
    store.services.add_metrics(windows)
    loop = AutoscaleLoop(store, gateway, ServicesConfig(metrics_interval_s=WINDOW_S))
    for k in range(len(values) - 1):  # the decision after step k ends, from steps 0..k
        loop.run_once(T0 + (k + 1) * STEP_S)
    live = store.services.decisions(record.id)

    replay = simulate(
        Series.of(values, step_s=STEP_S, start_s=T0),
        build_autoscaler(spec.autoscale, lead_steps=lead_steps_of(LEAD_S, STEP_S)),
        target,
        start_step=1,
    )
    assert [d["target"] for d in live] == replay.units.astype(int).tolist()
    assert [d["observed"] for d in live] == values[:-1].tolist()
    assert live[0]["current"] == first and all(d["lead_s"] == LEAD_S for d in live)
    assert store.services.get("svc").desired == live[-1]["target"]
    assert len({d["target"] for d in live}) > 2  # the scripted burst moved it both ways
    if mode == "predictive":
        # gbdt needs its horizon + 8 steps of history; before that the reactive floor decides alone.
        assert live[0]["forecast"] is None and "too little history" in live[0]["reason"]
        assert all(d["forecast"] is not None for d in live[12:])
        assert {d["reason"] for d in live} & {"forecast", "reactive floor above the forecast"}
        forecast = loop.forecasts["service:svc"]
        assert forecast.step_s == STEP_S and forecast.start_s == T0 + (len(values) - 1) * STEP_S
    else:
        assert all(d["forecast"] is None and d["predictive"] is None for d in live)
        assert "service:svc" not in loop.forecasts
    store.close()


def test_a_restarted_loop_reads_the_history_and_does_not_decide_the_past_again(
    tmp_path: Path, gateway: Gateway
) -> None:
    autoscale = {"mode": "reactive", "target_rps_per_replica": 1.0, "step_s": STEP_S, "startup_s": 0.0}
    spec = service_from_mapping(
        {"name": "svc", "command": "serve", "max_replicas": 50, "autoscale": autoscale}
    )
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", now=lambda: T0)
    record = store.services.create(spec, owner="test")
    rows = [(record.id, TelemetryWindow(service="svc", at_s=T0 + (k + 1) * STEP_S, window_s=STEP_S, requests=70), 1, 1)
            for k in range(5)]  # fmt: skip
    store.services.add_metrics(rows)
    loop = AutoscaleLoop(store, gateway, ServicesConfig())
    loop.run_once(T0 + 5 * STEP_S + 3)  # mid-step 5: steps 0..4 ended before this loop existed
    assert store.services.decisions(record.id) == []
    loop.run_once(T0 + 6 * STEP_S)  # step 5 ends: decided on the full history (the last step saw 0)
    (decision,) = store.services.decisions(record.id)
    assert decision["observed"] == 0.0 and decision["at_s"] == T0 + 6 * STEP_S
    # Steps 0..4 are in its history (70 requests each), but the reactive rule looks at the last step.
    assert (decision["current"], decision["target"]) == (1, 1)


def test_one_failing_service_does_not_stop_the_others(
    tmp_path: Path, gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service whose autoscaling raises (here: its history cannot be read) is logged and skipped; the
    other service still gets its decision in the same pass, and the broken one in a later pass once it heals."""
    autoscale = {"mode": "reactive", "target_rps_per_replica": 1.0, "step_s": STEP_S, "startup_s": 0.0}
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", now=lambda: T0)
    records = {
        name: store.services.create(
            service_from_mapping(
                {"name": name, "command": "serve", "max_replicas": 50, "autoscale": autoscale}
            ),
            owner="test",
        )
        for name in ("broken", "healthy")
    }
    loop = AutoscaleLoop(store, gateway, ServicesConfig())
    loop.run_once(T0)
    real_sync = loop._sync

    def sync(record: object, scaler: object, now_s: float) -> None:
        if getattr(record, "name", "") == "broken":
            raise RuntimeError("history unreadable")
        real_sync(record, scaler, now_s)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "_sync", sync)
    loop.run_once(T0 + STEP_S)
    assert store.services.decisions(records["broken"].id) == []
    assert len(store.services.decisions(records["healthy"].id)) == 1
    monkeypatch.setattr(loop, "_sync", real_sync)
    loop.run_once(T0 + 2 * STEP_S)
    assert len(store.services.decisions(records["broken"].id)) >= 1
    store.close()
