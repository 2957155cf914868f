"""One training process from start to finish: resume or build the session, run it, write the artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyline.training.artifacts import finish
from skyline.training.checkpoint import load_latest_checkpoint
from skyline.training.session import EpochCallback, StepCallback, build_session, restore, run_loop

if TYPE_CHECKING:
    from skyline.training.config import TrainConfig
    from skyline.training.context import WorkerContext
    from skyline.training.result import TrainResult


def run_worker(
    config: TrainConfig,
    ctx: WorkerContext,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult | None:
    """Train as rank ``ctx.rank``; the main rank writes the artifacts and returns the result, others None."""
    saved = load_latest_checkpoint(config.out_dir) if config.resume else None  # fail before loading data
    session = build_session(config, ctx)
    if saved is not None:
        restore(session, saved)
    run_loop(session, on_epoch=on_epoch, on_step=on_step)
    if not ctx.is_main:
        return None
    return finish(session)
