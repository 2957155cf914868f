"""`train(config) -> TrainResult`: one entry point for single-process, local DDP, Ray and env-launched runs.

Which one runs:

- ``config.launcher == "ray"``: Ray Train's ``TorchTrainer`` with ``config.workers`` workers;
- ``config.launcher == "env"``, or ``local`` while ``WORLD_SIZE`` > 1 is set (the control plane started
  this process as one replica): join that group as ``RANK``; rank 0 returns the result, the other ranks
  return it too, read back from ``out_dir`` once rank 0 has written it;
- ``config.workers > 1``: spawn that many local processes (gloo on CPU, NCCL on GPU);
- otherwise: train here, in this process (progress callbacks work only here).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from skyline.errors import ConfigError
from skyline.training.config import TrainConfig
from skyline.training.context import WorkerContext, context_from_env, env_world_size, pick_device
from skyline.training.result import TrainResult
from skyline.training.session import EpochCallback, StepCallback
from skyline.training.worker import run_worker

if TYPE_CHECKING:
    from pathlib import Path


def read_result(out_dir: Path) -> TrainResult:
    """The `TrainResult` a finished run wrote to ``out_dir/result.json``."""
    path = out_dir / "result.json"
    if not path.is_file():
        raise ConfigError(f"no training result at {path}: the run did not finish")
    return TrainResult.from_dict(json.loads(path.read_text()))


def train(
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
) -> TrainResult:
    """Train as ``config`` says (see the module docstring) and return the main rank's result."""
    if config.launcher == "ray":
        from skyline.training.ray_launcher import run_with_ray

        run_with_ray(config)
        return read_result(config.out_dir)
    if config.launcher == "env" or env_world_size() > 1:
        return _train_from_env(config)
    if config.workers > 1:
        from skyline.training.distributed import spawn_local

        spawn_local(config)
        return read_result(config.out_dir)
    result = run_worker(config, WorkerContext(device=pick_device(0)), on_epoch=on_epoch, on_step=on_step)
    assert result is not None  # a lone process is the main rank
    return result


def _train_from_env(config: TrainConfig) -> TrainResult:
    import torch.distributed as dist

    ctx = context_from_env()
    if config.workers not in (1, ctx.world_size):
        raise ConfigError(
            f"--workers {config.workers} disagrees with WORLD_SIZE={ctx.world_size} set by the launcher"
        )
    config = config.replace(workers=ctx.world_size)  # validates batch_size % WORLD_SIZE
    result = run_worker(config, ctx)
    if ctx.distributed:
        dist.barrier()  # rank 0 has written result.json
        dist.destroy_process_group()
    return result if result is not None else read_result(config.out_dir)
