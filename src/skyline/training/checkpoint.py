"""Checkpoints: everything needed to continue a run exactly as if it had never stopped.

A checkpoint holds the model, optimizer and LR-schedule state, the pruning masks, the privacy ledger, the
RNG states, the position (epoch, step within the epoch, global step), the early-stopping state and the
metrics history. Because each epoch's batch order is a pure function of (seed, epoch), the resumed run
skips the steps already done and sees the very same batches next. Files are
``<out>/checkpoints/step-<global step>.pt``; the newest ``keep`` are kept. Writes are atomic (temporary
file, then rename), so a crash mid-write never leaves a truncated "latest" checkpoint.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from skyline.errors import DataError, NotFoundError

_NAME = re.compile(r"^step-(\d+)\.pt$")


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir / "checkpoints"


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints under ``out_dir``, oldest first."""
    folder = checkpoint_dir(out_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(out_dir: Path, global_step: int, state: dict[str, Any], *, keep: int) -> Path:
    """Write ``state`` as the checkpoint of ``global_step`` and delete all but the newest ``keep``."""
    import torch

    folder = checkpoint_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"step-{global_step:08d}.pt"
    partial = target.with_suffix(".pt.partial")
    torch.save(state, partial)
    os.replace(partial, target)
    for old in list_checkpoints(out_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def load_latest_checkpoint(out_dir: Path) -> dict[str, Any]:
    """The newest checkpoint's state; NotFoundError when there is none to resume from."""
    import torch

    found = list_checkpoints(out_dir)
    if not found:
        raise NotFoundError(
            f"nothing to resume: no checkpoint under {checkpoint_dir(out_dir)}; run without --resume first"
        )
    try:
        state: dict[str, Any] = torch.load(found[-1], map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise DataError(
            f"checkpoint {found[-1]} cannot be read ({exc}); delete it to resume from the one before"
        ) from exc
    return state
