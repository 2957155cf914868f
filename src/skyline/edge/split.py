"""Split inference of a signed, splittable model version: run segments ``[start, stop)`` of it, profile them.

Edge and cloud load the SAME verified version folder (`skyline.serving.split_artifact` wrote its
segments; `skyline.security.signing` verified them) with the serving runtime family, each side profiles
the segments on its own hardware, and Neurosurgeon's cut comes from both profiles and the measured link
(`skyline.edge.partition`). Activations cross the link as raw float32 bytes, or int8 (per-tensor affine
quantization, 4× fewer bytes).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skyline.edge.local_model import as_probabilities
from skyline.errors import ConfigError
from skyline.serving.runtime import Runtime, load_runtime
from skyline.serving.split_artifact import SplitSpec, read_split

FloatArray = npt.NDArray[np.float32]


class SplitModel:
    """The segments of one verified version, each an ONNX Runtime session (``threads`` intra-op threads)."""

    def __init__(self, folder: Path, *, threads: int = 1) -> None:
        self.folder = Path(folder)
        self.spec: SplitSpec = read_split(self.folder)
        self._runtimes: list[Runtime] = [
            load_runtime("onnx", self.folder / s.file, (s.input,), (s.output,), threads)
            for s in self.spec.segments
        ]

    def __len__(self) -> int:
        return len(self._runtimes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One input's shape (no batch axis)."""
        return self.spec.segments[0].input.shape[1:]

    def names(self) -> list[str]:
        """``index:tensor`` of each segment's output: where the cut after it falls."""
        return [f"{i}:{s.output.name}" for i, s in enumerate(self.spec.segments)]

    def check_input(self, x: FloatArray) -> None:
        """Raise `ConfigError` (HTTP 422) unless ``x`` is a non-empty batch of the model's input shape."""
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape or x.shape[0] == 0:
            raise ConfigError(
                f"input shape {list(x.shape)} does not fit the split model's input "
                f"{['batch', *self.input_shape]}; send a batch"
            )

    def run(self, start: int, stop: int, x: FloatArray) -> FloatArray:
        """Segments ``[start, stop)`` on the batch ``x`` (the activation at cut ``start``); identity if empty."""
        if not 0 <= start <= stop <= len(self):
            raise ConfigError(f"segments must satisfy 0 <= start <= stop <= {len(self)}, got {start}, {stop}")
        tensor = np.ascontiguousarray(x, dtype=np.float32)
        for k in range(start, stop):
            segment = self.spec.segments[k]
            tensor = self._runtimes[k].infer({segment.input.name: tensor})[segment.output.name]
        return np.asarray(tensor, dtype=np.float32)

    def tail(self, start: int, activation: FloatArray) -> FloatArray:
        """Class probabilities from the activation at cut ``start`` (0..len-1): the cloud's part of a split."""
        if not 0 <= start < len(self):
            raise ConfigError(f"a tail starts at a cut in 0..{len(self) - 1}, got {start}")
        expected = self.spec.segments[start].input.shape[1:]
        if activation.shape[1:] != expected or activation.shape[0] == 0:
            raise ConfigError(
                f"the activation at cut {start} must have shape {['batch', *expected]}, "
                f"got {list(activation.shape)}"
            )
        return as_probabilities(self.run(start, len(self), activation))

    def profile_ms(self, *, repeats: int = 20) -> list[float]:
        """Milliseconds per input of each segment on THIS host (batch 1): the fastest of ``repeats`` runs
        after two warm-ups (on a shared machine the slow runs measure the neighbours, not the segment)."""
        timings: list[list[float]] = [[] for _ in self._runtimes]
        for _ in range(repeats + 2):
            tensor = np.zeros((1, *self.input_shape), dtype=np.float32)
            for k in range(len(self)):
                started = time.perf_counter()
                tensor = self.run(k, k + 1, tensor)
                timings[k].append((time.perf_counter() - started) * 1e3)
        return [min(t[2:]) for t in timings]

    def close(self) -> None:
        for runtime in self._runtimes:
            runtime.close()


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedActivation:
    payload: bytes
    headers: dict[str, str]


def encode_activation(activation: FloatArray, *, int8: bool) -> EncodedActivation:
    """Raw bytes plus the headers the cloud needs to decode them (`decode_activation`)."""
    shape = ",".join(str(d) for d in activation.shape)
    if not int8:
        return EncodedActivation(
            payload=np.ascontiguousarray(activation, dtype=np.float32).tobytes(),
            headers={"x-shape": shape, "x-dtype": "float32", "content-type": "application/octet-stream"},
        )
    low, high = float(activation.min()), float(activation.max())
    scale = (high - low) / 255.0 or 1.0
    zero_point = round(-128 - low / scale)
    quantized = np.clip(np.round(activation / scale) + zero_point, -128, 127).astype(np.int8)
    return EncodedActivation(
        payload=quantized.tobytes(),
        headers={
            "x-shape": shape,
            "x-dtype": "int8",
            "x-scale": repr(scale),
            "x-zero-point": str(zero_point),
            "content-type": "application/octet-stream",
        },
    )


def decode_activation(body: bytes, headers: Mapping[str, str]) -> FloatArray:
    """Raw activation bytes + x-shape/x-dtype (+ x-scale/x-zero-point for int8) as float32 (422 if wrong)."""
    try:
        shape = tuple(int(v) for v in headers["x-shape"].split(","))
        dtype = headers.get("x-dtype", "float32")
        if dtype == "float32":
            return np.frombuffer(body, dtype=np.float32).reshape(shape).copy()
        if dtype == "int8":
            raw = np.frombuffer(body, dtype=np.int8).reshape(shape).astype(np.float32)
            scale, zero = float(headers["x-scale"]), float(headers["x-zero-point"])
            return ((raw - zero) * scale).astype(np.float32)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"bad activation: {exc}; send x-shape, x-dtype and the raw bytes") from exc
    raise ConfigError(f"x-dtype must be float32 or int8, got {dtype!r}")
