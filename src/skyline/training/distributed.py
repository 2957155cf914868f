"""Where a training process stands in a data-parallel group, and how the group is formed.

Three ways to form it, one training loop (`skyline.training.loop.run_worker`) for all:

- ``local``: `spawn_local` starts N processes with ``torch.multiprocessing`` (spawn) that meet over TCP on
  127.0.0.1 and a free port;
- ``ray``: `skyline.training.ray_launcher` runs the loop in Ray Train's ``TorchTrainer`` workers, which
  form the group themselves;
- ``env``: a process started by the control plane (or ``torchrun``) joins from ``RANK``, ``WORLD_SIZE``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` (`context_from_env`).

Gloo on CPU, NCCL when CUDA is available. Every rank holds the same weights (DDP broadcasts rank 0's at
wrap time and averages gradients in backward), so every rank computes the same validation metrics and takes
the same early-stopping decision without extra communication.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skyline.errors import ConfigError, SkylineError, UnavailableError

if TYPE_CHECKING:
    from skyline.training.config import TrainConfig

ENV_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerContext:
    """This process's rank among ``world_size`` and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(rank: int) -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{rank % torch.cuda.device_count()}"
    return "cpu"


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def env_world_size() -> int:
    """WORLD_SIZE from the environment (1 when unset): > 1 means a launcher already placed this process."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE must be an integer, got {raw!r}") from None


def context_from_env() -> WorkerContext:
    """Join the group described by RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (the control plane sets them)."""
    import torch.distributed as dist

    missing = [name for name in ENV_VARS if name not in os.environ]
    if missing:
        raise ConfigError(f"launcher 'env' needs the environment variables {', '.join(missing)}")
    try:
        rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise ConfigError("RANK and WORLD_SIZE must be integers") from None
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK {rank} must be in [0, WORLD_SIZE={world_size})")
    device = pick_device(int(os.environ.get("LOCAL_RANK", rank)))
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method="env://", rank=rank, world_size=world_size)
    return WorkerContext(rank=rank, world_size=world_size, device=device)


def _spawned_worker(rank: int, config: TrainConfig, error_dir: str) -> None:
    import torch.distributed as dist

    from skyline.training.loop import run_worker

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
