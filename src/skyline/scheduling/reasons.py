"""Why a job cannot be placed on a set of nodes: its tiers, its GPU models, or its size.

Said to users (``job status``) for a job that waits because no node could hold it now, and for a job
refused at submit because no node of the cluster ever could (Kubernetes' and Slurm's "why pending").
"""

from __future__ import annotations

from skyline.scheduling.packing import GPU, Packer, Request


def unplaceable(packer: Packer, request: Request, *, nodes: str = "node") -> str | None:
    """Why no node of ``packer`` could hold ``request`` even empty, or None when one could.

    ``nodes`` names the nodes in the message ("alive node", "registered node").
    """
    if packer.could_ever_fit(request):
        return None
    indices = range(len(packer.nodes))
    tiered = [i for i in indices if not request.tiers or packer.pool_of(i)[1] in request.tiers]
    if not tiered:
        return f"no {nodes} of tier {'/'.join(sorted(request.tiers))}"
    if request.gpu_milli and request.gpu_types:
        typed = [i for i in tiered if packer.pool_of(i)[0] in request.gpu_types]
        if not typed:
            return f"no {nodes} has GPU model {'|'.join(sorted(request.gpu_types))}" + _in_tiers(request)
        tiered = typed
    return _too_big(packer, request, tiered, nodes)


def _in_tiers(request: Request) -> str:
    return f" in tier {'/'.join(sorted(request.tiers))}" if request.tiers else ""


def _too_big(packer: Packer, request: Request, usable: list[int], nodes: str) -> str:
    if request.gpu_milli:
        largest = max(packer.nodes[i].gpus for i in usable)
        total = sum(packer.nodes[i].gpus for i in usable)
        per_replica = max(request.gpu_milli / GPU, 1.0)
        if per_replica > largest:
            return f"a replica asks {per_replica:g} GPUs; the largest {nodes} it may use has {largest}"
        return f"the gang asks {request.total_gpu_milli / GPU:g} GPUs; the {nodes}s it may use have {total}"
    cpus = sum(packer.nodes[i].cpu_milli for i in usable) / 1000
    memory = sum(packer.nodes[i].memory_mib for i in usable)
    return (
        f"the gang asks {request.replicas} × ({request.cpu_milli / 1000:g} CPU, {request.memory_mib} MiB); "
        f"the {nodes}s it may use have {cpus:g} CPUs and {memory} MiB together"
    )
