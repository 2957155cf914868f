"""Edge–cloud collaboration benchmarks: cascade, split inference, uplink through an outage, federated learning.

Sections (all by default; ``SKYLINE_BENCH_EDGE=cascade,split`` picks some, and each run merges its sections
into bench/results/edge.json so long sections can run separately):

- cascade: digits, edge MLP vs cloud CNN, cascade calibrated on validation for 10% and 15% offload, seeds 0-1;
- split: the VGG-style network at 1, 10, 100 Mbit/s (RTT 10 ms), float32 and int8 activations; Neurosurgeon's
  choice vs the brute-force best measured through the emulated link;
- uplink: a worker process produces records while the link is down for ``SKYLINE_BENCH_OUTAGE_S`` seconds
  (default 600) and is SIGKILLed and restarted several times; then everything must arrive exactly once;
- fl: FedAvg, 10 clients, Dirichlet α = 0.5, 20 rounds, vs the same model trained centrally.

The machine is shared with other jobs while this runs: latencies are medians of interleaved repeats.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import RESULTS_DIR, record

SECTIONS = ("cascade", "split", "uplink", "fl")


def bench_cascade() -> dict[str, Any]:
    from skyline.edge.cascade_eval import CascadeEvalConfig, evaluate_cascade
    from skyline.edge.digit_models import train_digit_models

    runs = []
    for seed in (0, 1):
        models = train_digit_models(seed=seed, epochs=20)
        for target in (0.10, 0.15):
            result = evaluate_cascade(CascadeEvalConfig(target_offload=target, seed=seed), models=models)
            gap = (result["cloud_accuracy"] - result["cascade_accuracy"]) * 100
            runs.append({"seed": seed, "target_offload": target, **result, "gap_to_cloud_points": gap})
            print(f"cascade seed {seed} target {target}: {result} gap {gap:.2f} points")
    return {"runs": runs, "claim": "cascade within 0.5 points of the cloud model while offloading <= 15%"}


def bench_split() -> dict[str, Any]:
    from skyline.edge.split_eval import SplitEvalConfig, evaluate_split

    runs = []
    for int8 in (False, True):
        for bandwidth in (1.0, 10.0, 100.0):
            result = evaluate_split(
                SplitEvalConfig(bandwidth_mbps=bandwidth, rtt_ms=10.0, int8=int8, repeats=5)
            )
            details = result.pop("details")
            row = {
                "bandwidth_mbps": bandwidth,
                "int8": int8,
                **result,
                "matches_bruteforce": result["chosen_partition"] == result["best_partition_bruteforce"],
                "chosen_layer": details["layers"][result["chosen_partition"] - 1]
                if result["chosen_partition"]
                else "input",
                "measured_bandwidth_mbps": details["measured_bandwidth_mbps"],
                "measured_rtt_ms": details["measured_rtt_ms"],
                "predicted_ms": details["predicted_ms"],
                "measured_ms": details["measured_ms"],
            }
            runs.append(row)
            print(f"split {bandwidth} Mbit/s int8={int8}: {result}")
    return {"runs": runs, "rtt_ms": 10.0, "edge_slowdown": 10.0}


def _spawn(
    store: Path, url: str, token: str, records: int, interval_s: float, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "skyline.edge.uplink_worker", "--store", str(store), "--cloud", url,
        "--token", token, "--records", str(records), "--interval-s", str(interval_s),
    ]  # fmt: skip
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=out)


def bench_uplink() -> dict[str, Any]:
    from skyline.edge.background import BackgroundServer
    from skyline.edge.cloud_app import create_cloud_app, edge_authority
    from skyline.edge.ingest import IngestStore
    from skyline.edge.link import LinkConditions, LinkProxy
    from skyline.edge.uplink_store import UplinkStore

    outage_s = float(os.environ.get("SKYLINE_BENCH_OUTAGE_S", "600"))
    interval_s = 0.05  # 20 records/s produced on the edge
    records = int((outage_s + 30) / interval_s)
    rng, kills = random.Random(0), 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ingest = IngestStore(work / "cloud.db")
        authority, token = edge_authority(work / "tokens.json")
        app = create_cloud_app(ingest=ingest, authority=authority)
        with (
            BackgroundServer(app) as server,
            LinkProxy(server.port, LinkConditions(latency_ms=5, bandwidth_mbps=10)) as link,
        ):
            worker = _spawn(work / "edge.db", link.url, token, records, interval_s, work / "worker.log")
            time.sleep(10)  # ten seconds of normal operation first
            link.set_outage(True)
            outage_started = time.monotonic()
            max_queued = 0
            while time.monotonic() - outage_started < outage_s:
                time.sleep(
                    min(rng.uniform(0.1, 0.3) * outage_s, outage_s - (time.monotonic() - outage_started))
                )
                if worker.poll() is None and time.monotonic() - outage_started < outage_s:
                    os.kill(worker.pid, signal.SIGKILL)  # the agent dies mid-outage, queue on disk
                    worker.wait()
                    kills += 1
                    with UplinkStore(work / "edge.db") as store:
                        max_queued = max(max_queued, len(store))
                    worker = _spawn(
                        work / "edge.db", link.url, token, records, interval_s, work / "worker.log"
                    )
            link.set_outage(False)
            restored = time.monotonic()
            time.sleep(rng.uniform(0.5, 2.0))
            os.kill(worker.pid, signal.SIGKILL)  # and once more while it is sending the backlog
            worker.wait()
            kills += 1
            worker = _spawn(work / "edge.db", link.url, token, records, interval_s, work / "worker.log")
            code = worker.wait(timeout=outage_s + 600)
            drain_s = time.monotonic() - restored
        ids = ingest.ids()
        counters = ingest.counters()
        ingest.close()
    expected = {f"rec-{i}" for i in range(records)}
    result = {
        "outage_s": outage_s,
        "records_produced": records,
        "records_stored": len(ids),
        "lost": len(expected - set(ids)),
        "stored_twice": len(ids) - len(set(ids)),
        "duplicate_deliveries_dropped": counters["duplicates"],
        "sigkills": kills,
        "max_queued_during_outage": max_queued,
        "drain_after_outage_s": drain_s,
        "worker_exit_code": code,
    }
    print(f"uplink: {result}")
    return result


FL_VARIANTS: dict[str, dict[str, Any]] = {
    "fedavg_alpha_0.5_10_clients": {"strategy": "fedavg"},
    "fedprox_mu_0.01_alpha_0.5_10_clients": {"strategy": "fedprox", "proximal_mu": 0.01},
    "fedavg_dp_epsilon_8_alpha_0.5_10_clients": {
        "strategy": "fedavg",
        "dp_epsilon": 8.0,
        "clipping_norm": 1.0,
    },
}


def bench_fl() -> dict[str, Any]:
    """Each variant: 10 clients, Dirichlet α = 0.5, 20 rounds. ``SKYLINE_BENCH_FL`` picks variants (names
    above, comma-separated); results of variants not run are kept from the previous file."""
    from skyline.federated.apps import FederatedConfig
    from skyline.federated.simulation import run_federated

    path = RESULTS_DIR / "edge.json"
    previous = json.loads(path.read_text())["results"].get("fl", {}) if path.exists() else {}
    chosen = os.environ.get("SKYLINE_BENCH_FL", ",".join(FL_VARIANTS)).split(",")
    results = dict(previous)
    for name in chosen:
        started = time.monotonic()
        config = FederatedConfig(clients=10, rounds=20, alpha=0.5, **FL_VARIANTS[name])
        result = run_federated(config, quiet=True)
        result["seconds"] = time.monotonic() - started
        result["ratio_to_centralized"] = result["final_accuracy"] / result["centralized_accuracy"]
        print(f"fl {name}: {result}")
        results[name] = result
    return results


def main() -> None:
    chosen = [s for s in os.environ.get("SKYLINE_BENCH_EDGE", ",".join(SECTIONS)).split(",") if s]
    path = RESULTS_DIR / "edge.json"
    runners = {"cascade": bench_cascade, "split": bench_split, "uplink": bench_uplink, "fl": bench_fl}
    for section in chosen:
        value = runners[section]()
        # Re-read just before writing: other sections may have been recorded by a parallel run meanwhile.
        results: dict[str, Any] = json.loads(path.read_text())["results"] if path.exists() else {}
        results[section] = value
        results["note"] = (
            "shared 2-core machine (other jobs running); latencies are medians of interleaved repeats"
        )
        print(f"recorded {record('edge', results)}")


if __name__ == "__main__":
    main()
