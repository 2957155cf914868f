"""Recipe steps: one interface, one registry (`STEPS`), each step a frozen, validated config.

A step takes the model in its current form (`TorchArtifact` or `OnnxArtifact`) and returns the next form.
Steps that need a PyTorch module (prune, distill, torchao, half, export) refuse an ONNX input with a
clear message, and ONNX steps (optimize, quantize) refuse a module, so a misordered recipe fails early.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from skyline.compression.artifact import Artifact, OnnxArtifact, TorchArtifact
from skyline.compression.distill import distill_student
from skyline.compression.ort_quantize import QuantMode, optimize_graph, quantize_int8
from skyline.compression.pruning import hidden_sizes, prune_structured, schedule_targets
from skyline.compression.task import Task
from skyline.compression.torch_quantize import HalfDtype, TorchaoScheme, to_half, torchao_int8
from skyline.errors import ConfigError
from skyline.training.export import check_parity, export_onnx
from skyline.training.fit import FitConfig, StepHooks, fit
from skyline.training.pruning import make_pruner


@dataclass(slots=True, kw_only=True)
class StepContext:
    """What every step may use: the task, a scratch folder, thread count, and a notes dict for the report."""

    task: Task
    work_dir: Path
    prefix: str
    threads: int = 1
    notes: dict[str, Any] = field(default_factory=dict)


class Step(Protocol):
    """One transformation of a model along a recipe."""

    @property
    def name(self) -> str:
        """The step's name in recipes."""
        ...

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        """Return the transformed model; raise `ConfigError` if this step cannot take ``artifact``."""
        ...


def _module(artifact: Artifact, step: str) -> torch.nn.Module:
    if not isinstance(artifact, TorchArtifact):
        raise ConfigError(f"step {step!r} needs a PyTorch model; put it before 'export' in the recipe")
    return artifact.module


def _onnx(artifact: Artifact, step: str) -> OnnxArtifact:
    if not isinstance(artifact, OnnxArtifact):
        raise ConfigError(f"step {step!r} needs an ONNX model; put 'export' before it in the recipe")
    return artifact


