"""Runtimes: one interface over ONNX Runtime (the default) and PyTorch, the thread plan they share, and
the signature (inputs, outputs) of an ONNX file.

A runtime holds ONE copy of the model and is safe to call from several threads at once, so the
``instances`` of a model (parallel batch workers) share it instead of loading a copy each. The thread plan
keeps ``instances × intra-op threads ≤ cores`` unless the caller asks for more, because oversubscribed CPU
threads make inference 2–3× slower.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from skyline.errors import ConfigError, DataError
from skyline.serving.tensors import TensorSpec, datatype_of

Arrays = dict[str, np.ndarray[Any, Any]]


def plan_threads(instances: int, *, cores: int | None = None, requested: int | None = None) -> int:
    """Intra-op threads per instance so that instances × threads ≤ cores (at least 1 each).

    ``requested`` overrides the plan (the caller asked for oversubscription on purpose).
    """
    if instances < 1:
        raise ConfigError(f"instances is {instances}; it must be ≥ 1")
    if requested is not None:
        if requested < 1:
            raise ConfigError(f"intra-op threads is {requested}; it must be ≥ 1")
        return requested
    available = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, available // instances)


class Runtime(ABC):
    """A loaded model that maps named input arrays (batch first) to named output arrays."""

    @abstractmethod
    def infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        """Run one batch. Thread-safe: the instances of a model call it concurrently."""

    def close(self) -> None:  # noqa: B027 - most runtimes free their model with the object
        """Release the model (memory, threads). The runtime must not be used afterwards."""


def onnx_session(
    path: Path,
    *,
    intra_op_threads: int,
    spinning: bool = False,
    optimization: Literal["all", "basic"] = "all",
    save_optimized: Path | None = None,
) -> Any:
    """An ONNX Runtime CPU session: the one set-up every package uses (serving, compression, edge, federated).

    ``intra_op_threads`` comes from the thread plan (`plan_threads`); one inter-op thread, operators run in
    sequence. Idle intra-op threads sleep unless ``spinning``: spinning steals the cores that an event
    loop, other instances and neighbouring processes need (MiniLM at batch 32 on 2 busy cores: 20 items/s
    with spinning threads, 28 with sleeping ones); a batch job that owns its cores may spin. ``basic``
    optimization with ``save_optimized`` writes the optimized graph (the extended passes write fused
    contrib ops that the int8 quantizer cannot read back). A file ONNX Runtime cannot load is a `DataError`.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise here
    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    }
    options.graph_optimization_level = levels[optimization]
    if save_optimized is not None:
        options.optimized_model_filepath = str(save_optimized)
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a malformed file
        raise DataError(
            f"cannot load ONNX model {path}: {str(exc).splitlines()[0][:200]}; pass a valid .onnx file"
        ) from exc


class OnnxRuntime(Runtime):
    """ONNX Runtime on CPU: one session (`onnx_session`), whose ``run`` is thread-safe, shared by all instances.

    ``outputs`` (the manifest's) picks and orders the outputs computed; None: every output of the graph.
    """

    def __init__(
        self,
        path: Path,
        *,
        intra_op_threads: int,
        outputs: Sequence[TensorSpec] | None = None,
        spinning: bool = False,
    ) -> None:
        self._session = onnx_session(path, intra_op_threads=intra_op_threads, spinning=spinning)
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        found = outputs if outputs is not None else self._session.get_outputs()
        self.output_names = tuple(o.name for o in found)

    def infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        results = self._session.run(list(self.output_names), dict(inputs))
        return {name: np.asarray(value) for name, value in zip(self.output_names, results, strict=True)}

    def close(self) -> None:
        del self._session


class TorchRuntime(Runtime):
    """PyTorch (a ``torch.export`` program, ``.pt2``) on CPU: one module shared by all instances.

    TorchScript is deprecated in torch 2.13, so the PyTorch format is an exported program saved with
    ``torch.export.save`` with a dynamic first (batch) dimension.
    """

    def __init__(
        self,
        path: Path,
        *,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        intra_op_threads: int,
    ) -> None:
        import torch

        # torch's intra-op pool is process-wide: the plan sets it for every model in this process.
        torch.set_num_threads(intra_op_threads)
        try:
            self._module = torch.export.load(str(path)).module()
        except Exception as exc:  # torch raises RuntimeError subclasses for a malformed file
            raise DataError(f"PyTorch cannot load {path} as an exported program: {exc}") from exc
        self._input_names = [i.name for i in inputs]
        self._output_names = [o.name for o in outputs]

    def infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        import torch

        with torch.inference_mode():
            result = self._module(
                *(torch.from_numpy(np.ascontiguousarray(inputs[n])) for n in self._input_names)
            )
        tensors = result if isinstance(result, tuple | list) else (result,)
        if len(tensors) != len(self._output_names):
            raise ConfigError(
                f"the model returned {len(tensors)} outputs; its manifest declares {self._output_names}"
            )
        return {name: t.numpy() for name, t in zip(self._output_names, tensors, strict=True)}


RuntimeFactory = Callable[[Path, Sequence[TensorSpec], Sequence[TensorSpec], int], Runtime]


def _onnx(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], threads: int) -> Runtime:
    return OnnxRuntime(path, outputs=outputs, intra_op_threads=threads)


def _torch(path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], threads: int) -> Runtime:
    return TorchRuntime(path, inputs=inputs, outputs=outputs, intra_op_threads=threads)


# The manifest's ``format`` names one of these.
RUNTIMES: dict[str, RuntimeFactory] = {"onnx": _onnx, "torch-export": _torch}


def load_runtime(
    fmt: str, path: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], threads: int
) -> Runtime:
    """Build the runtime the manifest's ``format`` names."""
    try:
        factory = RUNTIMES[fmt]
    except KeyError:
        raise ConfigError(f"model format {fmt!r} has no runtime; formats are {sorted(RUNTIMES)}") from None
    return factory(path, inputs, outputs, threads)


def onnx_signature(
    path: Path, *, dynamic_size: int | None = None
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of an ONNX file, with the first dimension as the batch (-1).

    Other dimensions must be fixed; with ``dynamic_size`` (e.g. a sequence length) dynamic input
    dimensions take that size and the output shapes are read from one inference on zeros.
    """
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a malformed file
        raise ConfigError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {i.name for i in model.graph.initializer}

    def spec(value: Any, fill: int | None) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else (fill or -1) for d in tensor.shape.dim]
        if not dims or any(d < 1 for d in dims[1:]):
            raise ConfigError(
                f"ONNX {value.name!r} has shape {dims}; only the first (batch) dimension may be dynamic "
                "(pack with --dynamic-size N to fix the others, e.g. a sequence length)"
            )
        dtype = helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        return TensorSpec(name=value.name, datatype=datatype_of(dtype), shape=(-1, *dims[1:]))

    inputs = tuple(spec(v, dynamic_size) for v in model.graph.input if v.name not in initializers)
    if dynamic_size is None:
        return inputs, tuple(spec(v, None) for v in model.graph.output)
    return inputs, _observed_outputs(path, inputs)


def _observed_outputs(path: Path, inputs: tuple[TensorSpec, ...]) -> tuple[TensorSpec, ...]:
    runtime = OnnxRuntime(path, intra_op_threads=1)
    results = runtime.infer({s.name: np.zeros((1, *s.shape[1:]), dtype=s.dtype) for s in inputs})
    return tuple(
        TensorSpec(name=n, datatype=datatype_of(r.dtype), shape=(-1, *r.shape[1:]))
        for n, r in results.items()
    )
