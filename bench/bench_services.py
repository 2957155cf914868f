"""Services benchmark: a day of Alibaba GenAI request rates replayed live against an autoscaled service.

Trace: ``../shared/data/load/alibaba-genai-2026/qps.csv`` (22.1 h of per-container QPS sampled every 57 s;
summed over containers, put on a 1-minute grid), time-compressed ``FACTOR`` times (a trace minute lasts
60 / FACTOR live seconds) and scaled so that its peak is ``PEAK_RPS`` live requests per second.

Setup: ``skyline cluster up`` (with its local agent) in a subprocess; each setting deploys one service whose
replicas run ``bench/services_replica.py``: skyline serve's OIP app over the small MLP, one inference at a
time, each holding the replica ``SERVICE_MS`` (capacity 1000 / SERVICE_MS requests/s per replica whatever
the cores do — see that file), one request at a time per replica at the gateway (``max_concurrency`` 1),
between 1 and ``MAX_REPLICAS`` replicas, autoscaling every ``STEP_S`` with ``target_rps_per_replica``
``TARGET_RPS`` (scale-down stabilised over 3 steps, no scale-down within ``COOLDOWN_S`` of a scale-up).
Settings, on the same replay one after the other: predictive (gbdt forecaster refitted every live minute,
P90 over the measured start-up lead, a reactive floor at 100% of the target), reactive (HPA-like) at 50%
and 80% of the target, static
(sized for the day's P95, in hindsight). Measured per setting: SLO attainment (share of requests answered
200 within ``SLO_MS``, at the client, from when each was due), failed requests, replica-seconds (each
replica from its creation to its retirement), and what the replay autoscaler (`simulate`, same
autoscaler, the lead measured live) predicts on the demand the gateway observed.

Gateway overhead: one `skyline serve` MLP replica (no pacing), closed loop from a separate process,
direct vs through the gateway vs through ``tcp_relay.py`` (a relay that parses nothing: the floor of any
proxy hop), rounds interleaved, in two layouts (``LAYOUTS``: every process on both cores; the replica on a
core of its own and the rest on the other): added p50 at 1 client, throughput ratio at 32. Each round also
reads the CPU time (user and kernel, from /proc) that the load generator, the replica, the relay and the
control-plane process (the gateway's home) spent per request, and the replica's mean batch size (from its
/metrics): where the cost of a hop goes. ``SKYLINE_BENCH_SERVICES_PARTS=gateway`` runs only this part
(recorded as ``services-gateway``).
LLM: two `skyline llm serve` replicas (SmolLM2-135M) behind the gateway, 12 conversations of 4 turns
sharing growing prefixes, with and without affinity by a session header: the share of prompt tokens
found in the replicas' prefix caches (``SKYLINE_BENCH_SERVICES_LLM=0`` skips it). The LLM is not in the
autoscaling replay: on 2 cores its replicas' capacity is set by the cores, not by how many there are.

``SKYLINE_BENCH_QUICK=1``: the day in ~2 minutes per setting, two settings, one overhead round; not recorded.
``SKYLINE_BENCH_SERVICES_FACTOR`` and ``SKYLINE_BENCH_SERVICES_SETTINGS`` (comma-separated) override the
compression and the settings (for exploring; the recorded run uses the defaults).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

for _name, _value in {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_name, _value)

import numpy as np  # noqa: E402

from bench.cpus import pin, pin_tree  # noqa: E402
from bench.record import record  # noqa: E402
from skyline.cluster.autoscale_loop import build_autoscaler, lead_steps_of, scaling_target  # noqa: E402
from skyline.cluster.client import ClusterClient  # noqa: E402
from skyline.cluster.service_client import ServiceClient  # noqa: E402
from skyline.cluster.service_load import replay  # noqa: E402
from skyline.cluster.service_spec import service_from_mapping  # noqa: E402
from skyline.core.net import free_port  # noqa: E402
from skyline.scheduling.autoscaling import ScalingTarget, StaticAutoscaler, simulate  # noqa: E402
from skyline.scheduling.forecasting import Series  # noqa: E402
from skyline.serving.batching import BatchingConfig  # noqa: E402
from skyline.serving.loadgen import scrape_batches  # noqa: E402
from skyline.serving.repository import ModelRepository  # noqa: E402
from skyline.serving.samples import write_mlp_onnx  # noqa: E402

QUICK = os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
TRACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "load" / "alibaba-genai-2026" / "qps.csv"
# Trace seconds per live second: 22.1 h → 2.2 min (quick) / 6 min; SKYLINE_BENCH_SERVICES_FACTOR overrides.
FACTOR = float(os.environ.get("SKYLINE_BENCH_SERVICES_FACTOR", 600.0 if QUICK else 220.0))
PEAK_RPS, SERVICE_MS, TARGET_RPS, SLO_MS = 60.0, 100.0, 8.0, 500.0
# One decision a second (the telemetry interval): at 220x a live second is 3.7 trace minutes, already far
# coarser than an HPA's 15 s sync on the real clock.
MIN_REPLICAS, MAX_REPLICAS, STEP_S, COOLDOWN_S = 1, 10, 1.0, 6.0
_CHOSEN = os.environ.get("SKYLINE_BENCH_SERVICES_SETTINGS", "")
SETTINGS = (
    tuple(_CHOSEN.split(","))
    if _CHOSEN
    else (
        ("predictive", "reactive-0.8") if QUICK else ("predictive", "reactive-0.5", "reactive-0.8", "static")
    )
)
OVERHEAD_ROUNDS = 1 if QUICK else 5
BODY = json.dumps(
    {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
).encode()
INFER = "/v2/models/mlp/infer"


def day_of_rates() -> np.ndarray:
    """Cluster QPS on a 1-minute grid over the trace (generative requests, summed over containers)."""
    import pandas as pd

    frame = pd.read_csv(TRACE)
    qps = frame[frame.request_type == "Generative Requests"].groupby("timestamp_anon").value.sum()
    qps.index = pd.to_datetime(qps.index, unit="s")
    grid = qps.resample("60s").mean().interpolate(limit_direction="both")
    return grid.to_numpy(dtype=float)


class ControlPlane:
    """``skyline cluster up`` in a subprocess, with its local agent; ``url``, ``token``, ``gateway``."""

    def __init__(self, folder: Path) -> None:
        self.gateway_port = free_port()
        args = [sys.executable, "-m", "skyline.cli.app", "cluster", "up", "--state-dir", str(folder / "state"),
                "--port", "0", "--gateway-port", str(self.gateway_port), "--heartbeat-s", "0.2", "--tick-s", "0.2"]  # fmt: skip
        self.out = folder / "cluster-up.out"
        self.process = subprocess.Popen(args, stdout=self.out.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not re.search(r"sky_\S+", text := self.out.read_text()) or "gateway" not in text:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"cluster up did not start: {text}")
            time.sleep(0.2)
        self.url = re.search(r"http://127\.0\.0\.1:\d+", text).group(0)  # type: ignore[union-attr]
        self.token = re.search(r"sky_\S+", text).group(0)  # type: ignore[union-attr]
        self.gateway = f"http://127.0.0.1:{self.gateway_port}"

    def services(self) -> ServiceClient:
        return ServiceClient(ClusterClient(self.url, self.token, timeout_s=30))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def _spec(name: str, setting: str, command: str, static_units: int) -> dict[str, Any]:
    autoscale: dict[str, Any] = {"mode": "off"}
    if setting == "predictive":  # its reactive floor sizes for the demand just seen at the SLO-safe rate
        autoscale = {
            "mode": "predictive",
            "forecaster": "gbdt",
            "target_utilisation": 1.0,
            "refit_every_steps": 60,  # a live minute
        }
    elif setting.startswith("reactive"):
        autoscale = {"mode": "reactive", "target_utilisation": float(setting.split("-")[1])}
    if autoscale["mode"] != "off":
        autoscale |= {"target_rps_per_replica": TARGET_RPS, "step_s": STEP_S, "cooldown_s": COOLDOWN_S}
    replicas = static_units if setting == "static" else MIN_REPLICAS
    return {"name": name, "command": command, "cpus": 0.1, "memory_mib": 200, "replicas": replicas,
            "min_replicas": replicas if setting == "static" else MIN_REPLICAS, "max_replicas": MAX_REPLICAS,
            "slo_p99_ms": SLO_MS, "autoscale": autoscale,
            "routing": {"max_concurrency": 1, "queue_limit": 10_000, "hold_s": 60.0}}  # fmt: skip


def _observed_series(metrics: list[dict[str, Any]], start_s: float, end_s: float) -> Series:
    """Requests per autoscaling step (steps aligned as the loop aligns them) over [start_s, end_s)."""
    first = math.ceil(start_s / STEP_S) * STEP_S
    steps = int((end_s - first) // STEP_S)
    values = np.zeros(steps)
    for row in metrics:
        k = math.ceil((row["at_s"] - first) / STEP_S - 1e-9) - 1
        if 0 <= k < steps:
            values[k] += row["requests"]
    return Series.of(values, step_s=STEP_S, start_s=first)


def _predicted(
    setting: str, spec: dict[str, Any], series: Series, lead_s: float, static_units: int
) -> dict[str, Any]:
    """What the replay autoscaler predicts on the demand the gateway observed."""
    parsed = service_from_mapping(spec)
    if setting == "static":  # the same capacity per replica as the autoscaled settings
        autoscaler: Any = StaticAutoscaler(units=static_units)
        target = ScalingTarget(capacity_per_step=TARGET_RPS * STEP_S, startup_s=lead_s, min_units=static_units,
                               max_units=MAX_REPLICAS)  # fmt: skip
    else:
        autoscaler = build_autoscaler(parsed.autoscale, lead_steps=lead_steps_of(lead_s, STEP_S))
        target = scaling_target(parsed, lead_s=lead_s)
    result = simulate(series, autoscaler, target, start_step=1)
    served = np.minimum(series.values[1:], result.capacity)
    return {
        "replica_seconds": float(result.units.sum() * STEP_S),
        "steps_over_capacity": result.slo_violations,
        "demand_share_within_capacity": float(served.sum() / max(series.values[1:].sum(), 1.0)),
    }


def run_setting(
    cp: ControlPlane, setting: str, command: str, rates: np.ndarray, live_step_s: float
) -> dict[str, Any]:
    static_units = math.ceil(float(np.percentile(rates, 95)) / TARGET_RPS)
    name = f"svc-{setting.replace('.', '')}"
    spec = _spec(name, setting, command, static_units)
    with cp.services() as services:
        services.deploy(spec)
        services.wait_ready(name, timeout_s=120)
        before = services.status(name)["replica_seconds"]
        started = time.time()
        load_avg = os.getloadavg()[0]
        log = asyncio.run(replay(cp.gateway, path=f"/services/{name}{INFER}", body=BODY,
                                 rates_rps=rates.tolist(), step_s=live_step_s))  # fmt: skip
        ended = time.time()
        status = services.status(name)
        metrics = services.metrics(name, since_s=started - 1)
        decisions = services.decisions(name, limit=100_000)
        startups = [r["ready_at"] - r["created_at"] for r in status["replicas"] if r["ready_at"]]
        services.delete(name)
        services.wait_gone(name, timeout_s=120)
    lead_s = statistics.median(startups) if startups else 2.0
    series = _observed_series(metrics, started, ended)
    live_steps = [m for m in metrics if m["p99_ms"] is not None]
    return {
        "live": log.summary(slo_s=SLO_MS / 1000)
        | {
            "replica_seconds": status["replica_seconds"] - before,
            "decisions": len(decisions),
            "lead_s_measured": lead_s,
            "windows_over_slo_p99": sum(m["p99_ms"] > SLO_MS for m in live_steps),
            "load_average_1min_at_start": round(load_avg, 2),
        },
        "replay_prediction": _predicted(setting, spec, series, lead_s, static_units),
        "replicas_over_time": [(d["at_s"] - started, d["target"]) for d in decisions if d["at_s"] >= started],
        "demand_per_step": series.values.tolist(),
    }


def _listener_pid(port: int) -> int:
    """The process listening on 127.0.0.1:``port`` (the replica the control plane started)."""
    import psutil

    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid is not None:
            return int(conn.pid)
    raise RuntimeError(f"no process listens on port {port}")


def _cpu_times(pid: int) -> tuple[float, float]:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user, times.system


# Where the processes of the overhead part run: all on both cores (the replica, the gateway and the load
# generator contend for them), or the replica on a core of its own and the rest on the other — as on a
# cluster, where the gateway lives on the control plane's node and does not take the replica's CPU.
LAYOUTS = ("shared_cores", "replica_own_core")
ALL_CPUS = sorted(os.sched_getaffinity(0))


def overhead(cp: ControlPlane, repo: Path) -> dict[str, Any]:
    """Direct vs through the gateway, closed loop from a separate process, rounds interleaved, in each
    layout; with each side's CPU per request (user and kernel) read around every round."""
    command = (
        f"{sys.executable} -m skyline.cli.app serve --repo {repo} --port $PORT --insecure-no-auth-local-only"
    )
    with cp.services() as services:
        services.deploy({"name": "mlp", "command": command, "cpus": 0.1})
        (replica,) = services.wait_ready("mlp", timeout_s=120)["replicas"]
        relay_port = free_port()
        relay = subprocess.Popen([sys.executable, str(Path(__file__).with_name("tcp_relay.py")), "--port",
                                  str(relay_port), "--to", f"127.0.0.1:{replica['port']}"], stdout=subprocess.PIPE)  # fmt: skip
        assert relay.stdout is not None and relay.stdout.readline().startswith(b"relay ready")
        pids = {
            "control_plane_with_gateway": cp.process.pid,
            "replica": _listener_pid(replica["port"]),
            "tcp_relay": relay.pid,
        }
        targets = {
            "direct": (f"http://127.0.0.1:{replica['port']}", INFER),
            "gateway": (cp.gateway, "/services/mlp" + INFER),
            "tcp_relay": (f"http://127.0.0.1:{relay_port}", INFER),
        }
        layouts = {}
        try:
            for layout in LAYOUTS:
                layouts[layout] = _lay_out(layout, pids) | _overhead_rounds(targets, pids)
        finally:
            _lay_out("shared_cores", pids)
            relay.terminate()
            relay.wait(timeout=10)
        services.delete("mlp")
        services.wait_gone("mlp", timeout_s=60)
    return layouts


