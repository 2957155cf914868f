"""The engine's own CPU kernels for decoding steps (C, ``kernels/decode.c``), built once with the machine's
C compiler.

A decoding step multiplies a few rows of activations by every weight, so its time is how fast the weights
stream from memory: PyTorch's float32 matmul (MKL) streams them at about half the speed this machine
reads memory, and PyTorch has no int8 weight-only kernel for AVX2 CPUs. Its attention has one query per
sequence, over keys and values scattered in cache blocks: PyTorch needs them gathered and padded first,
and its flash-attention kernel is built for many queries. And the small steps between the matmuls
(RMSNorm and the residual add, RoPE and the KV-cache write, SwiGLU's silu·mul) are chains of PyTorch
operations, each allocating, passing over memory and waking the threads: about 20 per layer, 600 per
token, where one call per step of the layer does. Plain SIMD loops, as llama.cpp and vLLM's CPU backend
write them, do all of it (see the C file). The source is compiled on first use into the LLM cache folder,
under a name carrying the hash of the source and the flags (a changed kernel is built anew; the file is
written whole or not at all), and loaded with ctypes. Its OpenMP is the process's: PyTorch's libgomp is
loaded first under the same soname, so the kernels run on PyTorch's thread pool, with its thread count.

Without AVX2, a C compiler or a Linux x86-64 machine there are no kernels: `kernels()` returns None (the
reason logged once) and callers use PyTorch.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from skyline.llm.loader import cache_root

__all__ = ["F32_MAX_ROWS", "INT8_MAX_ROWS", "Kernels", "kernels"]

log = logging.getLogger("skyline.llm.kernels")
_SOURCE = Path(__file__).with_name("kernels") / "decode.c"
_FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
# Up to these many rows the kernels beat PyTorch here (bench/results/llm_kernels.json, SmolLM2's matrices,
# 2 threads: float32 1.81x MKL at one row, 1.32x at 16, 1.22x at 32). int8's alternative, dequantizing then
# multiplying, is slower than MKL, so its kernel stays ahead longer. A prefill goes to PyTorch.
F32_MAX_ROWS, INT8_MAX_ROWS = 32, 64


@dataclass(frozen=True, slots=True)
class Kernels:
    """``f32``, ``int8``: ``x @ w.T`` for float32 ``x`` [rows, n_in] (contiguous); ``w`` float32, or int8
    with a float32 scale per output row; a new float32 tensor [rows, n_out]. ``decode_attention``: see
    there."""

    _library: Any

    def f32(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        _check(x, w, torch.float32)
        y = torch.empty(x.shape[0], w.shape[0])
        # ctypes releases the GIL for the call: other Python threads run while it computes.
        self._library.skyline_f32_matmul(x.data_ptr(), w.data_ptr(), y.data_ptr(), *_dims(x, w))
        return y

    def int8(self, x: torch.Tensor, q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        _check(x, q, torch.int8)
        if scale.shape != (q.shape[0],) or scale.dtype != torch.float32 or not scale.is_contiguous():
            raise ValueError(f"int8 kernel: scale {tuple(scale.shape)} {scale.dtype} does not fit q")
        y = torch.empty(x.shape[0], q.shape[0])
        self._library.skyline_int8_matmul(
            x.data_ptr(), q.data_ptr(), scale.data_ptr(), y.data_ptr(), *_dims(x, q)
        )
        return y

    def decode_attention(
        self, q: torch.Tensor, cache: torch.Tensor, slots: torch.Tensor, lengths: torch.Tensor, scale: float
    ) -> torch.Tensor:
        """Attention of one query per sequence: ``q`` [D, heads, head_dim]; ``cache`` [rows, 2 * kv_heads,
        head_dim] (keys, then values); sequence d's position t lies in cache row ``slots[d, t]`` for
        t < ``lengths[d]``. Query head i reads KV head i // (heads / kv_heads). Returns [D, heads, head_dim]."""
        d, heads, head_dim = q.shape
        kv_heads = cache.shape[1] // 2
        if (
            q.dtype != torch.float32
            or cache.dtype != torch.float32
            or cache.shape[2] != head_dim
            or heads % kv_heads
            or slots.dtype != torch.int64
            or lengths.dtype != torch.int64
            or slots.shape[0] != d
            or lengths.shape != (d,)
            or not all(t.is_contiguous() for t in (q, cache, slots, lengths))
        ):
            raise ValueError(
                f"decode attention: q {tuple(q.shape)}, cache {tuple(cache.shape)}, slots {tuple(slots.shape)}"
                f" and lengths {tuple(lengths.shape)} do not fit (contiguous; float32; int64 indices)"
            )
        out = torch.empty_like(q)
        status = self._library.skyline_decode_attention(
            q.data_ptr(), cache.data_ptr(), cache.shape[0], slots.data_ptr(), lengths.data_ptr(),
            out.data_ptr(), d, slots.shape[1], kv_heads, heads // kv_heads, head_dim, ctypes.c_float(scale),
            torch.get_num_threads(),
        )  # fmt: skip
        if status != 0:  # checked in C, where it costs nothing: the kernel reads where the slots say
            raise ValueError("decode attention: a length is not in 1..max_len or a slot is outside the cache")
        return out

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """``x / sqrt(mean(x ** 2, -1) + eps) * weight`` over the last dimension of float32 ``x``."""
        weight, x = _norm_weight("rms_norm", x, weight), x.contiguous()
        y = torch.empty_like(x)
        self._library.skyline_rms_norm(
            x.data_ptr(), weight.data_ptr(), y.data_ptr(), *_rows(x), ctypes.c_float(eps)
        )
        return y

    def rope_store(
        self, qkv: torch.Tensor, positions: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor,
        cache: torch.Tensor, slots: torch.Tensor, heads: int,
    ) -> torch.Tensor:  # fmt: skip
        """RoPE on ``qkv`` [T, heads + 2 * kv_heads, head_dim] at ``positions`` [T] (tables [max_pos,
        head_dim], rotate_half's sign folded into ``sin_signed``); the rotated keys and the values go to
        cache row ``slots[t]``; returns the rotated queries [T, heads, head_dim]."""
        tokens, width, head_dim = qkv.shape
        kv_heads = (width - heads) // 2
        if (
            any(t.dtype != torch.float32 for t in (qkv, cos, sin_signed, cache))
            or positions.dtype != torch.int64
            or slots.dtype != torch.int64
            or positions.shape != (tokens,)
            or slots.shape != (tokens,)
            or width != heads + 2 * kv_heads
            or cache.shape[1:] != (2 * kv_heads, head_dim)
            or cos.shape != sin_signed.shape
            or cos.shape[1:] != (head_dim,)
            or not all(t.is_contiguous() for t in (qkv, positions, cos, sin_signed, cache, slots))
        ):
            raise ValueError(
                f"rope_store: qkv {tuple(qkv.shape)}, positions {tuple(positions.shape)}, tables "
                f"{tuple(cos.shape)}, cache {tuple(cache.shape)} and slots {tuple(slots.shape)} do not fit"
            )
        q = torch.empty(tokens, heads, head_dim)
        status = self._library.skyline_rope_store(
            qkv.data_ptr(), positions.data_ptr(), cos.data_ptr(), sin_signed.data_ptr(), cos.shape[0],
            cache.data_ptr(), cache.shape[0], slots.data_ptr(), q.data_ptr(), tokens, heads, kv_heads, head_dim,
        )  # fmt: skip
        if status != 0:
            raise ValueError("rope_store: a position is past the rotary table or a slot is outside the cache")
        return q

    def silu_mul(self, gate_up: torch.Tensor) -> torch.Tensor:
        """``silu(gate) * up`` for float32 ``gate_up`` [rows, 2 * inter] = [gate | up]."""
        rows, width = gate_up.shape
        if gate_up.dtype != torch.float32 or width % 2 or not gate_up.is_contiguous():
            raise ValueError(f"silu_mul: gate_up {tuple(gate_up.shape)} {gate_up.dtype} (contiguous, even)")
        out = torch.empty(rows, width // 2)
        self._library.skyline_silu_mul(gate_up.data_ptr(), out.data_ptr(), rows, width // 2)
        return out

    def add_rms_norm(
        self, x: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, eps: float
    ) -> torch.Tensor:
        """``x += delta`` in place, then :meth:`rms_norm` of the sum."""
        if delta.shape != x.shape or delta.dtype != torch.float32 or not x.is_contiguous():
            raise ValueError(f"add_rms_norm: x {tuple(x.shape)} and delta {tuple(delta.shape)} do not fit")
        weight, delta = _norm_weight("add_rms_norm", x, weight), delta.contiguous()
        y = torch.empty_like(x)
        self._library.skyline_add_rms_norm(
            x.data_ptr(), delta.data_ptr(), weight.data_ptr(), y.data_ptr(), *_rows(x), ctypes.c_float(eps)
        )
        return y


def _norm_weight(kernel: str, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A norm's weight, contiguous, once checked against float32 ``x``'s last dimension."""
    if x.dtype != torch.float32 or weight.dtype != torch.float32 or weight.shape != (x.shape[-1],):
        raise ValueError(f"{kernel}: x {tuple(x.shape)} {x.dtype} does not fit weight {tuple(weight.shape)}")
    return weight.contiguous()


def _rows(x: torch.Tensor) -> tuple[int, int]:
    """(rows, width) of ``x`` seen as a matrix of its last dimension."""
    return x.numel() // max(x.shape[-1], 1), x.shape[-1]


def _check(x: torch.Tensor, w: torch.Tensor, dtype: torch.dtype) -> None:
    if (
        x.dtype != torch.float32
        or x.dim() != 2
        or not x.is_contiguous()
        or w.dtype != dtype
        or w.dim() != 2
        or not w.is_contiguous()
        or w.shape[1] != x.shape[1]
    ):
        raise ValueError(
            f"matmul kernel: x {tuple(x.shape)} {x.dtype} does not fit w {tuple(w.shape)} {w.dtype} "
            "(contiguous, float32 x, inner dimensions equal)"
        )


def _dims(x: torch.Tensor, w: torch.Tensor) -> tuple[int, int, int, int]:
    return x.shape[0], w.shape[0], x.shape[1], torch.get_num_threads()


@functools.cache
def kernels() -> Kernels | None:
    """The kernels, built on first use; None where they cannot run here."""
    why = _unavailable()
    if why is None:
        try:
            library = ctypes.CDLL(str(_build()))
        except subprocess.CalledProcessError as exc:
            why = f"{_SOURCE.name} did not compile: {exc.stderr.decode(errors='replace').strip()[-300:]}"
        except OSError as exc:
            why = f"{_SOURCE.name} could not be built or loaded: {exc}"
    if why is not None:
        log.warning("decoding kernels unavailable (%s): PyTorch's are used, 2-4x slower", why)
        return None
    address, size = ctypes.c_void_p, ctypes.c_long
    library.skyline_f32_matmul.argtypes = [address] * 3 + [size] * 3 + [ctypes.c_int]
    library.skyline_int8_matmul.argtypes = [address] * 4 + [size] * 3 + [ctypes.c_int]
    library.skyline_decode_attention.argtypes = (
        *(address, address, size, address, address, address),
        *(size, size, size, size, size, ctypes.c_float, ctypes.c_int),
    )
    library.skyline_decode_attention.restype = ctypes.c_int
    library.skyline_rms_norm.argtypes = [address] * 3 + [size] * 2 + [ctypes.c_float]
    library.skyline_rope_store.argtypes = (
        *(address, address, address, address, size, address, size, address, address),
        *(size, size, size, size),
    )
    library.skyline_rope_store.restype = ctypes.c_int
    library.skyline_silu_mul.argtypes = [address] * 2 + [size] * 2
    library.skyline_add_rms_norm.argtypes = [address] * 4 + [size] * 2 + [ctypes.c_float]
    for kernel in (
        library.skyline_f32_matmul,
        library.skyline_int8_matmul,
        library.skyline_rms_norm,
        library.skyline_silu_mul,
        library.skyline_add_rms_norm,
    ):
        kernel.restype = None
    return Kernels(library)


def _unavailable() -> str | None:
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"built for Linux x86-64, this is {platform.system()} {platform.machine()}"
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in ("AVX2", "AVX512"):
        return f"the CPU has no AVX2 (PyTorch sees {capability})"
    if _compiler() is None:
        return "no C compiler (set CC, or install gcc)"
    return None


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _build() -> Path:
    """The compiled library, built now if this source and these flags were never built here."""
    source = _SOURCE.read_bytes()
    digest = hashlib.sha256(source + " ".join(_FLAGS).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"decode-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler = _compiler()
    assert compiler is not None
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        subprocess.run([compiler, *_FLAGS, str(_SOURCE), "-o", str(built)], check=True, capture_output=True)
        os.replace(built, target)  # two engines building at once both end with a whole file
    log.info("built %s", target)
    return target
