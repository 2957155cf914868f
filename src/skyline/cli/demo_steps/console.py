"""Demo step: the web console of a live control plane, photographed in headless Chromium.

A control plane with one node agent runs a few jobs (one succeeds, one fails, one runs, one waits for
room); the step signs in to ``/ui`` with the admin token and saves a screenshot of each main view.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from skyline.cli.demo import DemoContext, StepReport
from skyline.cli.demo_steps.node import demo_node

VIEWS = (
    ("overview", "/ui/", "Overview: jobs by state, nodes by tier, live utilization"),
    ("jobs", "/ui/jobs", "Jobs: filtered, paged table, live states"),
    ("job", "/ui/jobs/{ok}", "A job: timeline, replicas, logs"),
    ("nodes", "/ui/nodes", "Nodes"),
    ("node", "/ui/nodes/demo-node", "A node: utilization history, replicas"),
    ("scheduling", "/ui/scheduling", "Scheduling: the policy and the waiting queue"),
    ("models", "/ui/models", "Models"),
    ("audit", "/ui/audit", "Audit: the hash-chained log, verified"),
)


PRIMES = (
    "import time\n"
    "for n in (10, 100, 1000, 10000):\n"
    "    print(n, sum(all(k % d for d in range(2, int(k ** 0.5) + 1)) for k in range(2, n)), flush=True)\n"
    "    time.sleep(0.3)"
)


def _submit_jobs(admin: Any) -> dict[str, dict[str, Any]]:
    prime_counts = {"name": "count-primes", "cpus": 0.5, "command": f'{sys.executable} -c "{PRIMES}"'}
    return {
        "ok": admin.submit(prime_counts),
        "failed": admin.submit({"name": "bad-config", "cpus": 0.5, "command": "echo missing --data; exit 3"}),
        "running": admin.submit({"name": "train-long", "cpus": 1.5, "command": "sleep 600"}),
        "waiting": admin.submit({"name": "waits-for-room", "cpus": 2, "command": "sleep 1"}),
    }


def _repository(out: Path) -> tuple[Path, Path]:
    """A model repository for the Models view: an (untrained) 64-32-10 MLP exported to ONNX, version 1
    signed, version 2 not; returns the repository and the public key that verifies version 1."""
    import numpy as np
    import torch

    from skyline.security.signing import generate_signing_keys, sign_directory
    from skyline.serving.repository import ModelRepository
    from skyline.training.export import export_onnx

    root = out / "models"
    root.mkdir(parents=True, exist_ok=True)
    private, public = generate_signing_keys(out / "keys" / "signing.pem", out / "keys" / "signing.pub.pem")
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    onnx = export_onnx(model, {"input": np.zeros((2, 64), dtype=np.float32)}, out / "mlp.onnx")
    repository = ModelRepository(root)
    for version in (1, 2):
        if version not in repository.versions("digits-mlp"):
            repository.add(onnx, name="digits-mlp", version=version)
    sign_directory(repository.version_dir("digits-mlp", 1), private, version=1)
    return root, public


def _wait_states(admin: Any, jobs: dict[str, dict[str, Any]], timeout_s: float = 60) -> None:
    want = {"ok": "succeeded", "failed": "failed", "running": "running"}
    deadline = time.monotonic() + timeout_s
    while any(admin.job(jobs[k]["id"])["status"] != v for k, v in want.items()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"demo jobs did not reach {want} within {timeout_s:.0f} s")
        time.sleep(0.2)


def _screenshots(url: str, token: str, jobs: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    from skyline.cluster.console.browser import headless_chromium, sign_in

    shots = []
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        sign_in(page, url, token)
        page.wait_for_timeout(2500)  # a few live samples reach the charts
        for name, path, _ in VIEWS:
            page.goto(url + path.format(ok=jobs["ok"]["id"]))
            page.wait_for_timeout(1500 if name in ("overview", "node") else 500)  # charts draw, streams open
            shots.append(out / f"console-{name}.png")
            page.screenshot(path=str(shots[-1]), full_page=True)
    return shots


def run(ctx: DemoContext) -> StepReport:
    from skyline.cli.cluster import edge_fleet
    from skyline.cluster.control import ControlConfig
    from skyline.cluster.server import ServerConfig, ServerThread

    repository, public_key = _repository(ctx.out_dir)
    config = ServerConfig(
        state_dir=ctx.out_dir / "state", port=0, gateway_port=0, audit_log=ctx.out_dir / "audit.jsonl",
        control=ControlConfig(tick_s=0.2), model_repository=repository, trusted_keys=(public_key,),
        edge_fleet=edge_fleet(repository),
    )  # fmt: skip
    with ServerThread(config) as server, demo_node(ctx, server, cpus=2, heartbeat_s=0.5) as (admin, token):
        jobs = _submit_jobs(admin)
        _wait_states(admin, jobs)
        shots = _screenshots(server.url, token, jobs, ctx.out_dir)
        for key in ("running", "waiting"):
            admin.cancel(jobs[key]["id"])
    rows = [f"| {title} | `{shot.name}` |" for (_, _, title), shot in zip(VIEWS, shots, strict=True)]
    summary = "\n".join([
        f"The console at `{server.url}/ui/` (same process and port as the API), signed in with the admin token "
        "in headless Chromium, with four jobs on one node agent: one succeeded, one failed (exit code 3), one "
        "running and one waiting for room; a model repository with an (untrained) MLP exported to ONNX, "
        "version 1 signed and verified by the trusted key, version 2 unsigned.",
        "", "| view | screenshot |", "|---|---|", *rows,
    ])  # fmt: skip
    return StepReport(
        title="Web console", summary=summary, figures=tuple(shots), metrics={"screenshots": len(shots)}
    )
