"""Data-parallel training: real gloo process groups on 127.0.0.1.

The gradients DDP leaves on every rank are identical, and equal the gradients one process computes on
the same global batch. (tests/e2e/test_training_cli.py runs a whole 2-worker training through the CLI.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from skyline.training.config import TrainConfig
from skyline.training.context import WorkerContext
from skyline.training.session import Session, batch_rows, build_session

pytestmark = pytest.mark.integration


def _gradients(session: Session, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    train_split = session.data.train
    session.optimizer.zero_grad()
    session.loss(session.net, train_split.x[rows], train_split.y[rows]).backward()  # type: ignore[no-untyped-call]
    return {name: p.grad.clone() for name, p in session.model.named_parameters() if p.grad is not None}


def _config(out: Path, workers: int) -> TrainConfig:
    return TrainConfig(dataset="digits", model="cnn", batch_size=32, workers=workers, out_dir=out)


def _rank(rank: int, world_size: int, out: Path) -> None:
    rendezvous = f"file://{out / 'rendezvous'}"  # a file, not a port that another process could take
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world_size)
    try:
        session = build_session(_config(out, world_size), WorkerContext(rank=rank, world_size=world_size))
        rows = batch_rows(session, epoch=1, step=3)
        torch.save({"rows": rows, "grads": _gradients(session, rows)}, out / f"rank-{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other still talks (SIGABRT in gloo, seen once)
    finally:
        dist.destroy_process_group()


def test_ddp_gradients_are_equal_across_ranks_and_to_one_process_on_the_global_batch(tmp_path: Path) -> None:
    mp.start_processes(_rank, args=(2, tmp_path), nprocs=2, join=True, start_method="spawn")  # type: ignore[attr-defined,no-untyped-call]
    ranks = [torch.load(tmp_path / f"rank-{r}.pt") for r in range(2)]
    single = build_session(_config(tmp_path, 1), WorkerContext())
    global_rows = batch_rows(single, epoch=1, step=3)
    assert len(global_rows) == 32 and all(len(r["rows"]) == 16 for r in ranks)
    assert torch.equal(torch.cat([r["rows"] for r in ranks]), global_rows)  # rank r takes slice r
    expected = _gradients(single, global_rows)
    for name, grad in expected.items():
        assert torch.equal(ranks[0]["grads"][name], ranks[1]["grads"][name])
        assert torch.allclose(ranks[0]["grads"][name], grad, atol=1e-6), name
