"""Edge–cloud collaboration benchmarks: cascade, split inference, uplink through an outage, federated learning.

Sections (all by default; ``SKYLINE_BENCH_EDGE=cascade,split`` picks some, and each run merges its sections
into bench/results/edge.json so long sections can run separately):

- cascade: digits, edge MLP vs cloud CNN, cascade calibrated on validation for 10% and 15% offload, seeds 0-1;
- split: two networks (split-vgg: most work before its activations shrink; split-patchify: a cheap stem that
  shrinks the input first) at 1, 10, 100 Mbit/s (RTT 10 ms), float32 and int8 activations; Neurosurgeon's
  choice (from the profile and the probed link) vs the brute-force best measured through the emulated link;
- uplink: a worker process produces records while the link is down for ``SKYLINE_BENCH_OUTAGE_S`` seconds
  (default 600) and is SIGKILLed and restarted several times; then everything must arrive exactly once;
- fl: FedAvg/FedProx, 10 clients, Dirichlet α = 0.5, 20 rounds, vs the same model trained centrally; with
  record-level DP (DP-SGD on each client) at ε = 8 and 3, record-level DP under SecAgg+, and client-level DP.

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
from skyline.federated.local_training import LocalTraining

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


SPLIT_NETWORKS_BENCHED = ("split-vgg", "split-patchify")


def bench_split() -> dict[str, Any]:
    from skyline.edge.split_eval import SplitEvalConfig, evaluate_split

    runs = []
    for network in SPLIT_NETWORKS_BENCHED:
        for int8 in (False, True):
            for bandwidth in (1.0, 10.0, 100.0):
                config = SplitEvalConfig(
                    bandwidth_mbps=bandwidth, network=network, rtt_ms=10.0, int8=int8, repeats=7
                )
                result = evaluate_split(config)
                runs.append(_split_row(config, result))
                print(f"split {network} {bandwidth} Mbit/s int8={int8}: {runs[-1]['summary']}")
    return {"runs": runs, "rtt_ms": 10.0, "edge_slowdown": 10.0, "repeats": 7}


def _split_row(config: Any, result: dict[str, Any]) -> dict[str, Any]:
    details = result.pop("details")
    chosen, best = result["chosen_partition"], result["best_partition_bruteforce"]
    last = len(details["layers"])
    kind = "edge-only" if chosen == last else "cloud-only" if chosen == 0 else "split"
    measured = details["measured_ms"]
    return {
        "network": config.network,
        "bandwidth_mbps": config.bandwidth_mbps,
        "int8": config.int8,
        **result,
        "matches_bruteforce": chosen == best,
        "choice": kind,
        "chosen_layer": details["layers"][chosen - 1] if chosen else "input",
        "regret_ms": measured[chosen] - measured[best],
        "not_slower_than_edge_or_cloud_only": result["latency_ms"]
        <= min(result["edge_only_ms"], result["cloud_only_ms"]),
        "summary": f"chose {chosen} ({kind}), brute force {best}, {result['latency_ms']:.1f} ms "
        f"(edge-only {result['edge_only_ms']:.1f}, cloud-only {result['cloud_only_ms']:.1f})",
        "measured_bandwidth_mbps": details["measured_bandwidth_mbps"],
        "measured_rtt_ms": details["measured_rtt_ms"],
        "measured_overhead_ms": details["measured_overhead_ms"],
        "measured_cloud_factor": details["measured_cloud_factor"],
        "layers": details["layers"],
        "predicted_ms": details["predicted_ms"],
        "measured_ms": measured,
    }


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
    from skyline.edge.cloud_app import create_cloud_app, edge_authority
    from skyline.edge.ingest import IngestStore
    from skyline.edge.link import LinkConditions, LinkProxy
    from skyline.edge.uplink_store import UplinkStore
    from skyline.serving.server import BackgroundServer

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
    "fedavg_record_dp_epsilon_8_alpha_0.5_10_clients": {"dp_epsilon": 8.0, "dp_unit": "record"},
    "fedavg_record_dp_epsilon_3_alpha_0.5_10_clients": {"dp_epsilon": 3.0, "dp_unit": "record"},
    "fedavg_secagg_record_dp_epsilon_8_alpha_0.5_10_clients": {
        "dp_epsilon": 8.0,
        "dp_unit": "record",
        "secagg": True,
    },
    "fedavg_client_dp_epsilon_8_alpha_0.5_10_clients": {"dp_epsilon": 8.0, "dp_unit": "client"},
    # Fashion-MNIST, ~6,000 rows a client: DP-SGD with batches of 64 and C = 1 (best of two short pre-runs
    # on validation accuracy; 32/3 plateaued near 55%).
    "fashion_mnist_fedavg_alpha_0.5_10_clients": {"dataset": "fashion-mnist"},
    "fashion_mnist_record_dp_epsilon_8_alpha_0.5_10_clients": {
        "dataset": "fashion-mnist",
        "dp_epsilon": 8.0,
        "clipping_norm": 1.0,
        "local": LocalTraining(batch_size=64),
    },
}

DEPLOYMENT_CHECK = "deployment_vs_simulation_3_clients_3_rounds"
DP_REPEATS = 3


def _deployment_vs_simulation() -> dict[str, Any]:
    """The same apps and config in Flower's simulation engine and on a real SuperLink + 3 SuperNodes (separate
    processes on 127.0.0.1): without DP both must give the same accuracy every round."""
    from skyline.federated.apps import FederatedConfig
    from skyline.federated.loopback import LoopbackFederation
    from skyline.federated.simulation import run_federated

    config = FederatedConfig(clients=3, rounds=3, alpha=0.5)
    started = time.monotonic()
    simulated = run_federated(config, num_cpus=1, quiet=True)
    simulation_s = time.monotonic() - started
    with tempfile.TemporaryDirectory() as tmp, LoopbackFederation(3, Path(tmp)) as federation:
        started = time.monotonic()
        deployed = federation.run(config)
        deployment_s = time.monotonic() - started
    return {
        "simulation_accuracy_per_round": simulated["accuracy_per_round"],
        "deployment_accuracy_per_round": deployed["accuracy_per_round"],
        "identical": simulated["accuracy_per_round"] == deployed["accuracy_per_round"],
        "simulation_seconds": simulation_s,
        "deployment_seconds_after_start": deployment_s,
    }


def bench_fl() -> dict[str, Any]:
    """Each variant: 10 clients, Dirichlet α = 0.5, 20 rounds; then the deployment-engine check.
    ``SKYLINE_BENCH_FL`` picks variants (names above, comma-separated); results of variants not run are
    kept from the previous file."""
    from skyline.federated.apps import FederatedConfig
    from skyline.federated.simulation import run_federated

    path = RESULTS_DIR / "edge.json"
    previous = json.loads(path.read_text())["results"].get("fl", {}) if path.exists() else {}
    chosen = os.environ.get("SKYLINE_BENCH_FL", ",".join([*FL_VARIANTS, DEPLOYMENT_CHECK])).split(",")
    results = dict(previous)
    for name in chosen:
        if name == DEPLOYMENT_CHECK:
            results[name] = _deployment_vs_simulation()
            print(f"fl {name}: {results[name]}")
            _record_section("fl", results)
            continue
        config = FederatedConfig(clients=10, rounds=20, alpha=0.5, **FL_VARIANTS[name])
        # DP noise is fresh (OS-seeded) every run: repeat and report every run; without DP runs are identical.
        runs = []
        for _ in range(DP_REPEATS if config.dp_epsilon is not None else 1):
            started = time.monotonic()
            runs.append(run_federated(config, quiet=True))
            runs[-1]["seconds"] = time.monotonic() - started
        result = runs[0]
        finals = [run["final_accuracy"] for run in runs]
        result["final_accuracy_runs"] = finals
        result["final_accuracy_mean"] = sum(finals) / len(finals)
        result["ratio_to_centralized"] = result["final_accuracy_mean"] / result["centralized_accuracy"]
        print(f"fl {name}: {result}")
        results[name] = result
        _record_section("fl", results)  # now: a later variant failing must not lose this one
    return results


def _record_section(section: str, value: Any) -> None:
    """Merge one section into bench/results/edge.json, re-reading it first (other sections may have been
    recorded by a parallel run meanwhile)."""
    path = RESULTS_DIR / "edge.json"
    results: dict[str, Any] = json.loads(path.read_text())["results"] if path.exists() else {}
    results[section] = value
    results["note"] = (
        "shared 2-core machine (other jobs running); latencies are medians of interleaved repeats"
    )
    print(f"recorded {record('edge', results)}")


def main() -> None:
    chosen = [s for s in os.environ.get("SKYLINE_BENCH_EDGE", ",".join(SECTIONS)).split(",") if s]
    runners = {"cascade": bench_cascade, "split": bench_split, "uplink": bench_uplink, "fl": bench_fl}
    for section in chosen:
        _record_section(section, runners[section]())


if __name__ == "__main__":
    main()
