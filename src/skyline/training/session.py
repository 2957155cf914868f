"""A `skyline train` run as one process sees it, alone or as one rank of a data-parallel group: the session
(data, model, optimizer, pruner, DP-SGD), its epochs through `skyline.training.fit.run_epoch`, validation,
early stopping and checkpoints.

Batching: epoch ``e`` visits the training rows in the order ``randperm(rows, seed=(seed, e))``, in global
batches of ``batch_size`` (the last incomplete one is dropped so that every step has the same size on every
rank); rank ``r`` of ``W`` takes rows ``[r·b, (r+1)·b)`` of each global batch, ``b = batch_size / W``. DDP
averages the ranks' gradients, which is the gradient of the mean loss over the global batch: the same
update one process makes on the same batch. DP-SGD draws secret Poisson batches instead (`privacy.DPSGD`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from skyline.errors import ConfigError
from skyline.training.checkpoint import save_checkpoint
from skyline.training.context import WorkerContext
from skyline.training.data import DatasetSplits, load_dataset
from skyline.training.fit import LossFn, Step, StepHooks, evaluate, make_optimizer, run_epoch, task_loss
from skyline.training.models import build_model
from skyline.training.pruning import Pruner, cubic_sparsity, make_pruner
from skyline.training.result import EpochMetrics

if TYPE_CHECKING:
    import torch
    from torch import nn

    from skyline.training.config import TrainConfig
    from skyline.training.privacy import DPSGD

EpochCallback = Callable[[EpochMetrics], None]
StepCallback = Callable[[int], None]


@dataclass(slots=True)
class LoopState:
    """Where the run is; saved in every checkpoint."""

    epoch: int = 0  # 0-based epoch in progress
    step_in_epoch: int = 0  # steps of that epoch already taken
    global_step: int = 0
    loss_sum: float = 0.0  # this epoch's training loss so far, summed over steps (this rank)
    history: list[EpochMetrics] = field(default_factory=list)
    best_val_loss: float = math.inf
    best_val_accuracy: float | None = None
    best_weights: dict[str, Any] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    train_time_s: float = 0.0
    samples: int = 0  # training samples processed, all ranks together


@dataclass(slots=True)
class Session:
    """What one process trains with."""

    config: TrainConfig
    ctx: WorkerContext
    data: DatasetSplits
    model: nn.Module  # the plain model (checkpoints, evaluation, pruning)
    net: nn.Module  # what the forward pass goes through: DDP or Opacus wrapper, else the model
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps_per_epoch: int
    loss: LossFn
    pruner: Pruner | None = None
    privacy: DPSGD | None = None
    notices: tuple[str, ...] = ()
    state: LoopState = field(default_factory=LoopState)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler:
    from torch.optim import lr_scheduler

    if config.lr_schedule == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.lr_schedule == "step":
        return lr_scheduler.StepLR(optimizer, step_size=config.lr_step_epochs, gamma=0.5)
    return lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def build_session(config: TrainConfig, ctx: WorkerContext) -> Session:
    """Load the data, build and wrap the model, the optimizer, the pruner and DP-SGD."""
    import torch

    from skyline.training.privacy import prepare_model

    data = load_dataset(
        config.dataset,
        seed=config.seed,
        val_fraction=config.val_fraction,
        test_fraction=config.test_fraction,
        path=config.data_path,
        label_column=config.label_column,
    )
    steps_per_epoch = len(data.train) // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(data.train)} training rows")
    torch.manual_seed(config.seed)  # the same initial weights on every rank and every run
    model: nn.Module = build_model(config.model, data.input_shape, data.num_classes)
    notices: tuple[str, ...] = ()
    if config.dp_epsilon is not None:
        model, notices = prepare_model(model, fix=config.dp_fix_model)
    model = model.to(ctx.device)
    optimizer = make_optimizer(
        config.optimizer, model, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = _scheduler(config, optimizer)
    session = Session(
        config,
        ctx,
        data,
        model,
        model,
        optimizer,
        scheduler,
        steps_per_epoch,
        task_loss(data.task),
        notices=notices,
    )
    if config.prune > 0:
        session.pruner = make_pruner(config.prune_kind, model)
    if config.dp_epsilon is not None:
        _make_private(session)
    elif ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(ctx.device)] if ctx.device != "cpu" else None
        session.net = DistributedDataParallel(model, device_ids=device_ids)
    return session


def _make_private(session: Session) -> None:
    """DP-SGD with the σ that spends exactly ``dp_epsilon`` over the planned steps (record level)."""
    from skyline.training.privacy import DPSGD, noise_multiplier_for

    config, rows = session.config, len(session.data.train)
    if config.batch_size >= rows:
        raise ConfigError(f"DP-SGD needs batch_size < training rows ({rows}), got {config.batch_size}")
    assert config.dp_epsilon is not None
    sample_rate = config.batch_size / rows
    sigma = noise_multiplier_for(
        target_epsilon=config.dp_epsilon,
        sample_rate=sample_rate,
        steps=config.epochs * session.steps_per_epoch,
        delta=config.dp_delta,
        accountant=config.dp_accountant,
    )
    privacy = DPSGD(
        session.model,
        session.optimizer,
        noise_multiplier=sigma,
        clipping_norm=config.max_grad_norm,
        sample_rate=sample_rate,
        expected_batch_size=config.batch_size,
        delta=config.dp_delta,
        accountant=config.dp_accountant,
    )
    session.privacy, session.net, session.optimizer = privacy, privacy.module, privacy.optimizer


def batch_rows(session: Session, epoch: int, step: int) -> torch.Tensor:
    """This rank's training rows for ``step`` of ``epoch`` (see the module docstring)."""
    import torch

    config, ctx, rows = session.config, session.ctx, len(session.data.train)
    if session.privacy is not None:
        return session.privacy.sample(rows)
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(rows, generator=generator)
    global_batch = order[step * config.batch_size : (step + 1) * config.batch_size]
    local = config.batch_size // ctx.world_size
    return global_batch[ctx.rank * local : (ctx.rank + 1) * local]


