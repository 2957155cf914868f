"""Demo step: a model deployed as an autoscaled service; two bursts replayed; replicas follow the forecast.

A control plane with one node agent (in this process); the MLP served by `skyline serve` replicas behind
the gateway; predictive autoscaling (gbdt forecaster, P90 over the measured replica start-up, reactive
floor) every ``STEP_S``; a request-rate series with two bursts replayed open loop. The second burst is
forecast from the first: replicas are added as the ramp starts, sized for where demand will be when they
are ready, and released after. Every decision is printed (observed, forecast, each rule, replicas, why)
and plotted against demand.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from skyline.cli.demo import DemoContext, StepReport
from skyline.cli.demo_steps.node import demo_node

STEP_S = 2.0
TARGET_RPS = 10.0
BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
).encode()


def burst_rates(quick: bool) -> np.ndarray:
    """Requests/s, one value per second: a quiet start, a burst, a lull, the same burst again, quiet."""
    scale = 1 if quick else 2
    quiet, ramp, top, lull = 8 * scale, 8 * scale, 6 * scale, 10 * scale
    burst = np.concatenate([np.linspace(4, 45, ramp), np.full(top, 45.0), np.linspace(45, 4, ramp)])
    return np.concatenate([np.full(quiet, 4.0), burst, np.full(lull, 4.0), burst, np.full(quiet + lull, 4.0)])


def _spec(repo: Path) -> dict[str, Any]:
    command = (
        f"{sys.executable} -m skyline.cli.app serve --repo {repo} --port $PORT --insecure-no-auth-local-only"
    )
    return {
        "name": "mlp", "command": command, "cpus": 0.25, "memory_mib": 300, "replicas": 1, "min_replicas": 1,
        "max_replicas": 6, "model": "mlp:1", "slo_p99_ms": 100,
        "autoscale": {"mode": "predictive", "forecaster": "gbdt", "target_rps_per_replica": TARGET_RPS,
                      "step_s": STEP_S, "cooldown_s": 2 * STEP_S, "refit_every_steps": 5},
    }  # fmt: skip


def _run_service(
    ctx: DemoContext, rates: np.ndarray
) -> tuple[dict[str, Any], dict[str, list[Any]], Any, float]:
    from skyline.cluster.server import ServerConfig, ServerThread
    from skyline.cluster.service_client import ServiceClient
    from skyline.cluster.service_load import replay
    from skyline.serving.repository import ModelRepository
    from skyline.serving.samples import write_mlp_onnx

    repo = ctx.out_dir / "repo"
    if not (repo / "mlp" / "1").exists():
        repo.mkdir(parents=True, exist_ok=True)
        ModelRepository(repo).add(write_mlp_onnx(ctx.out_dir / "mlp.onnx"), name="mlp", version=1)
    with (
        ServerThread(ServerConfig(state_dir=ctx.out_dir / "state", port=0)) as server,
        demo_node(ctx, server) as (admin, _),
    ):
        services = ServiceClient(admin)
        services.deploy(_spec(repo))
        services.wait_ready("mlp", timeout_s=120)
        started = server.built.store.now()
        log = asyncio.run(replay(server.built.services.gateway.url, path="/services/mlp/v2/models/mlp/infer",
                                 body=BODY, rates_rps=rates.tolist(), step_s=1.0))  # fmt: skip
        history = {
            "decisions": [d for d in services.decisions("mlp") if d["at_s"] >= started],
            "windows": services.metrics("mlp", since_s=started),
        }
        status = services.status("mlp")
        services.delete("mlp")
        services.wait_gone("mlp", timeout_s=60)
    return status, history, log, started


def _plot(rates: np.ndarray, history: dict[str, list[Any]], started: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    decisions = history["decisions"]
    ax.step(np.arange(len(rates)), rates / TARGET_RPS, where="post", color="0.6", label="demand / target rps")
    at = [d["at_s"] - started for d in decisions]
    ax.step(at, [d["target"] for d in decisions], where="post", label="replicas (decided)")
    ready = [(w["at_s"] - started, w["ready_replicas"]) for w in history["windows"]]
    if ready:
        ax.step(*zip(*ready, strict=True), where="post", linestyle="--", label="replicas ready (serving)")
    forecast = [
        (t, d["forecast"] / (TARGET_RPS * STEP_S))
        for t, d in zip(at, decisions, strict=True)
        if d["forecast"] is not None
    ]
    if forecast:
        ax.plot(*zip(*forecast, strict=True), ".", label="forecast P90 over the lead / target")
    ax.set_xlabel("seconds into the replay")
    ax.set_ylabel("replicas")
    ax.set_title("A predictive service through two bursts")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _row(d: dict[str, Any], started: float) -> str:
    forecast = "" if d["forecast"] is None else f"{d['forecast'] / STEP_S:.1f}"
    return (
        f"| {d['at_s'] - started:.0f} | {d['observed'] / STEP_S:.1f} | {forecast} | {d['predictive'] or ''} | "
        f"{d['reactive'] or ''} | {d['current']} → {d['target']} | {d['reason']} |"
    )


def run(ctx: DemoContext) -> StepReport:
    rates = burst_rates(ctx.quick)
    status, history, log, started = _run_service(ctx, rates)
    decisions = history["decisions"]
    outcome = log.summary(slo_s=0.1)
    figure = _plot(rates, history, started, ctx.out_dir / "services.png")
    rows = [_row(d, started) for d in decisions if d["target"] != d["current"] or d["reason"] == "forecast"]
    summary = "\n".join([
        f"`skyline serve` replicas of the MLP behind the gateway, predictive autoscaling every {STEP_S:g} s "
        f"(gbdt, P90 over the measured start-up lead of {decisions[-1]['lead_s'] if decisions else 0:.1f} s, "
        f"reactive floor; {TARGET_RPS:g} requests/s per replica). {outcome['requests']} requests replayed "
        f"open loop over {len(rates)} s (bursts up to {max(rates):g}/s): {outcome['failed']} failed, p50 "
        f"{outcome['p50_ms']:.1f} ms, p99 {outcome['p99_ms']:.1f} ms; {len(decisions)} decisions, "
        f"{status['replica_seconds']:.0f} replica-seconds.",
        "",
        "Decisions that changed the count or followed the forecast (rates in requests/s):",
        "",
        "| at s | observed | forecast P90 | predictive | reactive | replicas | why |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    return StepReport(
        title="Services: a model scaled ahead of a replayed burst",
        summary=summary,
        figures=(figure,),
        metrics={
            "requests": outcome["requests"], "failed": outcome["failed"], "p99_ms": round(outcome["p99_ms"], 1),
            "decisions": len(decisions), "max_replicas": max((d["target"] for d in decisions), default=1),
            "replica_seconds": round(status["replica_seconds"], 1),
        },
    )  # fmt: skip
