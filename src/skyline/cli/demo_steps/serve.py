"""Demo step: serve the compressed models (and a small MLP) over OIP v2, load them, hot-reload one."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from skyline.cli.demo import DemoContext, StepReport

_MAX_COMPRESSED = 3


def _pack_models(ctx: DemoContext, repo_root: Path) -> tuple[Any, list[str]]:
    from skyline.errors import SkylineError
    from skyline.serving.batching import BatchingConfig
    from skyline.serving.repository import ModelRepository
    from skyline.serving.samples import write_mlp_onnx

    shutil.rmtree(repo_root, ignore_errors=True)  # this step's own output from an earlier run
    repo_root.mkdir(parents=True)
    repo = ModelRepository(repo_root)
    batching = BatchingConfig(max_batch_size=32, max_queue_delay_ms=2.0)
    repo.add(write_mlp_onnx(ctx.out_dir / "mlp.onnx"), name="mlp", version=1, batching=batching)
    notes = []
    # The compress step (when it ran before this one) leaves its ONNX variants beside this step's folder.
    compressed = sorted((ctx.out_dir.parent / "compress").glob("*/variants/*.onnx"))[:_MAX_COMPRESSED]
    for path in compressed:
        name = f"{path.parent.parent.name}-{path.stem}"
        try:
            # Text models take token ids of any length: serve them at 32 tokens.
            repo.add(path, name=name, version=1, batching=batching, dynamic_size=32)
        except SkylineError as exc:  # a variant the server cannot describe (dynamic non-batch sizes)
            notes.append(f"{name}: not served ({exc})")
    if not compressed:
        notes.append("the compress step's models were absent (run it first); serving the MLP only")
    return repo, notes


async def _measure(
    url: str, models: list[str], quick: bool, repo: Any, ctx: DemoContext, token: str
) -> dict[str, Any]:
    from skyline.serving.loadgen import HttpConnection, fetch_metadata, run_load, synthesize_body
    from skyline.serving.samples import write_mlp_onnx

    seconds = 1.5 if quick else 4.0
    results: dict[str, Any] = {}
    auth = {"authorization": f"Bearer {token}"}
    for model in models:
        body = synthesize_body(await fetch_metadata(url, model, auth))
        path = f"/v2/models/{model}/infer"
        for concurrency in (1, 16):
            result = await run_load(
                url, path=path, body=body, concurrency=concurrency, duration_s=seconds, model=model,
                headers=auth,
            )  # fmt: skip
            results[f"{model}/c{concurrency}"] = result.to_json()
    # Hot reload under load: version 2 of the MLP replaces version 1 while 8 clients keep calling.
    body = synthesize_body(await fetch_metadata(url, "mlp", auth))
    load = asyncio.create_task(
        run_load(
            url,
            path="/v2/models/mlp/infer",
            body=body,
            concurrency=8,
            duration_s=seconds * 2,
            model="mlp",
            headers=auth,
        )
    )
    await asyncio.sleep(seconds / 2)
    repo.add(write_mlp_onnx(ctx.out_dir / "mlp-v2.onnx", seed=1), name="mlp", version=2)
    conn = HttpConnection(url)
    status, _ = await conn.request("POST", "/v2/repository/models/mlp/load", headers=auth)
    await conn.close()
    reload = (await load).to_json()
    reload["load_status"] = status
    results["hot-reload"] = reload
    return results


def _plot(results: dict[str, Any], models: list[str], path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for offset, concurrency in ((-width / 2, 1), (width / 2, 16)):
        values = [results[f"{m}/c{concurrency}"]["throughput_per_s"] for m in models]
        bars = ax.bar(
            [i + offset for i in range(len(models))], values, width, label=f"{concurrency} client(s)"
        )
        for bar, model in zip(bars, models, strict=True):
            mean = results[f"{model}/c{concurrency}"]["batch_size_mean"] or 0
            ax.annotate(
                f"b={mean:.1f}",
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(range(len(models)), models, fontsize=8)
    ax.set_ylabel("requests / s")
    ax.set_title("skyline serve: throughput and realized batch size (b)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(ctx: DemoContext) -> StepReport:
    from skyline.security.tokens import TokenAuthority
    from skyline.serving.app import create_app
    from skyline.serving.server import BackgroundServer

    repo, notes = _pack_models(ctx, ctx.out_dir / "repo")
    models = repo.models()
    # As `skyline serve` does by default: bearer tokens required, the first admin token bootstrapped.
    authority = TokenAuthority(ctx.out_dir / "tokens.json")
    token = authority.bootstrap_admin() or authority.issue("demo", "admin")
    with BackgroundServer(create_app(repo, authority=authority)) as server:
        results = asyncio.run(_measure(server.url, models, ctx.quick, repo, ctx, token))
    figure = _plot(results, models, ctx.out_dir / "serve.png")
    rows = [
        f"| {m} | {c} | {results[f'{m}/c{c}']['throughput_per_s']:.0f} | {results[f'{m}/c{c}']['latency_p50_ms']:.2f} | "
        f"{results[f'{m}/c{c}']['latency_p99_ms']:.2f} | {results[f'{m}/c{c}']['batch_size_mean'] or 0:.1f} | "
        f"{results[f'{m}/c{c}']['errors']} |"
        for m in models
        for c in (1, 16)
    ]
    reload = results["hot-reload"]
    summary = "\n".join(
        [
            f"`skyline serve` loaded {len(models)} model(s) from a repository (sha256-checked manifests, warm-up "
            "before ready) and answered Open Inference Protocol v2 requests with dynamic batching "
            "(max batch 32, 2 ms window, adaptive). Closed-loop load, one connection per client, on a shared machine:",
            "",
            "| model | clients | req/s | p50 ms | p99 ms | mean batch | errors |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Hot reload of `mlp` to version 2 under 8 clients: load answered {reload['load_status']}, "
            f"**{reload['errors']} failed** of {reload['requests']} requests.",
            *(f"- {n}" for n in notes),
        ]
    )
    return StepReport(
        title="Serving: OIP v2 with dynamic batching", summary=summary, figures=(figure,), metrics=results
    )