def _prune_after_update(session: Session) -> None:
    """The cubic schedule's next target every ``prune_every_steps`` steps, and the masks after each step."""
    pruner, config = session.pruner, session.config
    if pruner is None:
        return
    step = session.state.global_step  # steps before the one just taken (as the schedule always counted)
    end_step = config.pruning_end_epoch * session.steps_per_epoch
    if step % config.prune_every_steps == 0 or step == end_step:
        target = cubic_sparsity(
            step,
            start_step=config.prune_start_epoch * session.steps_per_epoch,
            end_step=end_step,
            final=config.prune,
        )
        pruner.update(session.model, target)
    pruner.apply(session.model)  # the optimizer step moved masked weights off zero


def checkpoint_state(session: Session) -> dict[str, Any]:
    import torch

    return {
        "config": session.config.to_dict(),
        "model": session.model.state_dict(),
        "optimizer": session.optimizer.state_dict(),
        "scheduler": session.scheduler.state_dict(),
        "pruner": session.pruner.state_dict() if session.pruner else None,
        "privacy": session.privacy.state_dict() if session.privacy else None,
        "loop": copy.deepcopy(session.state),
        "torch_rng": torch.get_rng_state(),
    }


def restore(session: Session, saved: dict[str, Any]) -> None:
    """Put ``session`` back where the checkpoint ``saved`` left off."""
    import torch

    mismatched = [
        key
        for key in ("dataset", "model", "seed", "batch_size", "prune", "prune_kind", "dp_epsilon", "epochs")
        if saved["config"].get(key) != session.config.to_dict()[key]
    ]
    if mismatched:
        raise ConfigError(
            f"cannot resume: the checkpoint was made with different {', '.join(mismatched)}; "
            "resume with the same options or use a new --out"
        )
    session.model.load_state_dict(saved["model"])
    session.optimizer.load_state_dict(saved["optimizer"])
    session.scheduler.load_state_dict(saved["scheduler"])
    if session.pruner is not None and saved["pruner"] is not None:
        session.pruner.load_state_dict(saved["pruner"])
    if session.privacy is not None and saved["privacy"] is not None:
        session.privacy.load_state_dict(saved["privacy"])
    session.state = saved["loop"]
    torch.set_rng_state(saved["torch_rng"])