def _lay_out(layout: str, pids: dict[str, int]) -> dict[str, Any]:
    if layout == "shared_cores" or len(ALL_CPUS) < 2:
        replica = rest = set(ALL_CPUS)
    else:
        replica, rest = set(ALL_CPUS[:1]), set(ALL_CPUS[1:])
    pin_tree(pids["control_plane_with_gateway"], rest)
    pin_tree(pids["tcp_relay"], rest)
    pin(os.getpid(), rest)  # and so the load generators it starts
    pin_tree(pids["replica"], replica)  # after the control plane's tree, which holds it
    return {"cpus": {"replica": sorted(replica), "everything_else": sorted(rest)}}


def _overhead_rounds(targets: dict[str, tuple[str, str]], pids: dict[str, int]) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {f"{k}-c{c}": [] for k in targets for c in (1, 32)}
    kinds = list(targets)
    for r in range(OVERHEAD_ROUNDS):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:  # each kind first in turn
            for clients, seconds in ((1, 4.0), (32, 5.0)):
                before = {name: _cpu_times(pid) for name, pid in pids.items()}
                batches_before = asyncio.run(scrape_batches(targets["direct"][0], "mlp"))
                result = _load(*targets[kind], clients, seconds)
                batches_after = asyncio.run(scrape_batches(targets["direct"][0], "mlp"))
                after = {name: _cpu_times(pid) for name, pid in pids.items()}
                if batches_before and batches_after:  # what the replica's dynamic batcher formed
                    rows, runs = (a - b for a, b in zip(batches_after, batches_before, strict=True))
                    result["batch_size_mean"] = rows / runs if runs else None
                per_request = 1e6 / result["requests"]
                result["cpu_us_per_request"] = {
                    name: {
                        "user": (after[name][0] - before[name][0]) * per_request,
                        "system": (after[name][1] - before[name][1]) * per_request,
                    }
                    for name in pids
                } | {"load_generator": {"user_and_system": result["client_cpu_s"] * per_request}}
                rounds[f"{kind}-c{clients}"].append(result)
    med = {
        k: {
            m: statistics.median(r[m] or 0 for r in v)
            for m in ("throughput_per_s", "latency_p50_ms", "batch_size_mean")
        }
        for k, v in rounds.items()
    }
    cpu = {k: _median_cpu(v) for k, v in rounds.items() if k.endswith("c32")}
    gateway = cpu["gateway-c32"]["control_plane_with_gateway"]
    idle = cpu["direct-c32"]["control_plane_with_gateway"]
    return {
        "rounds": rounds, "medians": med,
        "added_p50_ms_c1": med["gateway-c1"]["latency_p50_ms"] - med["direct-c1"]["latency_p50_ms"],
        "throughput_ratio_c32": med["gateway-c32"]["throughput_per_s"] / med["direct-c32"]["throughput_per_s"],
        "tcp_relay_throughput_ratio_c32": med["tcp_relay-c32"]["throughput_per_s"] / med["direct-c32"]["throughput_per_s"],
        "gateway_vs_tcp_relay_throughput_c32": med["gateway-c32"]["throughput_per_s"] / med["tcp_relay-c32"]["throughput_per_s"],
        "cpu_us_per_request_c32": cpu,
        "gateway_added_cpu_us_per_request_c32": {
            "user": gateway["user"] - idle["user"], "system": gateway["system"] - idle["system"],
        },
        "direct_total_cpu_us_per_request_c32": sum(sum(p.values()) for p in cpu["direct-c32"].values()),
    }  # fmt: skip


