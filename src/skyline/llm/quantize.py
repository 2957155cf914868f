"""Weight quantization of the decoder's linear layers (int8, int4): fewer bytes of weights per token.

One decoding step on a CPU reads every weight once, so its time is set by the bytes of the weights:
int8 reads a quarter of float32's, int4 an eighth. The embedding table (a lookup, not a matmul) stays as
it is; the norms and the KV cache stay float32.

- ``int8``: symmetric int8 weights, one scale per output channel, float32 activations (weight-only: the
  numerics do not depend on the batch). Up to ``INT8_MAX_ROWS`` rows (decoding) run on the engine's own
  AVX2 kernel (`skyline.llm.cpu_kernels`: int8 bytes read once, about 4x faster than float32 at one row);
  more rows (prefill), or a machine without the kernel, dequantize slice by slice into the cache right
  before each dense matmul. PyTorch's own kernels lose on this AVX2 CPU: ``aten._weight_int8pack_mm`` has
  no AVX2 path (4x slower than float32 at one row, linear in the rows: a 512-token prefill took minutes),
  and FBGEMM's dynamic int8 (``quantized::linear_dynamic``), fast, quantizes activations per tensor to 7
  bits, which cost SmolLM2 half of its greedy-token agreement.
- ``int4``: asymmetric 4-bit weights in groups of 32 input channels (scale and zero per group, the layout
  of GGUF's Q4_1 blocks), run by ``aten._weight_int4pack_mm_for_cpu`` with bfloat16 activations.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional

from skyline.errors import ConfigError
from skyline.llm.cpu_kernels import INT8_MAX_ROWS, kernels
from skyline.llm.engine import Quantization
from skyline.llm.model import Linear, dense

__all__ = ["INT4_GROUP_SIZE", "int4_linear", "int8_linear", "linear_factory"]

INT4_GROUP_SIZE = 32
_SLICE_BYTES = 512 * 1024  # float32 bytes of one dequantized slice of an int8 weight: half an L2 cache


def int8_linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
    """``x @ weight.T + bias`` with the weight in int8, one scale per output channel (weight-only).

    Few rows go to the int8 kernel. Otherwise the weight is dequantized a slice of rows at a time, each
    slice small enough to stay in the core's cache while the matmul reads it.
    """
    weight = weight.float()
    scales = (weight.abs().amax(dim=1) / 127).clamp(min=1e-12)
    qweight = (weight / scales.unsqueeze(1)).round().clamp(-127, 127).to(torch.int8)
    rows = max(1, _SLICE_BYTES // (4 * weight.shape[1]))
    slices = [
        (qweight[i : i + rows].contiguous(), scales[i : i + rows].unsqueeze(1))
        for i in range(0, len(qweight), rows)
    ]
    bias = bias.float() if bias is not None else None
    kernel = kernels()

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // x.shape[-1]
        if kernel is not None and rows <= INT8_MAX_ROWS and x.dtype == torch.float32:
            out = kernel.int8(x.reshape(rows, x.shape[-1]).contiguous(), qweight, scales)
            out = out.reshape(*x.shape[:-1], qweight.shape[0])
        else:
            out = torch.cat([functional.linear(x, q * s) for q, s in slices], dim=-1)
        return out + bias if bias is not None else out

    return forward


def int4_linear(weight: torch.Tensor, bias: torch.Tensor | None = None) -> Linear:
    """``x @ weight.T + bias`` with the weight quantized to 4 bits in groups of 32 input channels."""
    out_features, in_features = weight.shape
    if in_features % INT4_GROUP_SIZE:
        return dense(weight, bias)  # the kernel needs whole groups: keep this matrix as it is
    groups = weight.float().reshape(out_features, -1, INT4_GROUP_SIZE)
    low, high = groups.amin(dim=-1, keepdim=True), groups.amax(dim=-1, keepdim=True)
    scales = ((high - low) / 15).clamp(min=1e-8)
    q = ((groups - low) / scales).round().clamp(0, 15).to(torch.int32).reshape(out_features, in_features)
    zeros = low + scales * 8  # the kernel computes (q - 8) * scale + zero
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    scales_and_zeros = torch.stack([scales.squeeze(-1), zeros.squeeze(-1)], dim=-1).transpose(0, 1)
    scales_and_zeros = scales_and_zeros.contiguous().to(torch.bfloat16)
    bias = bias.float() if bias is not None else None
    mm = torch._weight_int4pack_mm_for_cpu

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = mm(x.to(torch.bfloat16), packed, INT4_GROUP_SIZE, scales_and_zeros).to(x.dtype)
        return out + bias if bias is not None else out

    return forward


def linear_factory(quant: Quantization) -> Callable[[torch.Tensor, torch.Tensor | None], Linear]:
    """The function that turns a weight (and bias) into a linear layer for ``quant``."""
    factories: dict[str, Callable[[torch.Tensor, torch.Tensor | None], Linear]] = {
        "none": lambda w, b: dense(w, b),
        "int8": int8_linear,
        "int4": int4_linear,
    }
    if quant not in factories:
        raise ConfigError(f"quant is {quant!r}; choose one of {', '.join(factories)}")
    return factories[quant]
