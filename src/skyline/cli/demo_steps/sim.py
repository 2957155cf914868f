"""Demo step: fifo, tiresias-las and tiresias-gittins on a slice of Philly (synthetic without data)."""

from __future__ import annotations

from skyline.cli.demo import DemoContext, StepReport
from skyline.simulation.config import SimConfig
from skyline.simulation.engine import simulate
from skyline.simulation.metrics import summarize
from skyline.simulation.outcome import Outcome
from skyline.simulation.plots import plot_jct_cdf, plot_utilization
from skyline.simulation.readers import read_philly
from skyline.simulation.runner import build_policy, read_gput_prior
from skyline.simulation.synthetic import at_load, effective_load, synthetic_trace
from skyline.simulation.trace import Trace, parse_cluster

POLICIES = ("fifo", "tiresias-las", "tiresias-gittins")


def _trace(ctx: DemoContext, jobs: int) -> tuple[Trace, str]:
    if ctx.shared_data is not None:
        path = ctx.shared_data / "traces" / "philly-pollux" / "philly.csv"
        if path.is_file():
            full = read_philly(path, vc="11cb48")
            return full.slice(2000, 2000 + jobs), f"Philly VC 11cb48, jobs 2000-{2000 + jobs}"
    return synthetic_trace(
        jobs=jobs, jobs_per_hour=6, seed=0
    ), "a synthetic Philly-like trace (Gavel's model)"


def run(ctx: DemoContext) -> StepReport:
    jobs = 600 if ctx.quick else 2000
    trace, origin = _trace(ctx, jobs)
    # 4 nodes of 8 GPUs, arrivals compressed (order and gaps kept) to an effective load of 1.0:
    # near saturation is where policies differ.
    nodes = 4
    trace = at_load(trace, load=1.0, total_gpus=nodes * 8)
    cluster = parse_cluster(f"{nodes}x8")
    prior = None
    if (
        ctx.shared_data is not None
        and (ctx.shared_data / "traces" / "tiresias" / "yarn-gput10000.csv").is_file()
    ):
        prior = read_gput_prior(ctx.shared_data / "traces" / "tiresias" / "yarn-gput10000.csv")
    config = SimConfig(window=(jobs // 10, jobs * 9 // 10))
    outcomes: dict[str, Outcome] = {}
    rows = ["| policy | mean JCT (h) | p99 JCT (h) | mean queue (h) | preemptions |", "|---|---|---|---|---|"]
    metrics: dict[str, dict[str, float]] = {}
    for name in POLICIES:
        outcomes[name] = simulate(
            trace, build_policy(name, gittins_prior=prior), nodes=cluster, config=config
        )
        m = summarize(outcomes[name])
        metrics[name] = {k: m[k] for k in ("mean_jct_s", "p99_jct_s", "mean_queue_s", "preemptions")}
        rows.append(
            f"| {name} | {m['mean_jct_s'] / 3600:.2f} | {m['p99_jct_s'] / 3600:.1f} | "
            f"{m['mean_queue_s'] / 3600:.2f} | {m['preemptions']} |"
        )
    figures = (
        plot_jct_cdf(outcomes, ctx.out_dir / "jct_cdf.png"),
        plot_utilization(outcomes, ctx.out_dir / "utilization.png"),
    )
    load = effective_load(trace, nodes * 8)
    summary = (
        f"{len(trace.jobs)} jobs of {origin}, arrivals compressed to an effective load of {load:.2f} on "
        f"{nodes * 8} GPUs (the GPU-time that arrives and could run within the arrival span, per GPU-time), "
        f"measured on jobs {jobs // 10}-{jobs * 9 // 10}:\n\n" + "\n".join(rows)
    )
    return StepReport(
        title="Scheduling policies on a cluster trace", summary=summary, figures=figures, metrics=metrics
    )
