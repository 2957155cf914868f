"""A model in one of its forms along a recipe: a PyTorch module or an ONNX file, and how to run it.

Both forms answer the same questions the report asks: bytes on disk, parameter count, and a `Predictor`
with a stated number of threads. Sizes are measured on the saved file, never estimated.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skyline.compression.ort_session import OnnxPredictor
from skyline.compression.task import Inputs, Task


@dataclass(slots=True)
class TorchArtifact:
    """A PyTorch module; ``dtype`` is the dtype its floating inputs must be cast to (bf16/fp16 variants)."""

    module: nn.Module
    dtype: torch.dtype = torch.float32

    def size_bytes(self) -> int:
        buffer = io.BytesIO()
        torch.save(self.module.state_dict(), buffer)
        return buffer.getbuffer().nbytes

    def params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def predictor(self, task: Task, *, threads: int) -> TorchPredictor:
        return TorchPredictor(self.module, task.input_names, dtype=self.dtype, threads=threads)


@dataclass(slots=True)
class OnnxArtifact:
    """An ONNX file on disk."""

    path: Path

    def size_bytes(self) -> int:
        data = Path(str(self.path) + ".data")  # external weights, where an exporter wrote them
        return self.path.stat().st_size + (data.stat().st_size if data.exists() else 0)

    def params(self) -> int:
        """Elements of the stored weights (initializers); an int8 model keeps the count, not the bytes."""
        import onnx

        model = onnx.load(str(self.path), load_external_data=False)
        return sum(int(np.prod(init.dims)) for init in model.graph.initializer if len(init.dims) > 0)

    def predictor(self, task: Task, *, threads: int) -> OnnxPredictor:
        return OnnxPredictor(self.path, threads=threads)


Artifact = TorchArtifact | OnnxArtifact


class TorchPredictor:
    """Runs a module under ``torch.no_grad`` with ``threads`` intra-op threads."""

    def __init__(self, module: nn.Module, input_names: tuple[str, ...], *, dtype: torch.dtype, threads: int):
        self.module = module.eval()
        self.input_names = input_names
        self.dtype = dtype
        self.threads = threads

    def __call__(self, inputs: Inputs) -> np.ndarray:
        torch.set_num_threads(self.threads)
        device = next(self.module.parameters(), torch.empty(0)).device  # fp16 variants live on the GPU
        tensors = []
        for name in self.input_names:
            tensor = torch.from_numpy(inputs[name]).to(device)
            tensors.append(tensor.to(self.dtype) if tensor.is_floating_point() else tensor)
        with torch.inference_mode():
            output = self.module(*tensors)
        return np.asarray(output.float().cpu().numpy())
