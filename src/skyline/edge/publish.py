"""Put a model version into the cloud's edge repository: ``<root>/<model>/<version>/model.onnx`` + signed manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from skyline.errors import ConfigError
from skyline.security.signing import sign_directory
from skyline.training.artifacts import export_onnx


def publish_model(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    root: Path,
    name: str,
    version: int,
    private_key: Path,
    int8: bool = False,
) -> Path:
    """Export ``model`` to ONNX (int8 weights with ``int8``: ONNX Runtime dynamic quantization, per channel)
    into a new version folder and sign it; returns the folder."""
    folder = Path(root) / name / str(version)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if not export_onnx(model, input_shape, folder / "model.onnx"):
        shutil.rmtree(folder)
        raise ConfigError(f"model {name!r} could not be exported to ONNX")
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        float_path = folder / "model.float.onnx"
        (folder / "model.onnx").rename(float_path)
        quantize_dynamic(float_path, folder / "model.onnx", weight_type=QuantType.QInt8, per_channel=True)
        float_path.unlink()
    sign_directory(folder, private_key, version=version)
    return folder