def _summary(gateway: dict[str, Any]) -> dict[str, Any]:
    return {layout: {k: v for k, v in part.items() if k != "rounds"} for layout, part in gateway.items()}


def _median_cpu(rounds: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    first = rounds[0]["cpu_us_per_request"]
    return {
        name: {kind: statistics.median(r["cpu_us_per_request"][name][kind] for r in rounds) for kind in parts}
        for name, parts in first.items()
    }


def _load(url: str, path: str, clients: int, seconds: float) -> dict[str, Any]:
    code = ("import asyncio, json, sys; from skyline.serving.loadgen import run_load; "
            "r = asyncio.run(run_load(sys.argv[1], path=sys.argv[2], body=sys.stdin.buffer.read(), "
            "concurrency=int(sys.argv[3]), duration_s=float(sys.argv[4]))); print(json.dumps(r.to_json()))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code, url, path, str(clients), str(seconds)], input=BODY,
                         capture_output=True, check=True)  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def llm_affinity(cp: ControlPlane) -> dict[str, Any]:
    """Two `skyline llm serve` replicas (SmolLM2-135M, one thread each) behind the gateway: conversations
    whose turns share a growing prefix, with and without affinity by a session header. The share of
    prompt tokens the replicas found in their prefix caches (``usage.prompt_tokens_details``) and the
    latency per turn tell what keeping a conversation on one replica is worth."""
    command = (f"{sys.executable} -m skyline.cli.app llm serve --port $PORT --insecure-no-auth-local-only "
               "--threads 1 --kv-blocks 512 --max-num-seqs 8")  # fmt: skip
    spec = {"name": "llm", "command": command, "cpus": 0.5, "memory_mib": 1500, "replicas": 2, "max_replicas": 2,
            "readiness": "/health/ready", "startup_timeout_s": 600.0}  # fmt: skip
    results: dict[str, Any] = {}
    with cp.services() as services:
        services.deploy(spec)
        services.wait_ready("llm", timeout_s=600)
        for setting, header in (("least-outstanding", None), ("affinity", "X-Session")):
            services.update("llm", {"routing": {"affinity_header": header}})
            time.sleep(1.0)  # the controller publishes the new routing within a pass
            results[setting] = asyncio.run(_conversations(cp.gateway, setting))
        services.delete("llm")
        services.wait_gone("llm", timeout_s=120)
    return results


async def _conversations(gateway: str, setting: str, *, count: int = 12, turns: int = 4) -> dict[str, Any]:
    import httpx

    async def talk(client: httpx.AsyncClient, conv: int) -> list[tuple[int, int, float]]:
        system = f"Conversation {setting}-{conv}. " + " ".join(
            f"Fact {conv}.{i}: skyline runs services." for i in range(24)
        )
        messages, out = [{"role": "system", "content": system}], []
        think = random.Random(conv)  # a person reads each answer: meanwhile others' turns move the load
        for turn in range(turns):
            await asyncio.sleep(think.uniform(0.0, 2.0))
            messages.append({"role": "user", "content": f"Question {turn}: what is fact {conv}.{turn}?"})
            started = time.perf_counter()
            answer = await client.post(f"{gateway}/services/llm/v1/chat/completions", headers={"X-Session": f"c{conv}"},
                                       json={"model": "smollm2-135m", "messages": messages, "max_tokens": 4})  # fmt: skip
            body = answer.json()
            usage = body["usage"]
            out.append(
                (
                    usage["prompt_tokens"],
                    usage["prompt_tokens_details"]["cached_tokens"],
                    time.perf_counter() - started,
                )
            )
            messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
        return out

    async with httpx.AsyncClient(timeout=300) as client:
        turns_seen = [
            t for conv in await asyncio.gather(*(talk(client, c) for c in range(count))) for t in conv
        ]
    prompt, cached = sum(t[0] for t in turns_seen), sum(t[1] for t in turns_seen)
    return {"requests": len(turns_seen), "prompt_tokens": prompt, "cached_tokens": cached,
            "cached_share": cached / max(prompt, 1),
            "latency_p50_ms": float(np.percentile([t[2] for t in turns_seen], 50) * 1000)}  # fmt: skip


def _plot(results: dict[str, Any], rates: np.ndarray, live_step_s: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    minutes = np.arange(len(rates)) * live_step_s
    ax.fill_between(
        minutes, rates / TARGET_RPS, step="post", alpha=0.2, label="demand / target rps per replica"
    )
    for setting, outcome in results.items():
        points = outcome["replicas_over_time"]
        if points:
            ax.step([p[0] for p in points], [p[1] for p in points], where="post", label=setting)
    ax.set_xlabel("seconds into the replay")
    ax.set_ylabel("replicas")
    ax.set_title(f"Alibaba GenAI day, {FACTOR:g}x faster: replicas per setting")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _targets(settings: dict[str, Any], gateway: dict[str, Any]) -> dict[str, bool]:
    pred = settings.get("predictive", {}).get("live", {})
    own = gateway["replica_own_core"]
    meets = [
        s["live"]["replica_seconds"]
        for k, s in settings.items()
        if k.startswith("reactive") and s["live"]["slo_attainment"] >= 0.99
    ]
    live_vs_replay = [
        abs(s["live"]["replica_seconds"] / s["replay_prediction"]["replica_seconds"] - 1)
        for s in settings.values()
    ]
    return {
        "predictive_slo_ge_99pct": pred.get("slo_attainment", 0) >= 0.99,
        "predictive_fewer_replica_seconds_than_every_reactive_meeting_slo": all(pred.get("replica_seconds", math.inf) < m for m in meets),
        "live_within_10pct_of_replay_replica_seconds": all(d <= 0.10 for d in live_vs_replay),
        # The gateway's targets in the layout a cluster has: the replica's core is not the gateway's.
        "gateway_added_p50_le_0_5_ms": own["added_p50_ms_c1"] <= 0.5,
        "gateway_throughput_ge_90pct_direct": own["throughput_ratio_c32"] >= 0.9,
    }  # fmt: skip


def main() -> None:
    base = day_of_rates()
    rates = base / base.max() * PEAK_RPS
    live_step_s = 60.0 / FACTOR
    with tempfile.TemporaryDirectory(prefix="bench-services-") as tmp:
        folder = Path(tmp)
        (folder / "repo").mkdir()
        repo = ModelRepository(folder / "repo")
        repo.add(write_mlp_onnx(folder / "mlp.onnx"), name="mlp", version=1,
                 batching=BatchingConfig(max_batch_size=32, max_queue_delay_ms=2.0))  # fmt: skip
        paced = f"{sys.executable} {Path(__file__).with_name('services_replica.py')} --repo {folder / 'repo'} --port $PORT --service-ms {SERVICE_MS:g}"
        cp = ControlPlane(folder)
        if os.environ.get("SKYLINE_BENCH_SERVICES_PARTS", "") == "gateway":
            try:
                gateway = overhead(cp, folder / "repo")
            finally:
                cp.stop()
            print(json.dumps(_summary(gateway), indent=2))
            print(
                "quick run: not recorded"
                if QUICK
                else record("services-gateway", {"gateway_overhead": gateway})
            )
            return
        try:
            gateway = overhead(cp, folder / "repo")
            print("gateway overhead", _summary(gateway), flush=True)
            llm = llm_affinity(cp) if os.environ.get("SKYLINE_BENCH_SERVICES_LLM", "1") != "0" else {}
            print("llm affinity", llm, flush=True)
            settings = {}
            for setting in SETTINGS:
                settings[setting] = run_setting(cp, setting, paced, rates, live_step_s)
                print(setting, settings[setting]["live"], settings[setting]["replay_prediction"], flush=True)
        finally:
            cp.stop()
    plot = _plot(settings, rates, live_step_s, Path("runs/bench-services/replicas.png"))
    results = {
        "setup": {"trace": "alibaba-genai-2026/qps.csv (generative requests, summed over containers, 1-min grid)",
                  "trace_hours": round(len(rates) / 60, 2), "compression_factor": FACTOR,
                  "live_seconds_per_setting": round(len(rates) * live_step_s, 1), "peak_rps": PEAK_RPS,
                  "service_ms": SERVICE_MS, "replica_capacity_rps": 1000 / SERVICE_MS, "target_rps_per_replica": TARGET_RPS,
                  "slo_ms": SLO_MS, "replicas": [MIN_REPLICAS, MAX_REPLICAS], "step_s": STEP_S, "cooldown_s": COOLDOWN_S,
                  "plot": str(plot)},
        "gateway_overhead": gateway, "llm_affinity": llm, "settings": settings,
        "targets": _targets(settings, gateway),
    }  # fmt: skip
    print(json.dumps(results["targets"], indent=2))
    if QUICK:
        print("quick run: not recorded")
    else:
        print(record("services", results))
