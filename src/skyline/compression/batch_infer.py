"""Parallel batch inference: ``procs`` processes × ``threads`` intra-op threads, never more than the cores.

Two ways to use a multi-core CPU: one process with many intra-op threads (each operator is split across
cores; good for big batches of a big model) or several single-threaded processes, each with a shard of the
input (no synchronisation; good for small models, whose operators are too small to split). Asking for
``threads × procs`` above the core count is refused: oversubscribed cores time-slice and every worker slows.
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from skyline.errors import ConfigError, DataError, NotFoundError

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True, kw_only=True)
class InferPlan:
    """How to spread the work; ``cores`` is what the machine offers."""

    threads: int
    procs: int
    batch_size: int
    cores: int

    def __post_init__(self) -> None:
        if self.threads < 1 or self.procs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"--threads, --procs and --batch must be >= 1, got {self.threads}, {self.procs}, {self.batch_size}"
            )
        if self.threads * self.procs > self.cores:
            raise ConfigError(
                f"--threads {self.threads} × --procs {self.procs} = {self.threads * self.procs} exceeds the "
                f"{self.cores} cores here; oversubscribing slows every worker, lower one of them"
            )


def plan(threads: int | None, procs: int | None, batch_size: int, cores: int | None = None) -> InferPlan:
    """Fill in what was not given: all cores as threads of one process by default."""
    available = cores or len(os.sched_getaffinity(0))
    procs = procs or 1
    threads = threads or max(1, available // procs)
    return InferPlan(threads=threads, procs=procs, batch_size=batch_size, cores=available)


def load_inputs(path: Path, input_names: tuple[str, ...]) -> Arrays:
    """A ``.npy`` array (single-input models) or a ``.npz`` of named arrays, all with the same batch length."""
    if not path.is_file():
        raise NotFoundError(f"input file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"cannot read {path} as .npy/.npz: {exc}") from None
    if isinstance(loaded, np.ndarray):
        if len(input_names) != 1:
            raise DataError(f"the model takes {', '.join(input_names)}; pass a .npz with those names")
        arrays = {input_names[0]: loaded}
    else:
        missing = [n for n in input_names if n not in loaded.files]
        if missing:
            raise DataError(f"{path} lacks input(s) {', '.join(missing)}; it has {', '.join(loaded.files)}")
        arrays = {n: loaded[n] for n in input_names}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise DataError(f"inputs in {path} must share one non-zero batch length, got {sorted(lengths)}")
    return arrays


def _open(model: Path, threads: int) -> tuple[tuple[str, ...], object]:
    """An ONNX Runtime session (.onnx) or a whole PyTorch module (.pt), with its input names."""
    if model.suffix == ".onnx":
        from skyline.compression.ort_session import OnnxPredictor

        predictor = OnnxPredictor(model, threads=threads)
        return predictor.input_names, predictor
    import torch

    from skyline.compression.artifact import TorchPredictor
    from skyline.compression.subjects import load_model_file

    module = load_model_file(model)
    return ("input",), TorchPredictor(module, ("input",), dtype=torch.float32, threads=threads)


def model_input_names(model: Path) -> tuple[str, ...]:
    """The names a model's inputs must have in the input file."""
    if not model.is_file():
        raise NotFoundError(f"model file {model} does not exist; pass a .onnx or .pt file")
    return _open(model, 1)[0]


def _run_shard(model: Path, shard: Arrays, threads: int, batch_size: int) -> tuple[np.ndarray, float]:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    _, predictor = _open(model, threads)
    length = len(next(iter(shard.values())))
    assert callable(predictor)
    predictor({k: v[:1] for k, v in shard.items()})  # warm-up outside the timed region
    started = time.perf_counter()
    outputs = [
        predictor({k: v[i : i + batch_size] for k, v in shard.items()}) for i in range(0, length, batch_size)
    ]
    return np.concatenate(outputs), time.perf_counter() - started


@dataclass(frozen=True, slots=True, kw_only=True)
class InferResult:
    """Outputs in input order, the wall time of the parallel part, and samples per second."""

    outputs: np.ndarray
    samples: int
    seconds: float
    plan: InferPlan

    @property
    def throughput_per_s(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")


def run_batch_inference(model: Path, inputs: Arrays, infer_plan: InferPlan) -> InferResult:
    """Run every input through ``model``, sharded over ``procs`` processes of ``threads`` threads each."""
    length = len(next(iter(inputs.values())))
    bounds = np.linspace(0, length, infer_plan.procs + 1).astype(int)
    shards = [{k: v[a:b] for k, v in inputs.items()} for a, b in itertools.pairwise(bounds.tolist()) if b > a]
    if infer_plan.procs == 1:
        outputs, seconds = _run_shard(model, shards[0], infer_plan.threads, infer_plan.batch_size)
        return InferResult(outputs=outputs, samples=length, seconds=seconds, plan=infer_plan)
    with ProcessPoolExecutor(max_workers=len(shards), mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(_run_shard, model, shard, infer_plan.threads, infer_plan.batch_size)
            for shard in shards
        ]
        results = [future.result() for future in futures]
    # Processes run at the same time: the slowest shard is the wall time of the parallel work.
    seconds = max(s for _, s in results)
    return InferResult(
        outputs=np.concatenate([o for o, _ in results]), samples=length, seconds=seconds, plan=infer_plan
    )