def _save(session: Session) -> None:
    if session.ctx.is_main:
        save_checkpoint(
            session.config.out_dir,
            session.state.global_step,
            checkpoint_state(session),
            keep=session.config.keep_checkpoints,
        )


def _sum_over_ranks(session: Session, values: list[float]) -> list[float]:
    if not session.ctx.distributed:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64, device=session.ctx.device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]


def _run_epoch(session: Session, on_step: StepCallback | None) -> None:
    config, state = session.config, session.state
    every = config.checkpoint_every_steps
    steps = range(state.step_in_epoch, session.steps_per_epoch)

    def after_step(step: Step) -> None:
        state.loss_sum += step.loss
        state.step_in_epoch, state.global_step = step.index + 1, state.global_step + 1
        state.samples += step.rows * session.ctx.world_size
        state.train_time_s += step.seconds
        if on_step is not None:
            on_step(1)
        if every and state.global_step % every == 0:
            _save(session)

    run_epoch(
        session.net,
        session.optimizer,
        (session.data.train.x, session.data.train.y),
        ((step, batch_rows(session, state.epoch, step)) for step in steps),
        session.loss,
        hooks=StepHooks(after_update=lambda: _prune_after_update(session), after_step=after_step),
        device=session.ctx.device,
    )


def _end_epoch(session: Session) -> EpochMetrics:
    config, state = session.config, session.state
    started = time.perf_counter()
    loss_sum, steps = _sum_over_ranks(session, [state.loss_sum, float(session.steps_per_epoch)])
    val = session.data.val
    val_loss, val_accuracy = evaluate(
        session.model, val.x, val.y, task=session.data.task, device=session.ctx.device
    )
    metrics = EpochMetrics(
        epoch=state.epoch + 1,
        train_loss=loss_sum / max(1.0, steps),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        lr=float(session.optimizer.param_groups[0]["lr"]),
        sparsity=session.pruner.sparsity(session.model) if session.pruner else 0.0,
        epsilon=session.privacy.epsilon() if session.privacy else None,
        elapsed_s=state.train_time_s,
    )
    session.scheduler.step()
    state.history.append(metrics)
    pruning_done = session.pruner is None or state.epoch + 1 >= config.pruning_end_epoch
    if pruning_done and val_loss < state.best_val_loss - 1e-9:
        state.best_val_loss, state.best_val_accuracy, state.bad_epochs = val_loss, val_accuracy, 0
        state.best_weights = {k: v.detach().cpu().clone() for k, v in session.model.state_dict().items()}
    elif pruning_done:
        state.bad_epochs += 1
        state.stopped_early = config.patience > 0 and state.bad_epochs >= config.patience
    state.epoch, state.step_in_epoch, state.loss_sum = state.epoch + 1, 0, 0.0
    state.train_time_s += time.perf_counter() - started
    return metrics


def _append_log(session: Session) -> None:
    """Rewrite ``log.jsonl`` with every epoch so far (rewriting, not appending, keeps resumed runs clean)."""
    import json
    from dataclasses import asdict

    out = session.config.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.jsonl").write_text("".join(json.dumps(asdict(h)) + "\n" for h in session.state.history))


def run_loop(
    session: Session, *, on_epoch: EpochCallback | None = None, on_step: StepCallback | None = None
) -> None:
    """Train until the last epoch or early stopping, checkpointing as configured; keep the best weights."""
    config, state = session.config, session.state
    while state.epoch < config.epochs and not state.stopped_early:
        _run_epoch(session, on_step)
        metrics = _end_epoch(session)
        if not config.checkpoint_every_steps:
            _save(session)
        if session.ctx.is_main:
            _append_log(session)
            if on_epoch is not None:
                on_epoch(metrics)
    if state.best_weights is not None:
        session.model.load_state_dict(state.best_weights)
