"""`skyline sim`: the policy registry, trace replays, policy comparisons and optimality gaps.

Module import stays light (typer + skyline modules without heavy frameworks); pymoo, OR-Tools and
matplotlib load only inside the commands that need them. Each command builds a config, calls the
library (`skyline.simulation`) and renders; a flag the command would not use is an error.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from skyline.cli.data import shared_data_dir
from skyline.cli.output import console, progress, write_json
from skyline.errors import ConfigError

if TYPE_CHECKING:
    from skyline.simulation.config import SimConfig
    from skyline.simulation.sources import TraceSource

sim_app = typer.Typer(help="Simulate scheduling policies on cluster traces.", no_args_is_help=True)

TRACE_HELP = "Trace file (philly.csv, openb pod list, or a generic CSV); not needed for synthetic."


def _window(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise ConfigError(f"--window must be A:B job indices like 1000:3000, got {text!r}") from None
    return start, stop


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--policies must name at least one policy, got {text!r}")
    return names


def _near(trace: Path | None, *relative: str) -> Path | None:
    """A companion file: beside the trace's folder, or in the shared data, if it exists."""
    candidates: list[Path] = []
    if trace is not None:
        candidates += [trace.parent / relative[-1], trace.parent.parent / Path(*relative[-2:])]
    data = shared_data_dir()
    if data is not None:
        candidates.append(data / "traces" / Path(*relative))
    return next((c for c in candidates if c.is_file()), None)


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What `run` and `compare` share: the trace source, the simulator's config, the cluster, a prior."""

    source: TraceSource
    config: SimConfig
    cluster: str | None
    prior_path: Path | None
    prior_given: bool  # named by the user (an error where no policy takes it), not found by default

    def prior_for(self, names: list[str]) -> list[float] | None:
        """The GPU-time prior, read only when one of ``names`` takes it (named for none: an error)."""
        from skyline.scheduling.policies import policy_class
        from skyline.scheduling.policy import takes_option
        from skyline.simulation.runner import read_gput_prior

        if not any(takes_option(policy_class(n), "prior_gpu_s") for n in names):
            if self.prior_given:
                raise ConfigError(f"{', '.join(names)} take(s) no GPU-time prior: drop --gittins-prior")
            return None
        return read_gput_prior(self.prior_path) if self.prior_path else None


def _inputs(options: dict[str, Any]) -> _Inputs:
    """Options of `run` / `compare` → the library's configs (companion files found beside the trace)."""
    from skyline.simulation.config import SimConfig
    from skyline.simulation.sources import READERS, TraceSource
    from skyline.simulation.throughput import read_gavel_throughputs

    fmt, trace = options["fmt"], options["trace"]
    found = {k: _near(trace, *rel) for k, rel in getattr(READERS.get(fmt), "companions", {}).items()}
    source = TraceSource(
        format=fmt, path=trace, vc=options["vc"], skip_invalid=options["skip_invalid"],
        vc_sizes=options["vc_sizes"] or found.get("vc_sizes"), nodes=options["nodes"] or found.get("nodes"),
        jobs=options["jobs"], jobs_per_hour=options["load"], seed=options["seed"] or 0,
    )  # fmt: skip
    draws = not source.reader.needs_path or options["load"] is not None or options.get("sweep")
    if options["seed"] is not None and not draws:
        raise ConfigError("--seed is used only by synthetic traces and --load/--loads resampling; drop it")
    throughput = read_gavel_throughputs(options["throughputs"]) if options["throughputs"] else {}
    config = SimConfig(
        restart_penalty_s=options["restart_penalty_s"], consolidation_slowdown=options["consolidation_slowdown"],
        round_s=options["round_s"], window=_window(options["window"]), throughput=throughput,
    )  # fmt: skip
    prior_path = options["gittins_prior"] or _near(None, "tiresias", "yarn-gput10000.csv")
    cluster = options["cluster"] or source.reader.default_cluster
    return _Inputs(source, config, cluster, prior_path, options["gittins_prior"] is not None)


@sim_app.command("policies")
def policies(as_json: bool = typer.Option(False, "--json", help="Print the registry as JSON.")) -> None:
    """List the registered policies and whether each is told job durations (oracle)."""
    from skyline.scheduling.policies import POLICIES

    table = {name: {"oracle": bool(cls.oracle)} for name, cls in POLICIES.items()}
    if as_json:
        typer.echo(json.dumps({"policies": table}, indent=2))
        return
    for name, info in table.items():
        console.print(f"{name:22s} {'oracle (told durations)' if info['oracle'] else ''}")


