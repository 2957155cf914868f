"""Training benchmark: accuracy targets, DDP 2 vs 1 worker, structured pruning, DP-SGD vs non-private.

Run with ``.venv/bin/python -m bench train``; records bench/results/train.json. Every run is single-threaded
(``OMP_NUM_THREADS=1``): the DDP comparison is 1 process on 1 core against 2 processes on 2 cores. The
machine is shared with other work, so wall-clock numbers are noisy: the DDP runs alternate (1, 2, 1, 2
workers) and report medians, the inference timings interleave dense and pruned calls.

Fashion-MNIST epochs default to 3 (one to three minutes an epoch on one shared core);
``BENCH_TRAIN_FMNIST_EPOCHS`` changes that. ``BENCH_TRAIN_PARTS=accuracy,pruning,privacy,ddp`` picks parts;
the others keep their previously recorded results.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench.record import record

DIGITS_CNN = {"dataset": "digits", "model": "cnn", "epochs": 25, "batch_size": 64, "lr": 1e-3, "patience": 6}


def _train(out: Path, **options: Any) -> tuple[Any, float]:
    from skyline.training.config import TrainConfig
    from skyline.training.trainer import train

    started = time.perf_counter()
    result = train(TrainConfig(out_dir=out, **options))
    return result, time.perf_counter() - started


def _summary(result: Any, wall_s: float) -> dict[str, Any]:
    return result.metrics() | {"test_loss": round(result.test_loss, 4), "wall_s": round(wall_s, 1)}


def bench_accuracy(root: Path) -> dict[str, Any]:
    digits, digits_wall = _train(root / "digits", **DIGITS_CNN)
    epochs = int(os.environ.get("BENCH_TRAIN_FMNIST_EPOCHS", "3"))
    fashion, fashion_wall = _train(
        root / "fashion",
        dataset="fashion-mnist",
        model="cnn",
        epochs=epochs,
        batch_size=128,
        lr=1e-3,
        patience=0,
    )
    return {
        "digits_cnn": _summary(digits, digits_wall) | {"config": DIGITS_CNN, "target": ">= 0.98"},
        "fashion_mnist_cnn": _summary(fashion, fashion_wall)
        | {"config": {"epochs": epochs, "batch_size": 128, "lr": 1e-3}, "target": ">= 0.90"},
        "digits_ok": (digits.test_accuracy or 0) >= 0.98,
        "fashion_ok": (fashion.test_accuracy or 0) >= 0.90,
    }


def bench_ddp(root: Path, rounds: int = 2) -> dict[str, Any]:
    runs: dict[int, list[tuple[Any, float]]] = {1: [], 2: []}
    for index in range(rounds):
        for workers in (1, 2):
            runs[workers].append(_train(root / f"ddp-{workers}-{index}", **DIGITS_CNN, workers=workers))
    ray_result, ray_wall = _train(root / "ray", **DIGITS_CNN, workers=2, launcher="ray")
    one = statistics.median(r.samples_per_s for r, _ in runs[1])
    two = statistics.median(r.samples_per_s for r, _ in runs[2])
    accuracy = {w: statistics.median(r.test_accuracy or 0 for r, _ in runs[w]) for w in (1, 2)}
    return {
        "rounds": rounds,
        "one_worker": [_summary(r, wall) for r, wall in runs[1]],
        "two_workers": [_summary(r, wall) for r, wall in runs[2]],
        "ray_two_workers": _summary(ray_result, ray_wall),
        "median_samples_per_s": {"1": one, "2": two},
        "throughput_ratio_2_vs_1": round(two / one, 3),
        "accuracy_gap_points": round(100 * abs(accuracy[2] - accuracy[1]), 2),
        "accuracy_ok": abs(accuracy[2] - accuracy[1]) <= 0.005,
    }


def _time_inference(models: dict[str, Any], inputs: Any, repeats: int) -> dict[str, float]:
    import torch

    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(inputs)  # warm-up
        for _ in range(repeats):  # interleaved, so that load from others hits both alike
            for name, model in models.items():
                started = time.perf_counter()
                model(inputs)
                samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in samples.items()}


def bench_pruning(root: Path, dense_dir: Path, dense: dict[str, Any]) -> dict[str, Any]:
    import torch

    from skyline.training.data import load_dataset

    # Prune over epochs 2-15, then fine-tune: 30 epochs in all (the dense model gets 25 and early stopping).
    options = DIGITS_CNN | {"epochs": 30, "prune": 0.5, "prune_kind": "structured"}
    options |= {"prune_start_epoch": 2, "prune_end_epoch": 15}
    pruned, wall = _train(root / "pruned", **options)
    models = {
        "dense": torch.load(dense_dir / "model.pt", weights_only=False).eval(),
        "pruned": torch.load(root / "pruned" / "model.pt", weights_only=False).eval(),
    }
    test_x = load_dataset("digits").test.x
    timings = {}
    for batch in (1, 256):
        inputs = (
            test_x[:batch]
            if batch <= len(test_x)
            else test_x.repeat(batch // len(test_x) + 1, 1, 1, 1)[:batch]
        )
        medians = _time_inference(models, inputs, repeats=300 if batch == 1 else 100)
        timings[f"batch_{batch}"] = {
            "dense_ms": round(1e3 * medians["dense"], 4),
            "pruned_ms": round(1e3 * medians["pruned"], 4),
            "speedup": round(medians["dense"] / medians["pruned"], 2),
        }
    drop = 100 * ((dense["test_accuracy"] or 0) - (pruned.test_accuracy or 0))
    return {
        "config": options,
        "dense": {"test_accuracy": dense["test_accuracy"], "params": dense["params"]},
        "pruned": _summary(pruned, wall),
        "accuracy_drop_points": round(drop, 2),
        "inference": timings,
        "accuracy_ok": drop <= 1.0,
        "speedup_ok": timings["batch_256"]["speedup"] >= 1.5,
    }


DP_OPTIONS = {"dataset": "digits", "model": "linear", "epochs": 30, "batch_size": 256, "optimizer": "sgd"}
DP_OPTIONS |= {"lr": 0.5, "patience": 0, "max_grad_norm": 1.0}


def bench_privacy(root: Path) -> dict[str, Any]:
    plain, plain_wall = _train(root / "plain", **DP_OPTIONS)
    private, private_wall = _train(root / "private", **DP_OPTIONS, dp_epsilon=3.0, dp_delta=1e-5)
    kept = (private.test_accuracy or 0) / (plain.test_accuracy or 1)
    return {
        "config": DP_OPTIONS | {"dp_epsilon": 3.0, "dp_delta": 1e-5, "accountant": "prv"},
        "non_private": _summary(plain, plain_wall),
        "private": _summary(private, private_wall),
        "fraction_of_non_private_accuracy": round(kept, 4),
        "ok": kept >= 0.95,
    }


PARTS = ("accuracy", "pruning", "privacy", "ddp")


def _previous_results() -> dict[str, Any]:
    path = Path(__file__).parent / "results" / "train.json"
    if not path.is_file():
        return {}
    previous: dict[str, Any] = json.loads(path.read_text()).get("results", {})
    return previous


def main() -> None:
    """Run the parts named in ``BENCH_TRAIN_PARTS`` (default all); parts not run keep their recorded results."""
    import torch

    torch.set_num_threads(1)
    parts = [p for p in os.environ.get("BENCH_TRAIN_PARTS", ",".join(PARTS)).split(",") if p]
    results = _previous_results() | {
        "note": "2-core machine, one thread per process; the parts named in parts_run_last ran in the run"
        " whose load averages the machine block gives, the others keep an earlier run's figures",
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        if "accuracy" in parts:
            results["accuracy"] = bench_accuracy(root)
            record("train", results)  # after every part, so that a later failure loses nothing
            print("accuracy", {k: v for k, v in results["accuracy"].items() if k.endswith("_ok")}, flush=True)
        if "pruning" in parts:
            if (root / "digits" / "model.pt").is_file():  # the accuracy part just trained the dense model
                dense_dir, dense_summary = root / "digits", results["accuracy"]["digits_cnn"]
            else:
                dense, wall = _train(root / "dense", **DIGITS_CNN)
                dense_dir, dense_summary = root / "dense", _summary(dense, wall)
            results["pruning"] = bench_pruning(root, dense_dir, dense_summary)
            record("train", results)
            print(
                "pruning",
                results["pruning"]["accuracy_drop_points"],
                results["pruning"]["inference"],
                flush=True,
            )
        if "privacy" in parts:
            results["privacy"] = bench_privacy(root)
            record("train", results)
            print("privacy", results["privacy"]["fraction_of_non_private_accuracy"], flush=True)
        if "ddp" in parts:
            results["ddp"] = bench_ddp(root)
            print("ddp", results["ddp"]["throughput_ratio_2_vs_1"], flush=True)
        results["parts_run_last"] = parts
    path = record("train", results)
    print(f"recorded {path}")


if __name__ == "__main__":
    main()
