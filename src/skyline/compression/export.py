"""ONNX export with a parity check: the exported file must agree with the PyTorch module it came from."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skyline.compression.artifact import OnnxArtifact, TorchPredictor
from skyline.compression.task import Task
from skyline.errors import ConfigError, IntegrityError

OPSET = 17


@dataclass(frozen=True, slots=True, kw_only=True)
class Parity:
    """How closely an exported model matches its source: worst absolute output difference, both metrics."""

    max_abs_diff: float
    metric_source: float
    metric_exported: float

    def as_dict(self) -> dict[str, float]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "metric_source": self.metric_source,
            "metric_exported": self.metric_exported,
        }


def export_onnx(module: nn.Module, task: Task, path: Path) -> OnnxArtifact:
    """Write ``module`` as ONNX (opset 17, batch axis dynamic) to ``path``."""
    module = module.eval().float()
    example = task.sample(2)
    args = tuple(torch.from_numpy(example[name]) for name in task.input_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter is deprecated in favour of torch.export, which cannot trace the HF BERT
    # attention masks here; it still produces correct graphs, so its deprecation notice is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(task.input_names),
                output_names=["output"],
                dynamic_axes={**task.dynamic_axes, "output": {0: "batch"}},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"cannot export {type(module).__name__} to ONNX: {str(exc).splitlines()[0][:200]}"
            ) from exc
    return OnnxArtifact(path)


def check_parity(
    module: nn.Module, exported: OnnxArtifact, task: Task, *, tolerance: float = 1e-3, threads: int = 1
) -> Parity:
    """Compare outputs on a real batch and the task metric; raise `IntegrityError` past ``tolerance``."""
    source = TorchPredictor(module, task.input_names, dtype=torch.float32, threads=threads)
    onnx_run = exported.predictor(task, threads=threads)
    batch = task.sample(min(64, task.max_batch))
    diff = float(np.max(np.abs(source(batch) - onnx_run(batch))))
    parity = Parity(
        max_abs_diff=diff, metric_source=task.evaluate(source), metric_exported=task.evaluate(onnx_run)
    )
    if not diff <= tolerance:
        raise IntegrityError(
            f"ONNX export of {task.name} differs from PyTorch by {diff:.3g} (> tolerance {tolerance}); "
            f"metric {parity.metric_source:.3f} vs {parity.metric_exported:.3f}"
        )
    return parity
