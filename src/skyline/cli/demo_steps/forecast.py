"""Demo step: forecast hourly inference requests (Alibaba GenAI trace, or synthetic) and autoscale ahead."""

from __future__ import annotations

from pathlib import Path

from skyline.cli.demo import DemoContext, StepReport
from skyline.cli.forecast_autoscale import run_autoscale
from skyline.scheduling.forecasting import BacktestConfig, Series, backtest, load_series, make_forecaster
from skyline.scheduling.forecasting.plot import plot_backtests
from skyline.scheduling.forecasting.synthetic import synthetic_requests

ALIBABA = Path("load/alibaba-genai-2026/lora_request_trace.csv")


def _series(ctx: DemoContext) -> tuple[Series, str, int]:
    """The series, where it came from, and how many days are the test part."""
    if ctx.shared_data is not None and (ctx.shared_data / ALIBABA).is_file():
        loaded = load_series(ctx.shared_data / ALIBABA, time_col="gmt_create", count=True, agg="1h")
        return loaded.series, "Alibaba GenAI serving trace (requests per hour, 23 days)", 8
    return synthetic_requests(days=21), "synthetic requests per hour (shared data absent)", 7


def run(ctx: DemoContext) -> StepReport:
    series, source, test_days = _series(ctx)
    models = ["persistence", "seasonal-naive-weekly", "gbdt", "ensemble"]
    if not ctx.quick:
        models[2:2] = ["holt-winters", "sarima"]
    config = BacktestConfig(horizon=1, test_steps=test_days * 24)
    results = [backtest(series, make_forecaster(name, horizon=1), config) for name in models]
    forecast_png = plot_backtests(series, results, ctx.out_dir / "forecast.png", last_steps=72)
    pareto_png = ctx.out_dir / "autoscale-pareto.png"
    scaling = run_autoscale(
        series,
        policies=("predictive", "reactive", "static"),
        compare=True,
        model="ensemble",
        test_steps=config.test_steps,
        capacity=None,
        service_time_s=28.7,
        latency_slo_s=60.0,
        startup_s=600.0,
        max_units=None,
        plot=pareto_png,
    )
    rows = "\n".join(
        f"| {r.model} | {r.accuracy.mae:.2f} | {r.accuracy.rmse:.2f} | {r.accuracy.wmape:.3f} | "
        f"{r.accuracy.mase:.3f} | {r.accuracy.p90_coverage:.2f} |"
        for r in results
    )
    policies = "\n".join(
        f"| {name} | {o['slo_violations']} | {o['unserved']:.0f} | {o['provisioned_hours']:.0f} | {o['scaling_actions']} |"
        for name, o in scaling["policies"].items()
    )
    summary = (
        f"**Series:** {source}; the last {test_days} days are the test part; 1-hour-ahead forecasts, "
        "rolling origin, weekly refits.\n\n"
        "| model | MAE | RMSE | wMAPE | MASE | P90 coverage |\n|---|---|---|---|---|---|\n"
        f"{rows}\n\n"
        "Replicas sized from the forecast (service time 28.7 s, mean-latency SLO 60 s, 10-minute start-up) "
        "against an HPA-like reactive autoscaler and static provisioning on the same test days:\n\n"
        "| policy | steps violating the SLO | unserved requests | replica-hours | scaling actions |\n"
        f"|---|---|---|---|---|\n{policies}\n\n"
        f"Over the knob sweeps, a predictive setting dominates {scaling['dominated_share']:.0%} of the "
        "reactive settings (no more violations at no more replica-hours)."
    )
    return StepReport(
        title="Demand forecasting and predictive autoscaling",
        summary=summary,
        figures=(forecast_png, pareto_png),
        metrics={
            "models": {r.model: r.accuracy.as_dict() for r in results},
            "policies": scaling["policies"],
            "dominated_share": scaling["dominated_share"],
        },
    )
