"""``--launcher ray``: the same training loop inside Ray Train's ``TorchTrainer`` workers.

Ray Train starts ``config.workers`` worker actors and forms the torch process group (gloo on CPU, NCCL on
GPU) before calling `_ray_worker`, which runs `skyline.training.worker.run_worker` as that rank. Rank 0 writes
the artifacts to ``config.out_dir`` (made absolute: the workers' working directory is Ray's). With ``RAY_ADDRESS`` set
it joins that cluster; otherwise a private local one is started with just enough CPUs and a small object store, and shut down
afterwards.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from skyline.errors import UnavailableError
from skyline.training.config import TrainConfig


def _ray_worker(loop_config: dict[str, Any]) -> None:
    import ray.train

    from skyline.training.context import WorkerContext, pick_device
    from skyline.training.worker import run_worker

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    config: TrainConfig = loop_config["config"]
    run_worker(config, WorkerContext(rank=rank, world_size=world_size, device=pick_device(rank)))


def run_with_ray(config: TrainConfig) -> None:
    """Run ``config`` on Ray Train with ``config.workers`` workers; the results land in ``config.out_dir``."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    config = config.replace(out_dir=config.out_dir.resolve())
    config.out_dir.mkdir(parents=True, exist_ok=True)
    # Ray would change CUDA_VISIBLE_DEVICES for GPU-less workers in future versions and warns about it;
    # opt in to that future behaviour now (it is what a CPU worker needs anyway).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    started_here = not ray.is_initialized()
    if started_here and os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=False)  # the user's cluster: it has its own resources
    elif started_here:
        ray.init(
            address="local",  # a private cluster, even if another one runs on this machine
            num_cpus=max(config.workers, os.cpu_count() or 1),
            object_store_memory=80 * 1024**2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        import torch

        with warnings.catch_warnings():
            # TorchTrainer builds a Ray Data context whose defaults set options Ray itself deprecated.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module="ray.data.context")
            trainer = TorchTrainer(
                _ray_worker,
                train_loop_config={"config": config},
                scaling_config=ScalingConfig(num_workers=config.workers, use_gpu=torch.cuda.is_available()),
                run_config=RunConfig(storage_path=str(config.out_dir / "ray"), name="train"),
            )
        trainer.fit()
    except Exception as exc:  # Ray wraps worker failures in its own types; say which run failed and why
        raise UnavailableError(f"Ray Train could not run the training: {exc}") from exc
    finally:
        if started_here:
            ray.shutdown()
