"""The measurement harness: every variant on the same machine, in one run, interleaved.

Timings on a shared machine drift; running the variants round-robin (a slice of each in every round)
spreads that drift over all of them instead of penalising whichever ran last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from skyline.compression.artifact import Artifact
from skyline.compression.task import Inputs, Predictor, Task
from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasureConfig:
    """How hard to measure. ``threads`` is the intra-op thread count every variant gets."""

    threads: int = 1
    latency_runs: int = 200
    warmup_runs: int = 5
    rounds: int = 5
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128)
    throughput_runs: int = 10

    def __post_init__(self) -> None:
        if self.threads < 1 or self.rounds < 1 or self.latency_runs < self.rounds:
            raise ConfigError("measure: threads >= 1, rounds >= 1 and latency_runs >= rounds are required")
        if not self.batch_sizes or min(self.batch_sizes) < 1 or self.throughput_runs < 1:
            raise ConfigError("measure: batch_sizes must be positive and throughput_runs >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One row of report.json (plus the batch size that gave the best throughput)."""

    size_bytes: int
    params: int
    latency_p50_ms: float
    latency_p99_ms: float
    throughput_per_s: float
    best_batch: int
    metric: float
    metric_delta: float

    def report_row(self) -> dict[str, float | int]:
        """Exactly the keys report.json promises."""
        row = asdict(self)
        row.pop("best_batch")
        return row


def _timed(predictor: Predictor, inputs: Inputs, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        predictor(inputs)
        times.append(time.perf_counter() - started)
    return times


def _latencies(
    predictors: Mapping[str, Predictor], task: Task, config: MeasureConfig
) -> dict[str, list[float]]:
    one = task.sample(1)
    for predictor in predictors.values():
        _timed(predictor, one, config.warmup_runs)
    per_round = max(1, config.latency_runs // config.rounds)
    times: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(config.rounds):
        for name, predictor in predictors.items():
            times[name] += _timed(predictor, one, per_round)
    return times


def _throughputs(
    predictors: Mapping[str, Predictor], task: Task, config: MeasureConfig
) -> dict[str, tuple[float, int]]:
    best: dict[str, tuple[float, int]] = dict.fromkeys(predictors, (0.0, 1))
    per_round = max(1, config.throughput_runs // config.rounds)
    for batch in sorted({min(b, task.max_batch) for b in config.batch_sizes}):
        inputs = task.sample(batch)
        rates: dict[str, list[float]] = {name: [] for name in predictors}
        for predictor in predictors.values():
            predictor(inputs)  # warm-up: first call at a new shape allocates
        for _ in range(config.rounds):
            for name, predictor in predictors.items():
                rates[name].append(batch * per_round / sum(_timed(predictor, inputs, per_round)))
        for name, samples in rates.items():
            rate = float(np.median(samples))
            if rate > best[name][0]:
                best[name] = (rate, batch)
    return best


def measure_variants(
    variants: Mapping[str, Artifact],
    task: Task,
    config: MeasureConfig,
    *,
    on_progress: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Measurement]:
    """Size, parameters, latency p50/p99 at batch 1, best-batch throughput and the task metric of each."""
    if "fp32" not in variants:
        raise ConfigError("measure_variants needs the original model as variant 'fp32'")
    predictors = {
        name: artifact.predictor(task, threads=config.threads) for name, artifact in variants.items()
    }
    on_progress("task metric")
    metrics = {name: task.evaluate(predictor) for name, predictor in predictors.items()}
    on_progress("latency at batch 1")
    latencies = _latencies(predictors, task, config)
    on_progress("throughput")
    throughputs = _throughputs(predictors, task, config)
    return {
        name: Measurement(
            size_bytes=artifact.size_bytes(),
            params=artifact.params(),
            latency_p50_ms=float(np.percentile(latencies[name], 50) * 1e3),
            latency_p99_ms=float(np.percentile(latencies[name], 99) * 1e3),
            throughput_per_s=throughputs[name][0],
            best_batch=throughputs[name][1],
            metric=metrics[name],
            metric_delta=metrics[name] - metrics["fp32"],
        )
        for name, artifact in variants.items()
    }
