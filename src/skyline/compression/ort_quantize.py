"""ONNX Runtime graph optimization and int8 quantization.

Transformers get dynamic quantization (weights int8 per output channel, activations quantized on the fly):
per-channel matters, per-tensor int8 MiniLM drifts visibly from fp32. Before quantizing, BERT-like graphs
go through ORT's transformer optimizer, which fuses attention and layer norm so the int8 MatMuls are fast.
CNNs get static QDQ quantization: activation ranges are calibrated on real training batches. The first
conv/linear layer stays float by default (it reads the raw pixels, has few weights, and on the digits CNN
quantizing it alone cost 0.9 accuracy points; keeping it float cost nothing measurable).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from skyline.compression.artifact import OnnxArtifact
from skyline.compression.task import Inputs, Task
from skyline.errors import ConfigError

QuantMode = Literal["auto", "dynamic", "static"]


def optimize_graph(source: OnnxArtifact, task: Task, out: Path) -> OnnxArtifact:
    """Offline graph optimization: ORT's BERT fusions for transformers, basic ORT passes for CNNs."""
    if task.kind == "transformer":
        from onnxruntime.transformers.optimizer import optimize_model

        # Without the true shape the attention fusion is skipped (and int8 MiniLM runs ~4× slower).
        heads, hidden = task.attention_shape or (0, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(source.path), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0
            )
        optimized.save_model_to_file(str(out))
        return OnnxArtifact(out)
    from skyline.serving.runtime import onnx_session

    # Basic level only: the extended level writes fused contrib ops the quantizer cannot read back.
    onnx_session(source.path, intra_op_threads=1, optimization="basic", save_optimized=out)
    return OnnxArtifact(out)


class _CalibrationReader:
    """ORT's CalibrationDataReader protocol over the task's calibration batches."""

    def __init__(self, batches: Iterator[Inputs]):
        self._batches = batches

    def get_next(self) -> Inputs | None:
        return next(self._batches, None)


def quantize_int8(
    source: OnnxArtifact,
    task: Task,
    out: Path,
    *,
    mode: QuantMode = "auto",
    per_channel: bool = True,
    keep_first_float: bool = True,
) -> OnnxArtifact:
    """int8 weights (and activations): dynamic for transformers, static QDQ with calibration for CNNs."""

    chosen = ("dynamic" if task.kind == "transformer" else "static") if mode == "auto" else mode
    if chosen not in ("dynamic", "static"):
        raise ConfigError(f"quantize mode must be auto, dynamic or static, got {mode!r}")
    root = logging.getLogger()
    level = root.level
    # The quantizer logs a "consider pre-processing" advice on the root logger; static mode does it below.
    root.setLevel(logging.ERROR)
    try:
        _quantize(source, task, out, chosen, per_channel, keep_first_float)
    finally:
        root.setLevel(level)
    return OnnxArtifact(out)


def _first_weighted_node(path: Path) -> list[str]:
    import onnx

    for node in onnx.load(str(path)).graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            return [node.name]
    return []


def _quantize(
    source: OnnxArtifact, task: Task, out: Path, mode: str, per_channel: bool, keep_first_float: bool
) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "dynamic":
            quantize_dynamic(
                str(source.path),
                str(out),
                per_channel=per_channel,
                weight_type=QuantType.QInt8,
                # Fused transformer ops have no inferred output type; they are float.
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        else:
            prepared = out.with_suffix(".prep.onnx")
            quant_pre_process(str(source.path), str(prepared))
            quantize_static(
                str(prepared),
                str(out),
                _CalibrationReader(iter(task.calibration())),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=_first_weighted_node(prepared) if keep_first_float else [],
            )
            prepared.unlink(missing_ok=True)
