"""Publish a trained classifier as a signed version of the repository that the cloud serves and agents pull.

``<root>/<name>/<version>/`` is a `skyline.serving.repository` version folder (``model.onnx`` ending in a
softmax, ``manifest.json``), optionally cut for split inference (``split/``), plus the PyTorch weights
(``weights.pt``, a state dict) and ``architecture.json`` (the training registry's model name, input shape,
classes) from which federated learning continues; the whole folder is signed (Ed25519, every file).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from skyline.errors import ConfigError, NotFoundError
from skyline.security.signing import sign_directory
from skyline.serving.repository import ModelRepository
from skyline.training.export import export_checked

WEIGHTS_FILE = "weights.pt"
ARCHITECTURE_FILE = "architecture.json"


@dataclass(frozen=True, slots=True, kw_only=True)
class Architecture:
    """What rebuilds the PyTorch model of a version: `skyline.training.models.build_model(arch, shape, classes)`."""

    arch: str
    input_shape: tuple[int, ...]
    num_classes: int

    def to_json(self) -> dict[str, object]:
        return {"arch": self.arch, "input_shape": list(self.input_shape), "num_classes": self.num_classes}


def read_architecture(folder: Path) -> Architecture:
    """The architecture of a version folder (`NotFoundError` for a model published without its weights)."""
    path = folder / ARCHITECTURE_FILE
    if not path.is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise NotFoundError(f"{folder} has no PyTorch weights; publish it with skyline.edge.publish")
    try:
        data = json.loads(path.read_text())
        return Architecture(
            arch=str(data["arch"]),
            input_shape=tuple(int(d) for d in data["input_shape"]),
            num_classes=int(data["num_classes"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is malformed ({exc}); publish the model again") from exc


def publish_model(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    root: Path,
    name: str,
    version: int,
    private_key: Path,
    int8: bool = False,
    split: bool = False,
    architecture: str | None = None,
) -> Path:
    """Export ``model`` (+ softmax) to ONNX — int8 weights with ``int8`` (ONNX Runtime dynamic quantization,
    per channel), cut into segments with ``split`` — into a new version folder, keep its weights when
    ``architecture`` names it in the training registry, and sign the folder; returns the folder."""
    Path(root).mkdir(parents=True, exist_ok=True)
    repository = ModelRepository(Path(root))
    with tempfile.TemporaryDirectory() as scratch:
        exported = Path(scratch) / "model.onnx"
        example = np.random.default_rng(0).standard_normal((2, *input_shape)).astype(np.float32)
        export_checked(nn.Sequential(model, nn.Softmax(dim=1)), {"input": example}, exported)
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(scratch) / "model.int8.onnx"
            quantize_dynamic(exported, quantized, weight_type=QuantType.QInt8, per_channel=True)
            exported = quantized
        repository.add(exported, name=name, version=version, split=split)
    folder = repository.version_dir(name, version)
    if architecture is not None:
        torch.save(model.state_dict(), folder / WEIGHTS_FILE)
        with torch.inference_mode():
            num_classes = int(model.eval()(torch.zeros((1, *input_shape))).shape[1])
        spec = Architecture(arch=architecture, input_shape=tuple(input_shape), num_classes=num_classes)
        (folder / ARCHITECTURE_FILE).write_text(json.dumps(spec.to_json()) + "\n")
    sign_directory(folder, private_key, version=version)
    return folder