TRACE = typer.Option(None, "--trace", help=TRACE_HELP)
FORMAT = typer.Option("philly", "--format", help="philly | openb | generic | synthetic")
VC = typer.Option(
    None, "--vc", help="Replay one virtual cluster (Philly: its jobs on its nodes; generic: its rows)."
)
VC_SIZES = typer.Option(None, "--vc-sizes", help="Helios philly_vc.csv (default: found beside the trace).")
NODES = typer.Option(None, "--nodes", help="openb node list (default: found beside the trace).")
CLUSTER = typer.Option(None, "--cluster", help="NODESxGPUS[:TYPE],... e.g. 64x8 or 8x8:v100,8x8:k80.")
WINDOW = typer.Option(None, "--window", help="Measure jobs A:B (submit order) only: steady state.")
SEED = typer.Option(None, "--seed", help="Seed for synthetic traces and load resampling (default 0).")
LOAD = typer.Option(None, "--load", help="Resample the trace with Poisson arrivals at this many jobs/hour.")
JOBS = typer.Option(None, "--jobs", help="Jobs to generate/resample, or the first N jobs of the file.")
SKIP = typer.Option(False, "--skip-invalid", help="Count and skip bad rows instead of stopping.")
PENALTY = typer.Option(0.0, "--restart-penalty-s", help="Work added when a preempted job restarts (s).")
SLOWDOWN = typer.Option(1.0, "--consolidation-slowdown", help="Slowdown of a gang spread over extra nodes.")
ROUND = typer.Option(0.0, "--round-s", help="Decide every N seconds (0: at every arrival/finish).")
THROUGHPUTS = typer.Option(None, "--throughputs", help="Gavel simulation_throughputs.json (GPU-type speeds).")
PRIOR = typer.Option(None, "--gittins-prior", help="GPU-time samples for tiresias-gittins (yarn-gput*.csv).")


@sim_app.command("run")
def run(
    policy: str = typer.Option(..., "--policy", help="Registered policy name (see 'skyline sim policies')."),
    json_path: Path | None = typer.Option(None, "--json", help="Write {policy, jobs, metrics} here."),
    trace: Path | None = TRACE, fmt: str = FORMAT, vc: str | None = VC, vc_sizes: Path | None = VC_SIZES,
    nodes: Path | None = NODES, cluster: str | None = CLUSTER, window: str | None = WINDOW,
    seed: int | None = SEED, load: float | None = LOAD, jobs: int | None = JOBS, skip_invalid: bool = SKIP,
    restart_penalty_s: float = PENALTY, consolidation_slowdown: float = SLOWDOWN, round_s: float = ROUND,
    throughputs: Path | None = THROUGHPUTS, gittins_prior: Path | None = PRIOR,
) -> None:  # fmt: skip
    """Replay a trace under one policy and report JCT, queueing, utilization and decision time."""
    from skyline.simulation.runner import build_policy, simulate_policy

    inputs = _inputs(locals())
    chosen = build_policy(policy, gittins_prior=inputs.prior_for([policy]))
    with progress(policy, None, enabled=json_path is None) as advance:
        the_trace, payload = simulate_policy(inputs.source, chosen, inputs.cluster, inputs.config, advance)
    if json_path is not None:
        write_json(json_path, payload)
        return
    if the_trace.skipped:
        console.print(f"skipped {the_trace.skipped} invalid row(s), e.g. {the_trace.skipped_examples[0]}")
    console.print(f"{policy} on {the_trace.name} ({len(the_trace.jobs)} jobs)")
    for key, value in payload["details"].items():
        console.print(f"  {key:30s} {value:,.3f}" if isinstance(value, float) else f"  {key:30s} {value}")


@sim_app.command("compare")
def compare(
    policies_: str = typer.Option(..., "--policies", help="Comma-separated policy names."),
    out: Path = typer.Option(Path("runs/sim-compare"), "--out", help="Folder for summary.json and PNGs."),
    loads: str | None = typer.Option(None, "--loads", help="Load sweep: comma-separated jobs/hour."),
    seeds: int | None = typer.Option(None, "--seeds", help="Seeds per load in a sweep (default 1; averaged)."),
    trace: Path | None = TRACE, fmt: str = FORMAT, vc: str | None = VC, vc_sizes: Path | None = VC_SIZES,
    nodes: Path | None = NODES, cluster: str | None = CLUSTER, window: str | None = WINDOW,
    seed: int | None = SEED, load: float | None = LOAD, jobs: int | None = JOBS, skip_invalid: bool = SKIP,
    restart_penalty_s: float = PENALTY, consolidation_slowdown: float = SLOWDOWN, round_s: float = ROUND,
    throughputs: Path | None = THROUGHPUTS, gittins_prior: Path | None = PRIOR,
) -> None:  # fmt: skip
    """Run several policies on the same trace: a table, DIR/summary.json and PNG plots."""
    from skyline.simulation.compare import compare_policies, sweep_of

    sweep = sweep_of(loads, seeds=seeds, load=load)
    inputs = _inputs({**locals(), "sweep": bool(sweep)})
    names = _names(policies_)
    with progress("runs", len(names) * max(len(sweep), 1) * (seeds or 1)) as advance:
        summary = compare_policies(
            names, inputs.source, inputs.cluster, inputs.config, out=out, loads=sweep, seeds=seeds or 1,
            gittins_prior=inputs.prior_for(names), progress=advance,
        )  # fmt: skip
    header = f"{'policy':22s} {'mean JCT h':>11s} {'p99 JCT h':>10s} {'mean queue h':>12s} {'util':>6s} {'preempt':>8s}"
    console.print(header)
    for name, m in summary["policies"].items():
        console.print(
            f"{name:22s} {m['mean_jct_s'] / 3600:11.3f} {m['p99_jct_s'] / 3600:10.3f} "
            f"{m['mean_queue_s'] / 3600:12.3f} {m['gpu_utilization']:6.3f} {m['preemptions']:8.0f}"
        )
    console.print(f"summary: {out / 'summary.json'}; plots: {', '.join(summary['plots'])}")


