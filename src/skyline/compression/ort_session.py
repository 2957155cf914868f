"""An ONNX Runtime CPU session behind the `Predictor` signature (no torch import: cheap in worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyline.errors import DataError

Inputs = dict[str, np.ndarray]


class OnnxPredictor:
    """An ONNX Runtime CPU session: all graph optimizations, ``threads`` intra-op threads, sequential."""

    def __init__(self, path: Path, *, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own untyped errors for unreadable models
            raise DataError(
                f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:200]}; "
                "pass a valid .onnx file (e.g. one written by `skyline compress`)"
            ) from exc
        self.input_names = tuple(i.name for i in self.session.get_inputs())

    def __call__(self, inputs: Inputs) -> np.ndarray:
        feed = {name: inputs[name] for name in self.input_names}
        return np.asarray(self.session.run(None, feed)[0])
