"""`skyline train`: train a model with clean splits, optionally data-parallel, pruned or differentially private.

Options come from a YAML file (``--config``, keys as in `skyline.training.config.TrainConfig`) and/or
flags; a flag given on the command line wins over the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from skyline.cli.output import console, err_console, progress, write_json


def train(
    ctx: typer.Context,
    dataset: str | None = typer.Option(None, help="digits, fashion-mnist, csv or synthetic-linear."),
    model: str | None = typer.Option(None, help="linear, mlp, cnn or cnn-bn."),
    out_dir: Path | None = typer.Option(None, "--out", help="Where model.pt, model.onnx, metrics.json go."),
    config: Path | None = typer.Option(None, "--config", help="A YAML file of TrainConfig options."),
    epochs: int | None = typer.Option(None, help="Training epochs (default 20)."),
    batch_size: int | None = typer.Option(None, help="Global batch size, split over workers (default 64)."),
    lr: float | None = typer.Option(None, help="Learning rate (default 1e-3)."),
    optimizer: str | None = typer.Option(None, help="sgd, adam or adamw (default adam)."),
    lr_schedule: str | None = typer.Option(None, help="constant, cosine or step (default cosine)."),
    patience: int | None = typer.Option(None, help="Early stopping patience in epochs; 0 turns it off."),
    workers: int | None = typer.Option(None, help="Data-parallel processes (DDP)."),
    launcher: str | None = typer.Option(None, help="local (processes here) or ray (Ray Train)."),
    prune: float | None = typer.Option(None, help="Fraction to prune during training, e.g. 0.5."),
    prune_kind: str | None = typer.Option(None, help="unstructured (global magnitude) or structured."),
    dp_epsilon: float | None = typer.Option(None, help="Train with DP-SGD to this ε."),
    dp_delta: float | None = typer.Option(None, help="δ of (ε, δ)-DP (default 1e-5)."),
    max_grad_norm: float | None = typer.Option(None, help="DP per-sample clipping bound C (default 1.0)."),
    seed: int | None = typer.Option(None, help="Seed of the split, the initial weights and the batches."),
    data_path: Path | None = typer.Option(None, "--data", help="The CSV file for --dataset csv."),
    label_column: str | None = typer.Option(None, help="The label column of the CSV (default: last)."),
    checkpoint_every_steps: int | None = typer.Option(
        None, "--checkpoint-every", help="Checkpoint every N steps (default: each epoch)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint under --out."),
    json_path: Path | None = typer.Option(None, "--json", help="Also write metrics.json's content here."),
) -> None:
    """Train a model and write model.pt, model.onnx, metrics.json and a training-curve PNG under --out."""
    from skyline.training.config import TrainConfig
    from skyline.training.trainer import train as run_training

    # The options are TrainConfig's fields; one the user gave (typer: not None/False) wins over the file.
    values = {k: v for k, v in ctx.params.items() if v is not None and v is not False}
    values = {k: v for k, v in values.items() if k not in ("config", "json_path")}
    settings = TrainConfig.from_yaml(config, **values) if config else TrainConfig.from_mapping(values)
    quiet = json_path is not None

    def show_epoch(metrics: Any) -> None:
        if not quiet:
            accuracy = "" if metrics.val_accuracy is None else f"  val acc {100 * metrics.val_accuracy:.2f}%"
            console.print(
                f"epoch {metrics.epoch:>3}  train loss {metrics.train_loss:.4f}  val loss {metrics.val_loss:.4f}"
                f"{accuracy}"
            )

    with progress("training", None, enabled=not quiet) as advance:
        result = run_training(settings, on_epoch=show_epoch, on_step=advance)
    for notice in result.notices:
        err_console.print(f"notice: {notice}")
    if json_path is not None:
        write_json(json_path, result.metrics())
        return
    _print_summary(result)


def _print_summary(result: Any) -> None:
    test = "n/a (regression)" if result.test_accuracy is None else f"{100 * result.test_accuracy:.2f}%"
    console.print(f"test accuracy {test}  (test loss {result.test_loss:.4f})")
    line = f"{result.epochs} epochs on {result.workers} worker(s) in {result.train_time_s:.1f} s"
    console.print(f"{line}, {result.samples_per_s:.0f} samples/s; {result.params} parameters")
    if result.sparsity:
        console.print(f"sparsity {100 * result.sparsity:.1f}%")
    if result.privacy is not None:
        console.print(f"privacy spent: {result.privacy.describe()}")
    for name, path in result.artifacts.items():
        console.print(f"{name}: {path}")