@sim_app.command("optgap")
def optgap(
    policies_: str = typer.Option("genetic,pso,best-fit", "--policies", help="Policies/solvers to measure."),
    instances: int = typer.Option(20, "--instances", help="Random rounds to solve."),
    jobs: int = typer.Option(100, "--jobs", help="Waiting jobs per round."),
    seed: int = typer.Option(0, "--seed", help="Seed of the instances and the solvers."),
    time_limit_s: float = typer.Option(30.0, "--time-limit-s", help="CP-SAT time limit per round."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the gaps here."),
) -> None:
    """Per-round gap of each policy to the CP-SAT optimum: median and p95, and solve times."""
    from skyline.scheduling.optgap import optimality_gaps

    with progress("rounds", instances, enabled=json_path is None) as advance:
        result = optimality_gaps(
            _names(policies_), instances=instances, jobs=jobs, seed=seed, time_limit_s=time_limit_s,
            progress=advance,
        )  # fmt: skip
    if json_path is not None:
        write_json(json_path, result)
        return
    for name, r in result["policies"].items():
        console.print(
            f"{name:16s} gap median {r['gap_median']:.4%}  p95 {r['gap_p95']:.4%}  time {r['time_ms_median']:.1f} ms"
        )
    console.print(
        f"CP-SAT optimum: median {result['optimal_time_ms_median']:.1f} ms, "
        f"proven optimal in {result['optimal_proven']}/{instances} rounds"
    )


@sim_app.command("fidelity")
def fidelity(
    policy: str = typer.Option(..., "--policy", help="Registered policy name."),
    trace: Path = typer.Option(..., "--trace", help="Philly trace (philly.csv)."),
    vc: str | None = typer.Option(None, "--vc", help="Take the jobs of this virtual cluster only."),
    start: int = typer.Option(0, "--start", help="Index of the slice's first job."),
    jobs: int = typer.Option(200, "--jobs", help="Jobs in the slice."),
    time_scale: float = typer.Option(
        0.01, "--time-scale", help="Trace seconds → live seconds (0.01: 100x faster)."
    ),
    min_duration_s: float = typer.Option(2.0, "--min-duration-s", help="Shortest live job (s)."),
    nodes: int = typer.Option(4, "--nodes", help="Agents started on this machine."),
    gpus_per_node: int = typer.Option(8, "--gpus-per-node", help="GPU slots each agent offers."),
    work_dir: Path = typer.Option(Path("runs/sim-fidelity"), "--work-dir", help="State, checkpoints, logs."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the summary and per-job JCTs here."),
) -> None:
    """Replay a trace slice live (a control plane, agents and real processes on this machine) and in the
    simulator under the same policy; report per-job and mean JCT error."""
    from skyline.cluster.fidelity import FidelityConfig, run_fidelity, scale_slice
    from skyline.scheduling.policies import policy_class
    from skyline.scheduling.policy import time_scaled
    from skyline.simulation.sources import TraceSource, load_trace

    sliced = scale_slice(
        load_trace(TraceSource(format="philly", path=trace, vc=vc)), start=start, jobs=jobs,
        time_scale=time_scale, min_s=min_duration_s, max_gpus=nodes * gpus_per_node,
    )  # fmt: skip
    config = FidelityConfig(
        jobs=sliced, policy=policy, policy_options=time_scaled(policy_class(policy).Options(), time_scale),
        nodes=nodes, gpus_per_node=gpus_per_node, work_dir=work_dir,
    )  # fmt: skip
    with progress("jobs", len(sliced), enabled=json_path is None) as advance:
        result = run_fidelity(config, advance)
    summary = result.summary()
    if json_path is not None:
        write_json(json_path, {**summary, "per_job": [dataclasses.asdict(j) for j in result.jobs]})
        return
    for key, value in summary.items():
        console.print(f"  {key:24s} {value:,.4f}" if isinstance(value, float) else f"  {key:24s} {value}")
