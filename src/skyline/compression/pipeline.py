"""`compress`: apply recipes to a model, measure every variant side by side, write the report."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from skyline.compression.artifact import Artifact, OnnxArtifact, TorchArtifact
from skyline.compression.measure import MeasureConfig, measure_variants
from skyline.compression.recipe import Recipe
from skyline.compression.report import CompressionReport, gate_failures, plot_pareto
from skyline.compression.steps import StepContext
from skyline.compression.task import Task
from skyline.errors import ConfigError


def apply_recipe(
    module: nn.Module, recipe: Recipe, task: Task, work_dir: Path, *, threads: int
) -> tuple[Artifact, dict[str, Any]]:
    """Run ``recipe``'s steps on a copy of ``module``; return the final form and the steps' notes."""
    ctx = StepContext(task=task, work_dir=work_dir, prefix=recipe.name, threads=threads)
    artifact: Artifact = TorchArtifact(module)
    for step in recipe.steps:
        artifact = step.apply(artifact, ctx)
    return artifact, ctx.notes


def _save(name: str, artifact: Artifact, folder: Path) -> Path:
    """Keep the final file of each variant as ``variants/<name>.onnx`` or ``.pt`` (whole module)."""
    if isinstance(artifact, OnnxArtifact):
        target = folder / f"{name}.onnx"
        if artifact.path != target:
            shutil.copyfile(artifact.path, target)
        return target
    target = folder / f"{name}.pt"
    try:
        torch.save(artifact.module, target)
    except (AttributeError, TypeError, pickle.PicklingError):
        # torchao's quantized tensors do not pickle as a whole module; their weights still save.
        torch.save(artifact.module.state_dict(), target)
    return target


def compress(
    module: nn.Module,
    task: Task,
    recipes: Sequence[Recipe],
    out_dir: Path,
    *,
    model_name: str,
    measure: MeasureConfig,
    max_metric_drop: float | None = None,
    on_progress: Callable[[str], None] = lambda _msg: None,
) -> CompressionReport:
    """Build each recipe's variant, measure them all with fp32, write report.json, fidelity.json and
    pareto.png under ``out_dir``. Variants failing the gate have their files removed (the report keeps
    their numbers); the caller decides how to refuse (the CLI exits with code 2)."""
    if len({r.name for r in recipes}) != len(recipes):
        raise ConfigError("each recipe may appear once per run")
    module = module.eval()
    variants_dir = out_dir / "variants"
    scratch = out_dir / "work"
    variants_dir.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    variants: dict[str, Artifact] = {"fp32": TorchArtifact(module)}
    notes: dict[str, dict[str, Any]] = {}
    for recipe in recipes:
        on_progress(f"recipe {recipe.name}")
        variants[recipe.name], notes[recipe.name] = apply_recipe(
            module, recipe, task, scratch, threads=measure.threads
        )
    files = {name: _save(name, artifact, variants_dir) for name, artifact in variants.items()}
    measurements = measure_variants(variants, task, measure, on_progress=on_progress)
    if task.compare is not None:
        reference = variants["fp32"].predictor(task, threads=measure.threads)
        for name, artifact in variants.items():
            notes.setdefault(name, {}).update(
                task.compare(artifact.predictor(task, threads=measure.threads), reference)
            )
    report = CompressionReport(
        model=model_name,
        threads=measure.threads,
        metric_name=task.metric_name,
        measurements=measurements,
        notes=notes,
    )
    (out_dir / "report.json").write_text(json.dumps(report.as_json(), indent=2) + "\n")
    details = {
        name: {
            "file": str(files[name].relative_to(out_dir)),
            "best_batch": measurements[name].best_batch,
            **notes.get(name, {}),
        }
        for name in variants
    }
    (out_dir / "details.json").write_text(
        json.dumps({"metric": task.metric_name, "variants": details}, indent=2) + "\n"
    )
    plot_pareto(report, out_dir / "pareto.png")
    shutil.rmtree(scratch, ignore_errors=True)
    if max_metric_drop is not None:
        for name in gate_failures(measurements, max_metric_drop):
            files[name].unlink(missing_ok=True)
    return report
