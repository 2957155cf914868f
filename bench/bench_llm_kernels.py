"""The LLM engine's decoding matmul kernels (`skyline.llm.cpu_kernels`) against PyTorch and the memory limit.

One pass = every linear layer of SmolLM2-135M once (30 × fused q/k/v 960×576, o 576×576, fused gate/up
3072×576, down 576×1536, and the 49152×576 head), random weights of those shapes, 2 threads, for 1, 16 and
32 rows of activations (one decoding stream, 16 and 32 streams). Contenders, interleaved over 7 rounds,
medians reported: PyTorch's float32 matmul (``F.linear``, MKL: what the engine ran before), the float32
kernel, the int8 weight-only kernel. Limit: ``tensor.sum`` over the float32 weights' bytes (how fast this
machine reads memory); a one-row pass is memory-bound, so its time over this is the kernel's efficiency.
``python -m bench llm_kernels``; records bench/results/llm_kernels.json.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "2")

import torch
from torch.nn import functional

from bench.record import record
from skyline.llm.cpu_kernels import kernels

THREADS, ROUNDS = 2, 7
SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)] * 30 + [(49152, 576)]


def _timed(run: Callable[[], None], times: list[float]) -> None:
    start = time.perf_counter()
    run()
    times.append((time.perf_counter() - start) * 1e3)


def main() -> None:
    torch.set_num_threads(THREADS)
    found = kernels()
    if found is None:
        raise SystemExit("no kernels on this machine (see the warning): nothing to measure")
    load_before = [round(x, 2) for x in os.getloadavg()]
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(n, k, generator=generator) * 0.02 for n, k in SHAPES]
    quantized = []
    for w in weights:
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
        quantized.append(((w / scale[:, None]).round().to(torch.int8), scale))
    flat = torch.cat([w.reshape(-1) for w in weights])
    results: dict[str, object] = {
        "threads": THREADS,
        "rounds": ROUNDS,
        "weight_mib_fp32": round(flat.numel() * 4 / 2**20, 1),
    }
    limit: list[float] = []
    for _ in range(ROUNDS):
        _timed(lambda: flat.sum(), limit)
    limit_ms = statistics.median(limit)
    results["memory_read_fp32_weights_ms"] = round(limit_ms, 2)
    results["memory_read_gb_per_s"] = round(flat.numel() * 4 / limit_ms / 1e6, 1)
    for rows in (1, 16, 32):
        xs = {k: torch.randn(rows, k, generator=generator) for k in (576, 1536)}
        contenders: dict[str, Callable[[], None]] = {
            "pytorch_fp32": lambda xs=xs: [functional.linear(xs[w.shape[1]], w) for w in weights] and None,
            "kernel_fp32": lambda xs=xs: [found.f32(xs[w.shape[1]], w) for w in weights] and None,
            "kernel_int8": lambda xs=xs: [found.int8(xs[q.shape[1]], q, s) for q, s in quantized] and None,
        }
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for run in contenders.values():
            run()  # warm
        for _ in range(ROUNDS):
            for name, run in contenders.items():
                _timed(run, times[name])
        ms = {name: round(statistics.median(t), 2) for name, t in times.items()}
        results[f"rows_{rows}"] = {
            "pass_ms": ms,
            "kernel_fp32_speedup_vs_pytorch": round(ms["pytorch_fp32"] / ms["kernel_fp32"], 2),
            "kernel_int8_speedup_vs_pytorch_fp32": round(ms["pytorch_fp32"] / ms["kernel_int8"], 2),
            "kernel_fp32_over_memory_limit": round(ms["kernel_fp32"] / limit_ms, 2),
        }
        print(rows, results[f"rows_{rows}"], flush=True)
    results["load_average_before"] = load_before
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(record("llm_kernels", results))


if __name__ == "__main__":
    main()