def _labelled(ctx: StepContext, step: str) -> None:
    if ctx.task.data is None:
        raise ConfigError(
            f"step {step!r} fine-tunes on labelled data, which task {ctx.task.name!r} has not; "
            "use a recipe without prune/distill (e.g. int8) for this model"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PruneStep:
    """Structured (channels removed) or unstructured (weights zeroed) pruning, then fine-tuning."""

    kind: Literal["structured", "unstructured"] = "structured"
    amount: float = 0.5
    # Structured pruning in 2 stages (half the cut, fine-tune, the rest, fine-tune) kept the digits CNN
    # within 0.3 points; one 50 % cut with the same 10 epochs lost 1.1.
    stages: int = 2
    finetune_epochs: int = 5  # per stage
    lr: float = 2e-3
    name: str = "prune"

    def __post_init__(self) -> None:
        if self.kind not in ("structured", "unstructured"):
            raise ConfigError(f"prune kind must be structured or unstructured, got {self.kind!r}")
        if not 0.0 <= self.amount < 1.0 or self.finetune_epochs < 0 or self.stages < 1:
            raise ConfigError(
                f"prune amount must be in [0, 1), finetune_epochs >= 0, stages >= 1; got {self.amount}"
            )

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _labelled(ctx, self.name)
        data = ctx.task.data
        assert data is not None
        import copy

        module = copy.deepcopy(_module(artifact, self.name))
        config = FitConfig(epochs=self.finetune_epochs, lr=self.lr)
        if self.kind == "structured":
            for keep in schedule_targets(hidden_sizes(module), self.amount, self.stages):
                module = prune_structured(module, self.amount, keep=keep)
                fit(module, data.x_train, data.y_train, config)
            return TorchArtifact(module)
        pruner = make_pruner("unstructured", module)
        pruner.update(module, self.amount)
        # The pruner zeroes its weights again after every update, so fine-tuning cannot revive them.
        fit(
            module,
            data.x_train,
            data.y_train,
            config,
            hooks=StepHooks(after_update=lambda: pruner.apply(module)),
        )
        return TorchArtifact(pruner.finalize(module))


@dataclass(frozen=True, slots=True, kw_only=True)
class DistillStep:
    """Train a narrower copy of the model (``width`` × channels) on the teacher's softened logits."""

    width: float = 0.45
    epochs: int = 15
    temperature: float = 4.0
    alpha: float = 0.7
    lr: float = 2e-3
    name: str = "distill"

    def __post_init__(self) -> None:
        if not 0.0 < self.width < 1.0:
            raise ConfigError(f"distill width must be in (0, 1), got {self.width}")
        if self.temperature <= 0 or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(
                f"distill temperature must be > 0 and alpha in [0, 1], got {self.temperature}, {self.alpha}"
            )

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _labelled(ctx, self.name)
        assert ctx.task.data is not None
        student = distill_student(
            _module(artifact, self.name),
            ctx.task.data,
            width=self.width,
            config=FitConfig(epochs=self.epochs, lr=self.lr),
            temperature=self.temperature,
            alpha=self.alpha,
        )
        return TorchArtifact(student)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportStep:
    """ONNX export, then the parity check (max |Δ| and metric) recorded in the report notes."""

    tolerance: float = 1e-3
    name: str = "export"

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        module, task = _module(artifact, self.name), ctx.task
        path = ctx.work_dir / f"{ctx.prefix}.onnx"
        sample = task.sample(2)
        export_onnx(module, {n: sample[n] for n in task.input_names}, path, dynamic_axes=task.dynamic_axes)
        diff = check_parity(
            module, path, task.sample(min(64, task.max_batch)), tolerance=self.tolerance, threads=ctx.threads
        )
        exported = OnnxArtifact(path)
        ctx.notes["parity"] = {
            "max_abs_diff": diff,
            "metric_source": task.evaluate(TorchArtifact(module).predictor(task, threads=ctx.threads)),
            "metric_exported": task.evaluate(exported.predictor(task, threads=ctx.threads)),
        }
        return exported


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizeStep:
    """ONNX Runtime offline graph optimization (BERT fusions for transformers)."""

    name: str = "optimize"

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        return optimize_graph(_onnx(artifact, self.name), ctx.task, ctx.work_dir / f"{ctx.prefix}.opt.onnx")


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizeStep:
    """ONNX Runtime int8: ``auto`` = dynamic per-channel for transformers, static QDQ for CNNs."""

    mode: QuantMode = "auto"
    per_channel: bool = True
    keep_first_float: bool = True
    name: str = "quantize"

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "dynamic", "static"):
            raise ConfigError(f"quantize mode must be auto, dynamic or static, got {self.mode!r}")

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        out = ctx.work_dir / f"{ctx.prefix}.int8.onnx"
        return quantize_int8(
            _onnx(artifact, self.name),
            ctx.task,
            out,
            mode=self.mode,
            per_channel=self.per_channel,
            keep_first_float=self.keep_first_float,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TorchaoStep:
    """int8 on the PyTorch path through torchao (linear layers)."""

    scheme: TorchaoScheme = "int8-dynamic"
    name: str = "torchao"

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _module(artifact, self.name)
        assert isinstance(artifact, TorchArtifact)
        return torchao_int8(artifact, scheme=self.scheme)


@dataclass(frozen=True, slots=True, kw_only=True)
class HalfStep:
    """bf16 (CPU or GPU) or fp16 (GPU) weights and activations."""

    dtype: HalfDtype = "bf16"
    name: str = "half"

    def apply(self, artifact: Artifact, ctx: StepContext) -> Artifact:
        _module(artifact, self.name)
        assert isinstance(artifact, TorchArtifact)
        return to_half(artifact, dtype=self.dtype)


STEPS: dict[str, Callable[..., Step]] = {
    "prune": PruneStep,
    "distill": DistillStep,
    "export": ExportStep,
    "optimize": OptimizeStep,
    "quantize": QuantizeStep,
    "torchao": TorchaoStep,
    "half": HalfStep,
}


def build_step(name: str, options: dict[str, Any]) -> Step:
    """The step ``name`` configured by ``options``; unknown names and options are `ConfigError`s."""
    if name not in STEPS:
        raise ConfigError(f"unknown recipe step {name!r}; steps are {', '.join(STEPS)}")
    if "name" in options:
        raise ConfigError(f"step {name!r}: 'name' is not an option")
    try:
        return STEPS[name](**options)
    except TypeError as exc:
        raise ConfigError(f"step {name!r}: {exc}") from None
