"""How a data-parallel group is formed: three ways, one worker (`skyline.training.worker.run_worker`).

- ``local``: `spawn_local` starts N processes with ``torch.multiprocessing`` (spawn) that meet at a
  rendezvous file;
- ``ray``: `skyline.training.ray_launcher` runs the loop in Ray Train's ``TorchTrainer`` workers, which
  form the group themselves;
- ``env``: a process started by the control plane (or ``torchrun``) joins from ``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` (`skyline.training.context.context_from_env`).

Where a process stands in the group is its `skyline.training.context.WorkerContext`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from skyline.errors import SkylineError, UnavailableError
from skyline.training.context import WorkerContext, backend_for, pick_device

if TYPE_CHECKING:
    from skyline.training.config import TrainConfig


def _spawned_worker(rank: int, config: TrainConfig, error_dir: str) -> None:
    import torch.distributed as dist

    from skyline.training.worker import run_worker

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    device = pick_device(rank)
    # A rendezvous file, not a TCP port: a free port probed in the parent can be taken before the
    # workers bind it (seen on a busy machine: EADDRINUSE); a file in our own temp folder cannot.
    rendezvous = Path(error_dir) / "rendezvous"
    dist.init_process_group(
        backend_for(device), init_method=f"file://{rendezvous}", rank=rank, world_size=config.workers
    )
    try:
        run_worker(config, WorkerContext(rank=rank, world_size=config.workers, device=device))
    except SkylineError as exc:  # the user's mistake: hand it to the parent, no traceback
        error = {"type": type(exc).__name__, "message": str(exc)}
        (Path(error_dir) / f"rank-{rank}.json").write_text(json.dumps(error))
        raise SystemExit(3) from None
    finally:
        dist.destroy_process_group()


def _relayed_error(error_dir: Path) -> SkylineError | None:
    """The SkylineError a worker reported, rebuilt in the parent (rank 0's first), or None."""
    from skyline import errors

    for report in sorted(error_dir.glob("rank-*.json")):
        error = json.loads(report.read_text())
        kind = getattr(errors, error["type"], SkylineError)
        if not (isinstance(kind, type) and issubclass(kind, SkylineError)):
            kind = SkylineError
        return kind(error["message"])
    return None


def spawn_local(config: TrainConfig) -> Path:
    """Run ``config.workers`` DDP processes on this machine; rank 0 writes the results under ``out_dir``.

    A worker's `SkylineError` (bad data, a bad option) is raised again here, as the same class.
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    # torch logs "Terminating process ..." when it stops the other ranks after one failed; the error said it.
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="skyline-ddp-") as error_dir:
        try:
            mp.start_processes(  # type: ignore[attr-defined,no-untyped-call]
                _spawned_worker,
                args=(config, error_dir),
                nprocs=config.workers,
                join=True,
                start_method="spawn",
            )
        except ProcessException as exc:
            relayed = _relayed_error(Path(error_dir))
            if relayed is not None:
                raise relayed from None
            raise UnavailableError(f"a training worker failed: {exc}") from exc
    return config.out_dir
