"""Demo step: a CNN on the real digits data, trained by 2 data-parallel processes (torch DDP over gloo)."""

from __future__ import annotations

from pathlib import Path

from skyline.cli.demo import DemoContext, StepReport
from skyline.training.config import TrainConfig
from skyline.training.trainer import train


def run(ctx: DemoContext) -> StepReport:
    epochs = 6 if ctx.quick else 25
    config = TrainConfig(dataset="digits", model="cnn", epochs=epochs, workers=2, out_dir=ctx.out_dir, seed=0)
    result = train(config)
    accuracy = 100 * (result.test_accuracy or 0.0)
    summary = (
        f"2 processes (torch DDP, gloo on 127.0.0.1) trained a {result.params:,}-parameter CNN on scikit-learn's "
        f"8×8 digits for {result.epochs} epochs (global batch {config.batch_size}, 32 rows per worker, Adam, "
        f"cosine LR; split 65/15/20 stratified, seed {config.seed}): **test accuracy {accuracy:.2f}%** "
        f"(validation {100 * (result.val_accuracy or 0.0):.2f}%), {result.train_time_s:.1f} s of training, "
        f"{result.samples_per_s:,.0f} samples/s over both workers. Artifacts: "
        + ", ".join(f"`{Path(p).name}`" for p in result.artifacts.values())
        + "."
    )
    figures = (ctx.out_dir / "curves.png",) if (ctx.out_dir / "curves.png").is_file() else ()
    return StepReport(
        title="Training: 2-worker data-parallel CNN on digits",
        summary=summary,
        figures=figures,
        metrics=result.metrics(),
    )
