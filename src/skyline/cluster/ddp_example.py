"""A tiny torch DDP training script, run unchanged by each replica of a gang job (the demo's job).

It reads torch.distributed's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) that the control
plane sets, trains a linear model on synthetic data with the gloo backend and prints the loss.
Run: ``python -m skyline.cluster.ddp_example --steps 60``.
"""

from __future__ import annotations

import argparse
import os


def main() -> None:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group(backend="gloo", init_method="env://")
    rank, world = dist.get_rank(), dist.get_world_size()
    generator = torch.Generator().manual_seed(rank)  # each rank sees its own shard of the data
    x = torch.randn(256, 4, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
    model = DistributedDataParallel(torch.nn.Linear(4, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.tensor(0.0)
    for step in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x).squeeze(1), y)
        loss.backward()  # type: ignore[no-untyped-call]  # DDP all-reduces the gradients here: every rank steps the same way
        optimizer.step()
        if rank == 0 and step % 20 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    total = loss.detach().clone()
    dist.all_reduce(total)
    weights = model.module.weight.detach().flatten().tolist()
    print(
        f"rank {rank}/{world} on {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}: "
        f"mean final loss {total.item() / world:.5f}, weights {[round(w, 3) for w in weights]}",
        flush=True,
    )
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
