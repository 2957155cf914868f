"""The agent's model: one verified version folder of the repository, run by the serving runtime family.

A version folder is what `skyline serve pack` writes (``manifest.json`` naming the file, its format, inputs
and outputs) and signs; the agent loads it with `skyline.serving.runtime.load_runtime`, the same runtime
the inference server uses, checks inputs against the manifest (`skyline.serving.tensors`) and returns
class probabilities: the model's first output as is when its rows already are probabilities (a model
published by `skyline.edge.publish` ends in a softmax), else its softmax (a model that returns logits).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError, IntegrityError
from skyline.serving.repository import MANIFEST_NAME, ModelManifest
from skyline.serving.runtime import Runtime, load_runtime
from skyline.serving.tensors import TensorSpec

FloatArray = npt.NDArray[np.float32]


def as_probabilities(scores: npt.NDArray[Any]) -> FloatArray:
    """Rows of class probabilities: ``scores`` as is when each row already sums to 1 and is >= 0, else softmax."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 2:
        raise ConfigError(
            f"a classifier returns (batch, classes); this one returned shape {list(values.shape)}"
        )
    if (values >= 0).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return values.astype(np.float32)
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)


def read_manifest(folder: Path) -> ModelManifest:
    """The serving manifest of a version folder (`IntegrityError` when it is missing or unreadable)."""
    path = folder / MANIFEST_NAME
    try:
        return ModelManifest.from_json(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, ConfigError) as exc:
        raise IntegrityError(
            f"{path} is not a model manifest ({exc}); publish models with 'skyline serve pack'"
        ) from exc


class LocalModel:
    """A classifier from a verified version folder; one intra-op thread (the agent's other loops need a core)."""

    def __init__(self, folder: Path, version: int, *, threads: int = 1) -> None:
        self.folder, self.version = Path(folder), version
        self.manifest = read_manifest(self.folder)
        if len(self.manifest.inputs) != 1:
            raise ConfigError(
                f"model {self.manifest.name!r} takes {len(self.manifest.inputs)} inputs; the edge agent "
                "serves classifiers with one input"
            )
        self.runtime: Runtime = load_runtime(
            self.manifest.format,
            self.folder / self.manifest.file,
            self.manifest.inputs,
            self.manifest.outputs,
            threads,
        )

    @property
    def input(self) -> TensorSpec:
        return self.manifest.inputs[0]

    def check_input(self, x: FloatArray) -> None:
        """Raise `ConfigError` (HTTP 422) unless ``x`` is a non-empty batch of the model's input shape."""
        expected = self.input.shape
        if x.ndim != len(expected) or tuple(x.shape[1:]) != expected[1:] or x.shape[0] == 0:
            raise ConfigError(
                f"input shape {list(x.shape)} does not fit the model's input {['batch', *expected[1:]]}; "
                "send a batch"
            )

    def predict(self, x: FloatArray) -> FloatArray:
        """Class probabilities (batch, classes) for a batch ``x``."""
        self.check_input(x)
        outputs = self.runtime.infer({self.input.name: np.ascontiguousarray(x, dtype=self.input.dtype)})
        return as_probabilities(outputs[self.manifest.outputs[0].name])

    def close(self) -> None:
        self.runtime.close()
