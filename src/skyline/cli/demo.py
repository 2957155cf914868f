"""`skyline demo`: every capability end to end, with a report under ``runs/demo/``.

Each capability contributes one step: a module in `skyline.cli.demo_steps` with a function
``run(ctx: DemoContext) -> StepReport``. Add the module's name to `STEPS` when the capability lands.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer

from skyline.cli.data import shared_data_dir
from skyline.cli.output import console, err_console, write_json
from skyline.errors import ConfigError

# In the order they run; the name is the module's under skyline.cli.demo_steps.
STEPS: tuple[str, ...] = (
    "linreg",
    "train",
    "compress",
    "serve",
    "llm",
    "security",
    "cluster",
    "services",
    "console",
    "sim",
    "forecast",
    "edge",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoContext:
    """What a step gets: its own output folder, whether to be quick, and the shared data if present."""

    out_dir: Path
    quick: bool
    shared_data: Path | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepReport:
    """What a step shows: a title, a Markdown summary, figures (PNG paths) and numbers for summary.json."""

    title: str
    summary: str
    figures: tuple[Path, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)


def _run_step(name: str, ctx: DemoContext) -> StepReport:
    module = importlib.import_module(f"skyline.cli.demo_steps.{name}")
    report: StepReport = module.run(ctx)
    return report


def _markdown(results: list[tuple[str, StepReport | None, float, str]], root: Path) -> str:
    lines = ["# skyline demo", ""]
    for name, report, seconds, error in results:
        title = report.title if report else name
        lines += [f"## {title}", "", f"*step `{name}`, {seconds:.1f} s*", ""]
        if report is None:
            lines += ["**FAILED**", "", "```", error.strip(), "```", ""]
            continue
        lines += [report.summary.strip(), ""]
        lines += [f"![{fig.stem}]({fig.relative_to(root)})" for fig in report.figures]
        lines.append("")
    return "\n".join(lines)


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Where the results, plots and report go."),
    quick: bool = typer.Option(False, help="Smaller, faster versions of every step."),
    only: str | None = typer.Option(None, help="Comma-separated step names to run (default: all)."),
) -> None:
    """Run the end-to-end demo of every capability and write a report."""
    names = STEPS if only is None else tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = sorted(set(names) - set(STEPS))
    if unknown:
        raise ConfigError(f"unknown demo step(s) {', '.join(unknown)}; steps are {', '.join(STEPS)}")
    root = out.resolve()
    data = shared_data_dir()
    console.print(f"skyline demo → {root}  (shared data: {data or 'absent, synthetic fallbacks'})")
    results: list[tuple[str, StepReport | None, float, str]] = []
    for index, name in enumerate(names, start=1):
        step_dir = root / name
        step_dir.mkdir(parents=True, exist_ok=True)
        console.print(f"[{index}/{len(names)}] {name} ...")
        started = time.perf_counter()
        try:
            report: StepReport | None = _run_step(
                name, DemoContext(out_dir=step_dir, quick=quick, shared_data=data)
            )
            error = ""
        except Exception:  # a failed step is reported, and the others still run
            report, error = None, traceback.format_exc()
            err_console.print(f"  step {name} FAILED:\n{error}")
        seconds = time.perf_counter() - started
        results.append((name, report, seconds, error))
        if report is not None:
            console.print(f"  {report.title}: done in {seconds:.1f} s")
    report_path = root / "report.md"
    report_path.write_text(_markdown(results, root))
    write_json(
        root / "summary.json",
        {
            "steps": {
                name: {"ok": r is not None, "seconds": round(s, 2), "metrics": dict(r.metrics) if r else {}}
                for name, r, s, _ in results
            }
        },
    )
    failed = [name for name, r, _, _ in results if r is None]
    console.print(f"report: {report_path}\nsummary: {root / 'summary.json'}")
    if failed:
        err_console.print(f"demo: {len(failed)} step(s) failed: {', '.join(failed)}")
        raise typer.Exit(1)
