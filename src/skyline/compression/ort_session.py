"""The `Predictor` over an ONNX file: the serving runtime's session (no torch import: cheap in worker processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skyline.serving.runtime import OnnxRuntime

Inputs = dict[str, np.ndarray]


class OnnxPredictor:
    """Named inputs → the model's first output, through `skyline.serving.runtime.OnnxRuntime`.

    Its threads may spin: a measurement or a batch job owns the cores it was given.
    """

    def __init__(self, path: Path, *, threads: int):
        self.runtime = OnnxRuntime(path, intra_op_threads=threads, spinning=True)
        self.input_names = self.runtime.input_names

    def __call__(self, inputs: Inputs) -> np.ndarray:
        outputs = self.runtime.infer({name: inputs[name] for name in self.input_names})
        return outputs[self.runtime.output_names[0]]
