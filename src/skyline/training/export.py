"""ONNX export with a parity check: the one exporter (training artifacts, compression, edge publishing).

A model is exported with opset 17, a dynamic batch axis on every input and on the output ``output``, and
then run by ONNX Runtime (`skyline.serving.runtime.onnx_session`) on a real batch: an exported file whose
outputs differ from the PyTorch module's by more than the tolerance is refused, never shipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skyline.errors import ConfigError, IntegrityError

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
Arrays = Mapping[str, Any]  # input name → numpy array, batch first, in the model's argument order


def export_onnx(
    module: nn.Module,
    example: Arrays,
    path: Path,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> Path:
    """Write ``module`` (in eval mode, on the CPU) as ONNX to ``path``, traced on ``example``.

    The inputs are named and ordered as ``example``'s keys; ``dynamic_axes`` defaults to axis 0 ("batch")
    of every input. A model the exporter cannot trace is a `ConfigError`, and no file is left behind.
    """
    import torch

    module = module.cpu().float().eval()
    names = list(example)
    axes = {**(dynamic_axes or {n: {0: "batch"} for n in names}), "output": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    # The TorchScript exporter is deprecated in favour of torch.export, which cannot trace the HF BERT
    # attention masks here; it still writes correct graphs (the parity check proves it), so it is silenced.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                tuple(torch.from_numpy(example[n]) for n in names),
                str(path),
                input_names=names,
                output_names=["output"],
                dynamic_axes={k: dict(v) for k, v in axes.items()},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as exc:  # the exporter raises many types (its own, torch's, Python's)
            path.unlink(missing_ok=True)
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise ConfigError(f"cannot export {type(module).__name__} to ONNX: {first}") from exc
    return path


def check_parity(
    module: nn.Module, path: Path, inputs: Arrays, *, tolerance: float = 1e-3, threads: int = 1
) -> float:
    """The largest absolute difference between ``module`` and the ONNX file on ``inputs``; an
    `IntegrityError` past ``tolerance``."""
    import numpy as np
    import torch

    from skyline.serving.runtime import OnnxRuntime

    runtime = OnnxRuntime(path, intra_op_threads=threads)
    exported = runtime.infer({name: inputs[name] for name in runtime.input_names})[runtime.output_names[0]]
    with torch.inference_mode():
        source = module.eval()(*(torch.from_numpy(inputs[n]) for n in runtime.input_names)).float().numpy()
    runtime.close()
    diff = float(np.max(np.abs(source - exported))) if source.size else 0.0
    if not diff <= tolerance:
        raise IntegrityError(
            f"the ONNX export {path.name} differs from the PyTorch model by {diff:.3g} (> tolerance "
            f"{tolerance}); do not ship it: check the model for operators the exporter changes"
        )
    return diff


def export_checked(module: nn.Module, inputs: Arrays, path: Path, *, tolerance: float = 1e-3) -> float:
    """`export_onnx` traced on ``inputs``, then `check_parity` on them; returns the largest difference.
    A file that fails the check is removed."""
    export_onnx(module, inputs, path)
    try:
        return check_parity(module, path, inputs, tolerance=tolerance)
    except IntegrityError:
        path.unlink(missing_ok=True)
        raise
