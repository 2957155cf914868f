"""Demo step: a live control plane on SQLite, one node agent, a 2-replica torch DDP job and a batch job."""

from __future__ import annotations

import sys
import time
from typing import Any

from skyline.cli.demo import DemoContext, StepReport
from skyline.cli.demo_steps.node import demo_node

FINISHED = ("succeeded", "failed", "cancelled")


def _watch(
    client: Any, submitted: list[dict[str, Any]], timeout_s: float
) -> dict[str, list[tuple[float, str]]]:
    """Poll until every job finished; the status sequence of each, with seconds since the start."""
    started = time.monotonic()
    seen = {job["id"]: [(0.0, str(job["status"]))] for job in submitted}
    job_ids = list(seen)
    while True:
        for job_id in job_ids:
            status = client.job(job_id)["status"]
            if not seen[job_id] or seen[job_id][-1][1] != status:
                seen[job_id].append((time.monotonic() - started, status))
        if all(s[-1][1] in FINISHED for s in seen.values()):
            return seen
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"jobs not finished after {timeout_s:.0f} s: {seen}")
        time.sleep(0.05)


def run(ctx: DemoContext) -> StepReport:
    from skyline.cluster.control import ControlConfig
    from skyline.cluster.server import ServerConfig, ServerThread

    config = ServerConfig(state_dir=ctx.out_dir / "state", port=0, control=ControlConfig(tick_s=0.2))
    with ServerThread(config) as server, demo_node(ctx, server) as (admin, _):
        steps = 40 if ctx.quick else 200
        ddp = admin.submit({
            "name": "ddp-linear", "kind": "training", "replicas": 2, "cpus": 1, "memory_mib": 1024,
            "command": f"{sys.executable} -m skyline.cluster.ddp_example --steps {steps}",
        })  # fmt: skip
        batch = admin.submit({
            "name": "batch-primes", "cpus": 1,
            "command": f"{sys.executable} -c \"print('primes below 10000:', "
            "sum(all(n % d for d in range(2, int(n ** 0.5) + 1)) for n in range(2, 10000)))\"",
        })  # fmt: skip
        history = _watch(admin, [ddp, batch], timeout_s=240)
        jobs = [admin.job(j["id"]) for j in (ddp, batch)]
        logs = {j["id"]: [ln["line"] for ln in admin.logs(j["id"])["lines"]] for j in jobs}
        nodes = admin.nodes()
    rows = []
    for job in jobs:
        states = " → ".join(f"{status} ({at:.1f} s)" for at, status in history[job["id"]])
        rows.append(f"| {job['name']} | {job['replicas']} | {states} | {job['exit_code']} |")
    ddp_last = [ln for ln in logs[ddp["id"]] if ln.startswith("rank")]
    summary = "\n".join(
        [
            f"A control plane on SQLite ({server.url}) with one node agent (`{nodes[0]['id']}`): a torch DDP job "
            "(2 replicas, gloo, `RANK`/`WORLD_SIZE`/`MASTER_ADDR`/`MASTER_PORT` set by the control plane) and a "
            "batch job, submitted through the REST API and watched to completion.",
            "",
            "| job | replicas | states seen (time since submit) | exit code |",
            "|---|---|---|---|",
            *rows,
            "",
            "DDP replicas reported: " + "; ".join(f"`{ln}`" for ln in ddp_last),
            "",
            "Batch job printed: " + "; ".join(f"`{ln}`" for ln in logs[batch["id"]]),
        ]
    )
    return StepReport(
        title="Live control plane: DDP gang and batch job",
        summary=summary,
        metrics={
            "ddp_status": jobs[0]["status"],
            "batch_status": jobs[1]["status"],
            "ddp_seconds": round(jobs[0]["finished_at"] - jobs[0]["submitted_at"], 2),
            "batch_seconds": round(jobs[1]["finished_at"] - jobs[1]["submitted_at"], 2),
        },
    )
