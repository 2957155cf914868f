"""Where a training process stands in a data-parallel group: its rank, the group's size, its device.

Gloo on CPU, NCCL when CUDA is available. Every rank holds the same weights (DDP broadcasts rank 0's at
wrap time and averages gradients in backward), so every rank computes the same validation metrics and takes
the same early-stopping decision without extra communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from skyline.errors import ConfigError

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
