"""Inference optimization: recipes of steps (prune, distill, export, optimize, quantize, torchao, half) applied
to a model, every variant measured side by side with the original, the report and its accuracy gate, and
parallel batch inference.

Names are imported on first use: most of compression imports torch, and its batch-inference worker
processes (ONNX Runtime only) must not pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "artifact": ("OnnxArtifact", "TorchArtifact"),
    "batch_infer": ("InferPlan", "InferResult", "plan", "run_batch_inference"),
    "measure": ("MeasureConfig", "Measurement"),
    "pipeline": ("compress",),
    "recipe": ("Recipe", "builtin_recipes", "load_recipe"),
    "report": ("CompressionReport", "MetricDropError", "refuse_drops"),
    "steps": ("STEPS", "Step", "StepContext", "build_step"),
    "subjects": ("BUILTIN_MODELS", "Subject", "resolve_subject"),
    "task": ("ClassificationData", "Predictor", "Task"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
