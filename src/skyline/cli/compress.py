"""`skyline compress MODEL --recipe R --out DIR` and `skyline compress infer MODEL --input FILE`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from skyline.cli.output import console, err_console, write_json
from skyline.errors import ConfigError


class _ModelFirstGroup(TyperGroup):
    """``skyline compress MODEL ...`` runs the ``run`` command; ``skyline compress infer ...`` runs infer."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


compress_app = typer.Typer(
    cls=_ModelFirstGroup,
    help=(
        "Prune, distill, export, quantize a model and compare the variants (size, latency, metric). "
        "`skyline compress MODEL --recipe R --out DIR` is short for `skyline compress run MODEL ...`."
    ),
    no_args_is_help=True,
)


def _recipes(specs: list[str]) -> list[Any]:
    from skyline.compression.recipe import load_recipe

    names = [name.strip() for spec in specs for name in spec.split(",") if name.strip()]
    if not names:
        raise ConfigError("--recipe needs at least one recipe name or YAML file")
    return [load_recipe(name) for name in names]


def _print_table(report: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{report.model} — {report.metric_name}, {report.threads} thread(s), ratios vs fp32")
    for header in report.table_header:
        table.add_column(header, justify="left" if header == "variant" else "right")
    for row in report.table_rows():
        table.add_row(*row)
    # Ten columns: wider than 80 even when stdout is not a terminal, so cells are not cut.
    console.print(table, width=max(console.width, 140))


@compress_app.command("run")
def run(
    model: str = typer.Argument(
        ..., help="digits-cnn, minilm, efficientnet-lite0, or a model.pt from `skyline train`."
    ),
    recipe: list[str] = typer.Option(
        ["int8"],
        "--recipe",
        "-r",
        help="Built-in (int8, prune50-int8, distill-int8, onnx, prune50, sparse50, torchao-int8, bf16) or a YAML file; repeat or comma-separate.",
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for report.json, details.json, pareto.png and variants/."
    ),
    dataset: str = typer.Option("digits", help="Dataset a model.pt was trained on (as in `skyline train`)."),
    threads: int = typer.Option(1, min=1, help="Intra-op threads every variant is measured with."),
    max_metric_drop: float | None = typer.Option(
        None,
        help="Refuse (exit 2) any variant whose metric falls by more than this (metric units, e.g. points).",
    ),
    quick: bool = typer.Option(
        False, help="Fewer timing runs, and 8 instead of 15 epochs for the digits-cnn teacher."
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write report.json's content here; quiet stdout."
    ),
) -> None:
    """Compress MODEL with each recipe and measure every variant against the original (fp32)."""
    from skyline.compression.measure import MeasureConfig
    from skyline.compression.pipeline import compress
    from skyline.compression.report import refuse_drops
    from skyline.compression.subjects import resolve_subject

    if max_metric_drop is not None and max_metric_drop < 0:
        raise ConfigError(f"--max-metric-drop must be >= 0, got {max_metric_drop}")
    recipes = _recipes(recipe)
    quiet = json_path is not None
    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"  {m} ..."))
    subject = resolve_subject(model, dataset=dataset, quick=quick)
    measure = MeasureConfig(
        threads=threads, latency_runs=50 if quick else 200, throughput_runs=5 if quick else 10
    )
    report = compress(
        subject.module, subject.task, recipes, out, model_name=subject.name, measure=measure,
        max_metric_drop=max_metric_drop, on_progress=say,
    )  # fmt: skip
    if json_path is not None:
        write_json(json_path, report.as_json())
    else:
        _print_table(report)
        console.print(f"report: {out / 'report.json'}  plot: {out / 'pareto.png'}")
    refuse_drops(report, max_metric_drop, out / "variants")


@compress_app.command("infer")
def infer(
    model: Path = typer.Argument(
        ..., help="A .onnx file (e.g. variants/int8.onnx) or a whole-module .pt file."
    ),
    input_path: Path = typer.Option(
        ..., "--input", help=".npy (one input) or .npz (named inputs), batch first."
    ),
    threads: int | None = typer.Option(
        None, min=1, help="Intra-op threads per process (default: cores / procs)."
    ),
    procs: int | None = typer.Option(
        None, min=1, help="Worker processes, each with a shard of the input (default 1)."
    ),
    batch: int = typer.Option(64, min=1, help="Batch size inside each process."),
    output: Path | None = typer.Option(None, help="Write the outputs (in input order) to this .npy file."),
    json_path: Path | None = typer.Option(
        None, "--json", help="Write {samples, seconds, throughput_per_s, ...} here."
    ),
) -> None:
    """Batch inference over all cores: threads × procs never exceeds the cores."""
    import numpy as np

    from skyline.compression.batch_infer import load_inputs, model_input_names, plan, run_batch_inference

    infer_plan = plan(threads, procs, batch)
    inputs = load_inputs(input_path, model_input_names(model))
    result = run_batch_inference(model, inputs, infer_plan)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        np.save(output, result.outputs)
    summary = {
        "model": str(model),
        "samples": result.samples,
        "seconds": result.seconds,
        "throughput_per_s": result.throughput_per_s,
        "threads": infer_plan.threads,
        "procs": infer_plan.procs,
        "batch": infer_plan.batch_size,
        "cores": infer_plan.cores,
    }
    if json_path is not None:
        write_json(json_path, summary)
        return
    console.print(
        f"{result.samples} samples in {result.seconds:.3f} s = {result.throughput_per_s:,.0f}/s "
        f"({infer_plan.procs} proc × {infer_plan.threads} thread(s), batch {infer_plan.batch_size}, {infer_plan.cores} cores)"
    )
