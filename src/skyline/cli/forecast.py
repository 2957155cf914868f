"""`skyline forecast`: backtest demand forecasters and compare autoscalers on a load series (CSV)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from skyline.cli.output import console, progress, write_json
from skyline.errors import ConfigError

forecast_app = typer.Typer(
    help="Forecast demand from history and autoscale ahead of it, backtested on a real series.",
    no_args_is_help=True,
)

SERIES = typer.Option(..., "--series", help="CSV file with a time column.")
TIME_COL = typer.Option(..., "--time-col", help="Column with timestamps (sorted).")
VALUE_COL = typer.Option(None, "--value-col", help="Column with the demand value (or use --count).")
COUNT = typer.Option(False, "--count", help="Each row is one event (request): count rows per interval.")
REDUCE = typer.Option("max", "--reduce", help="How samples in an interval combine: max, mean, sum, last.")
JSON = typer.Option(None, "--json", help="Write the machine-readable summary here (stdout stays quiet).")


def _load(series: Path, time_col: str, value_col: str | None, count: bool, agg: str, reduce: str) -> Any:
    from skyline.scheduling.forecasting import load_series

    loaded = load_series(series, time_col=time_col, value_col=value_col, count=count, agg=agg, reduce=reduce)
    return loaded.series


def _steps(text: str, step_s: float, what: str) -> int:
    """``"6"`` (steps) or ``"1h"`` (a duration, a whole number of steps) → steps."""
    from skyline.scheduling.forecasting.loading import parse_step

    if text.strip().isdigit():
        steps = int(text)
    else:
        seconds = parse_step(text)
        steps = round(seconds / step_s)
        if abs(steps * step_s - seconds) > 1e-6:
            raise ConfigError(f"{what} {text!r} is not a whole number of {step_s:g} s steps")
    if steps < 1:
        raise ConfigError(f"{what} must be at least one step, got {text!r}")
    return steps


def _test_steps(test_days: float, step_s: float, length: int) -> int:
    if not test_days > 0:
        raise ConfigError(f"--test-days must be > 0, got {test_days}")
    steps = round(test_days * 86_400 / step_s)
    if not 1 <= steps < length:
        raise ConfigError(
            f"--test-days {test_days} is {steps} steps; the series has {length}, so use fewer test days"
        )
    return steps


@forecast_app.command("backtest")
def backtest_command(
    series: Path = SERIES,
    time_col: str = TIME_COL,
    value_col: str | None = VALUE_COL,
    count: bool = COUNT,
    agg: str = typer.Option("10min", "--agg", help="Interval length: 10min, 1h, ..."),
    reduce: str = REDUCE,
    horizon: str = typer.Option(..., "--horizon", help="Steps ahead (6) or a duration (1h)."),
    test_days: float = typer.Option(14.0, "--test-days", help="The last D days are the test part."),
    models: str = typer.Option("persistence,seasonal-naive-daily,gbdt", "--models", help="Comma-separated."),
    refit_every: int | None = typer.Option(None, "--refit-every", help="Re-estimate every N steps (a week)."),
    json_path: Path | None = JSON,
    plot: Path | None = typer.Option(None, "--plot", help="PNG of the forecasts over the test's end."),
) -> None:
    """Rolling-origin backtest of forecasters: MAE, RMSE, wMAPE, MASE and P90 coverage per model."""
    from skyline.scheduling.forecasting import BacktestConfig, backtest, make_forecaster, parse_models

    names = parse_models(models)
    data = _load(series, time_col, value_col, count, agg, reduce)
    steps = _steps(horizon, data.step_s, "--horizon")
    config = BacktestConfig(
        horizon=steps, test_steps=_test_steps(test_days, data.step_s, len(data)), refit_every=refit_every
    )
    results = []
    origins = -(-config.test_steps // steps)
    with progress("backtest", origins * len(names), enabled=json_path is None) as advance:
        for name in names:
            results.append(backtest(data, make_forecaster(name, horizon=steps), config, progress=advance))
    payload = {
        "series": str(series),
        "horizon": steps,
        "models": {n: r.accuracy.as_dict() for n, r in zip(names, results, strict=True)},
    }
    if plot is not None:
        from skyline.scheduling.forecasting.plot import plot_backtests

        plot_backtests(
            data, results, plot, last_steps=min(config.test_steps, round(3 * 86_400 / data.step_s))
        )
    if json_path is not None:
        write_json(json_path, payload)
        return
    console.print(
        f"{series}: {len(data)} steps of {data.step_s:g} s, horizon {steps}, test {config.test_steps}",
        soft_wrap=True,
    )
    console.print(f"{'model':24} {'MAE':>10} {'RMSE':>10} {'wMAPE':>8} {'MASE':>8} {'P90 cov':>8} {'s':>6}")
    for name, r in zip(names, results, strict=True):
        a = r.accuracy
        console.print(
            f"{name:24} {a.mae:10.4g} {a.rmse:10.4g} {a.wmape:8.3f} {a.mase:8.3f} {a.p90_coverage:8.3f} {r.seconds:6.1f}"
        )


POLICY_NAMES = ("predictive", "reactive", "static")


@forecast_app.command("autoscale")
def autoscale_command(
    series: Path = SERIES,
    time_col: str = TIME_COL,
    value_col: str | None = VALUE_COL,
    count: bool = COUNT,
    agg: str = typer.Option("1h", "--agg", help="Interval length: 10min, 1h, ..."),
    reduce: str = REDUCE,
    policy: str = typer.Option("predictive", "--policy", help="predictive, reactive or static."),
    compare: bool = typer.Option(False, "--compare", help="Run all three and sweep them: Pareto plot."),
    model: str = typer.Option("ensemble", "--model", help="Forecaster of the predictive policy."),
    test_days: float = typer.Option(8.0, "--test-days", help="Simulate the last D days."),
    capacity: float | None = typer.Option(
        None, "--capacity", help="Demand one unit serves per step (nodes: 1)."
    ),
    service_time_s: float = typer.Option(28.7, "--service-time-s", help="Mean service time of one request."),
    latency_slo_s: float = typer.Option(60.0, "--latency-slo-s", help="Mean latency the SLO allows."),
    startup_s: float = typer.Option(600.0, "--startup-s", help="Lead time for a new replica or node."),
    max_units: int | None = typer.Option(None, "--max-units", help="At most this many units."),
    json_path: Path | None = JSON,
    plot: Path | None = typer.Option(
        None, "--plot", help="Pareto PNG (with --compare; default beside --json)."
    ),
) -> None:
    """Replay the series against predictive, reactive (HPA-like) or static autoscaling."""
    from skyline.cli.forecast_autoscale import run_autoscale

    if policy not in POLICY_NAMES:
        raise ConfigError(f"--policy {policy!r} is unknown; use one of {', '.join(POLICY_NAMES)}")
    data = _load(series, time_col, value_col, count, agg, reduce)
    payload = run_autoscale(
        data,
        policies=POLICY_NAMES if compare else (policy,),
        compare=compare,
        model=model,
        test_steps=_test_steps(test_days, data.step_s, len(data)),
        capacity=capacity,
        service_time_s=service_time_s,
        latency_slo_s=latency_slo_s,
        startup_s=startup_s,
        max_units=max_units,
        plot=plot if plot is not None or not compare else _beside(json_path),
    )
    if json_path is not None:
        write_json(json_path, payload)
        return
    for name, summary in payload["policies"].items():
        console.print(f"{name:11} " + "  ".join(f"{k} {v:g}" for k, v in summary.items()))
    if compare:
        console.print(f"predictive dominates {payload['dominated_share']:.0%} of the reactive settings")


def _beside(json_path: Path | None) -> Path:
    return json_path.with_name(json_path.stem + "-pareto.png") if json_path else Path("autoscale-pareto.png")
