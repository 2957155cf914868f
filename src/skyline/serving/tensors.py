"""Tensor descriptions shared by the repository, the runtimes and the protocol: OIP v2 datatypes and shapes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from skyline.errors import ConfigError

# The Open Inference Protocol v2 datatype names and the numpy dtypes they stand for (BYTES is not served:
# every model here takes numbers).
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items()}


class InvalidRequestError(ConfigError):
    """An inference request does not fit the protocol or the model (answered 400, as OIP says)."""

    http_status = 400


def datatype_of(dtype: np.dtype[Any]) -> str:
    """The OIP datatype name of a numpy dtype."""
    try:
        return _BY_DTYPE[np.dtype(dtype)]
    except KeyError:
        raise ConfigError(
            f"numpy dtype {dtype} has no Open Inference Protocol datatype; use one of {sorted(DATATYPES)}"
        ) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorSpec:
    """One model input or output: a name, an OIP datatype and a shape whose first entry (-1) is the batch."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a tensor needs a non-empty name")
        if self.datatype not in DATATYPES:
            raise ConfigError(
                f"tensor {self.name!r} has datatype {self.datatype!r}; use one of {sorted(DATATYPES)}"
            )
        if not self.shape or self.shape[0] != -1 or any(d < 1 for d in self.shape[1:]):
            raise ConfigError(
                f"tensor {self.name!r} has shape {list(self.shape)}; the first dimension must be -1 "
                "(the batch) and the others positive sizes"
            )

    @property
    def dtype(self) -> np.dtype[Any]:
        return DATATYPES[self.datatype]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        try:
            return cls(
                name=str(data["name"]),
                datatype=str(data["datatype"]),
                shape=tuple(int(d) for d in data["shape"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"tensor description {dict(data)} is malformed ({exc}); need name, datatype, shape"
            ) from exc

    def check(self, array: np.ndarray[Any, Any]) -> None:
        """Raise ConfigError unless ``array`` has this datatype and shape (any batch size ≥ 1)."""
        if array.dtype != self.dtype:
            raise InvalidRequestError(
                f"input {self.name!r} has datatype {datatype_of(array.dtype)}; the model expects {self.datatype}"
            )
        if array.ndim != len(self.shape) or tuple(array.shape[1:]) != self.shape[1:] or array.shape[0] < 1:
            raise InvalidRequestError(
                f"input {self.name!r} has shape {list(array.shape)}; the model expects {list(self.shape)} "
                "(-1 is the batch)"
            )


def check_inputs(specs: Sequence[TensorSpec], inputs: Mapping[str, np.ndarray[Any, Any]]) -> int:
    """Check every input against its spec; return the batch size they share."""
    expected = {s.name for s in specs}
    if set(inputs) != expected:
        raise InvalidRequestError(
            f"inputs are {sorted(inputs)}; the model expects exactly {sorted(expected)}"
        )
    for spec in specs:
        spec.check(inputs[spec.name])
    sizes = {int(inputs[s.name].shape[0]) for s in specs}
    if len(sizes) != 1:
        raise InvalidRequestError(f"inputs have different batch sizes {sorted(sizes)}; they must share one")
    return sizes.pop()
