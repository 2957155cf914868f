"""A job that does ``--seconds`` of (simulated) work and keeps its progress in a checkpoint file.

``python -m skyline.cluster.sleeper --seconds 8 --checkpoint /tmp/job.ckpt [--busy]``: it works in small
steps (sleeping, or spinning the CPU with ``--busy``), writes the seconds done after each step, and on
start resumes from the checkpoint, so a preempted job loses at most one step, as a training job that
checkpoints does. The fidelity harness and the live-vs-simulated tests run it as their jobs' command.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

STEP_S = 0.05


def done_s(checkpoint: Path) -> float:
    """Seconds of work the checkpoint records (0 when there is none yet)."""
    try:
        return float(checkpoint.read_text() or 0.0)
    except (FileNotFoundError, ValueError):
        return 0.0


def work(seconds: float, checkpoint: Path, *, busy: bool = False) -> None:
    """Do what is left of ``seconds`` of work, recording progress after every step.

    Work is wall time since this run began (its own bookkeeping included), added to what the
    checkpoint held: a run takes exactly what was left, however slow its steps are.
    """
    resumed_at, before = time.monotonic(), done_s(checkpoint)
    while (done := before + time.monotonic() - resumed_at) < seconds:
        step = min(STEP_S, seconds - done)
        if busy:
            until = time.monotonic() + step
            while time.monotonic() < until:
                pass
        else:
            time.sleep(step)
        partial = checkpoint.with_suffix(".tmp")
        partial.write_text(f"{before + time.monotonic() - resumed_at:.4f}")
        os.replace(partial, checkpoint)  # atomic: a kill never leaves a torn checkpoint


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--busy", action="store_true", help="spin the CPU instead of sleeping")
    args = parser.parse_args(argv)
    work(args.seconds, args.checkpoint, busy=args.busy)


if __name__ == "__main__":
    main()
