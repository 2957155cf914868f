"""Put a model version into the cloud's edge repository: ``<root>/<model>/<version>/model.onnx`` + signed manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from skyline.errors import ConfigError
from skyline.security.signing import sign_directory
from skyline.training.artifacts import export_onnx


def publish_model(
    model: nn.Module, input_shape: tuple[int, ...], *, root: Path, name: str, version: int, private_key: Path
) -> Path:
    """Export ``model`` to ONNX into a new version folder and sign it; returns the folder."""
    folder = Path(root) / name / str(version)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    if not export_onnx(model, input_shape, folder / "model.onnx"):
        shutil.rmtree(folder)
        raise ConfigError(f"model {name!r} could not be exported to ONNX")
    sign_directory(folder, private_key, version=version)
    return folder
