"""Edge benchmarks: cascade, split inference of trained models, uplink through an outage, federated learning
(simulated, and run by edge agents), staged rollouts on 50 agents.

Sections (all by default, about 20 minutes on 2 cores; ``SKYLINE_BENCH_EDGE=split,rollout`` picks some, and each
run merges its sections into bench/results/edge.json; ``SKYLINE_BENCH_QUICK=1`` is a short smoke run that
records nothing):

- cascade: digits, edge MLP vs cloud CNN (served by the edge cloud's inference server), cascade calibrated on
  validation for 10% and 15% offload, seeds 0-1;
- split: trained models packed splittable and signed (a digits CNN, a Fashion-MNIST CNN trained on 12,000
  rows, the pretrained EfficientNet-Lite0) at 1, 10, 100 Mbit/s (RTT 10 ms), the edge EMULATED 10x slower
  than this host: the cut chosen from both sides' measured profiles vs edge-only and cloud-only (and every
  cut, brute force, for the small models), and the test rows answered at the chosen cut vs unsplit;
- uplink: a worker process produces records while the link is down for ``SKYLINE_BENCH_OUTAGE_S`` seconds
  (default 120; the recorded 600-second run is in the file's history) and is SIGKILLed and restarted; then
  everything must arrive exactly once;
- fl: FedAvg/FedProx, 10 clients, Dirichlet α = 0.5, 20 rounds in Flower's simulation engine vs centralized;
  a bounded run reruns FedAvg, FedProx, SecAgg+ with record-level DP and the deployment check
  (``SKYLINE_BENCH_FL`` names others: DP at ε = 8/3, client-level DP, Fashion-MNIST);
- fl_agents: 5 edge agents with Flower SuperNodes train 5 rounds on their own data folders (the same
  Dirichlet partitions) against the simulation: final accuracy within 1 point, seconds per round;
- rollout: 50 agents with labelled traffic; a good version through waves (time to 100%), a worse one
  (time until rolled back; agents that served it beyond the canary, target 0).

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.record import RESULTS_DIR, describe_machine, record
from skyline.federated.local_training import LocalTraining

SECTIONS = ("cascade", "split", "uplink", "fl", "fl_agents", "rollout")
QUICK = os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")


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


SPLIT_BANDWIDTHS = (1.0, 10.0, 100.0)


def _split_models(work: Path, private: Path) -> list[dict[str, Any]]:
    """The trained models split here: published signed and splittable, with the rows they are judged on."""
    import torch

    from skyline.compression.efficientnet import load_efficientnet_lite0, photo_crops
    from skyline.edge.digit_models import fit_model, fit_settings
    from skyline.edge.publish import publish_model
    from skyline.federated.data_folder import write_rows
    from skyline.training.data import Split, load_dataset
    from skyline.training.models import build_model

    models = []
    for name, dataset, rows, epochs in (
        ("digits-cnn", "digits", None, 10),
        ("fashion-cnn", "fashion-mnist", 12_000, 2),
    ):
        splits = load_dataset(dataset, seed=0)
        torch.manual_seed(0)
        model = build_model("cnn", splits.input_shape, splits.num_classes)
        train = splits.train if rows is None else Split(splits.train.x[:rows], splits.train.y[:rows])
        fit_model(model, train, fit_settings(epochs=epochs))
        publish_model(
            model,
            splits.input_shape,
            root=work / "repo",
            name=name,
            version=1,
            private_key=private,
            split=True,
        )
        test = slice(0, 1000 if QUICK else None)
        write_rows(work / f"test-{name}", splits.test.x.numpy()[test], splits.test.y.numpy()[test])
        models.append({"name": name, "dataset": dataset, "brute_force": True})
    # A pretrained ImageNet classifier (no labelled ImageNet ships offline: judged against PyTorch's top-1).
    effnet = load_efficientnet_lite0()
    crops = photo_crops(8 if QUICK else 16, seed=0).astype(np.float32)
    with torch.inference_mode():
        reference = effnet(torch.from_numpy(crops)).argmax(dim=1).numpy()
    publish_model(
        effnet,
        (3, 224, 224),
        root=work / "repo",
        name="efficientnet-lite0",
        version=1,
        private_key=private,
        split=True,
    )
    write_rows(work / "test-efficientnet-lite0", crops, reference)
    models.append(
        {"name": "efficientnet-lite0", "dataset": "photo crops (label: PyTorch top-1)", "brute_force": False}
    )
    return models


def bench_split() -> dict[str, Any]:
    """Trained models packed splittable and signed; at 1/10/100 Mbit/s (RTT 10 ms) the cut chosen from both
    sides' measured profiles (the edge EMULATED 10x slower than this host) against edge-only and cloud-only,
    and the test rows answered at the chosen cut against the unsplit model."""
    from skyline.edge.split_eval import SplitEvalConfig, evaluate_split
    from skyline.security.signing import generate_signing_keys

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        private, public = generate_signing_keys(work / "k.key", work / "k.pub")
        for model in _split_models(work, private):
            for bandwidth in SPLIT_BANDWIDTHS:
                config = SplitEvalConfig(
                    repository=work / "repo", model=model["name"], public_key=public, bandwidth_mbps=bandwidth,
                    rtt_ms=10.0, emulated_edge_slowdown=10.0, repeats=3 if QUICK else 7,
                    brute_force=model["brute_force"], test_data=work / f"test-{model['name']}",
                )  # fmt: skip
                started = time.monotonic()
                result = evaluate_split(config)
                runs.append(_split_row(model, config, result, time.monotonic() - started))
                print(f"split {model['name']} {bandwidth} Mbit/s: {runs[-1]['summary']}")
    return {"runs": runs, "rtt_ms": 10.0, "emulated_edge_slowdown": 10.0}


def _split_row(model: dict[str, Any], config: Any, result: dict[str, Any], seconds: float) -> dict[str, Any]:
    details = result.pop("details")
    chosen, layers = result["chosen_partition"], details["layers"]
    kind = "edge-only" if chosen == len(layers) else "cloud-only" if chosen == 0 else "split"
    best_other = min(result["edge_only_ms"], result["cloud_only_ms"])
    row = {
        "model": model["name"], "judged_on": model["dataset"], "bandwidth_mbps": config.bandwidth_mbps, **result,
        "choice": kind, "chosen_layer": layers[chosen - 1] if chosen else "input", "segments": len(layers),
        "speedup_vs_best_of_edge_and_cloud_only": best_other / result["latency_ms"],
        "seconds": seconds, "measured_ms": details["measured_ms"], "predicted_ms": details["predicted_ms"],
        "measured_bandwidth_mbps": details["measured_bandwidth_mbps"], "measured_rtt_ms": details["measured_rtt_ms"],
    }  # fmt: skip
    if "best_partition_bruteforce" in result:
        row["matches_bruteforce"] = chosen == result["best_partition_bruteforce"]
    row["summary"] = (
        f"chose {chosen} ({kind}) {result['latency_ms']:.1f} ms vs edge-only {result['edge_only_ms']:.1f}, "
        f"cloud-only {result['cloud_only_ms']:.1f}; accuracy split {result['accuracy_split']:.4f} vs unsplit "
        f"{result['accuracy_unsplit']:.4f}, same predictions {result['same_predictions']:.4f}"
    )
    return row


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
    from skyline.edge.cloud import CloudConfig, EdgeCloud
    from skyline.edge.cloud_app import edge_authority
    from skyline.edge.link import LinkConditions, LinkProxy
    from skyline.edge.uplink_store import UplinkStore

    outage_s = float(os.environ.get("SKYLINE_BENCH_OUTAGE_S", "30" if QUICK else "120"))
    interval_s = 0.05  # 20 records/s produced on the edge
    records = int((outage_s + 30) / interval_s)
    rng, kills = random.Random(0), 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        authority, token = edge_authority(work / "tokens.json")
        config = CloudConfig(
            repository=work / "repo", tokens=work / "tokens.json", ingest=work / "cloud.db", port=0
        )
        with (
            EdgeCloud(config, authority=authority) as server,
            LinkProxy(server.port, LinkConditions(latency_ms=5, bandwidth_mbps=10)) as link,
        ):
            ingest = server.ingest
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
# What a bounded run reruns after the federated code moved (the others: SKYLINE_BENCH_FL=name,...).
BOUNDED_FL = (
    "fedavg_alpha_0.5_10_clients",
    "fedprox_mu_0.01_alpha_0.5_10_clients",
    "fedavg_secagg_record_dp_epsilon_8_alpha_0.5_10_clients",
    DEPLOYMENT_CHECK,
)


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
    chosen = os.environ.get("SKYLINE_BENCH_FL", ",".join(BOUNDED_FL)).split(",")
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
        for _ in range(DP_REPEATS if config.dp_epsilon is not None and not QUICK else 1):
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


def _fleet_world(work: Path, model: Any, *, architecture: str | None = None, superlink: bool = False) -> Any:
    """A signed repository with ``model`` as digits v1 and a running edge cloud; returns (cloud, keys)."""
    from skyline.edge.cloud import CloudConfig, EdgeCloud
    from skyline.edge.publish import publish_model
    from skyline.security.signing import generate_signing_keys

    private, public = generate_signing_keys(work / "k.key", work / "k.pub")
    publish_model(
        model,
        (1, 8, 8),
        root=work / "repo",
        name="digits",
        version=1,
        private_key=private,
        architecture=architecture,
    )
    config = CloudConfig(
        repository=work / "repo", tokens=work / "tokens.json", ingest=work / "ingest.db", public_key=public,
        port=0, tick_s=0.5, superlink_port=0 if superlink else None,
    )  # fmt: skip
    return EdgeCloud(config).start(), private, public


def _agent(cloud: Any, public: Path, work: Path, name: str, **options: Any) -> Any:
    """Agent ``name`` with its own edge token (a token speaks only for the agent it names)."""
    from skyline.edge.agent import AgentConfig, EdgeAgent
    from skyline.security.rbac import Role

    token = cloud.authority.issue(name, Role.EDGE)
    config = AgentConfig(
        cloud_url=cloud.url, token=token, model="digits", store=work / name, public_key=public, name=name,
        **options,
    )  # fmt: skip
    return EdgeAgent(config).start()


FL_AGENTS = 5
FL_ROUNDS = 5


def bench_fl_agents() -> dict[str, Any]:
    """Federated learning run by edge agents (SuperNodes on their own data folders, SuperLink in the cloud,
    `train_on_fleet`) against `skyline fl run`'s simulation on the same Dirichlet partitions, rounds, model,
    initial weights and test split."""
    from skyline.edge.agent import FederatedNode
    from skyline.edge.fleet_training import FleetTrainingConfig, train_on_fleet
    from skyline.federated.apps import FederatedConfig, client_rows, evaluation_rows, new_model
    from skyline.federated.data_folder import write_rows
    from skyline.federated.simulation import run_federated

    clients, rounds = (3, 2) if QUICK else (FL_AGENTS, FL_ROUNDS)
    config = FederatedConfig(clients=clients, rounds=rounds, alpha=0.5)
    started = time.monotonic()
    simulated = run_federated(config, num_cpus=1, quiet=True)
    simulation_s = time.monotonic() - started
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cloud, private, public = _fleet_world(work, new_model(config), architecture="mlp", superlink=True)
        agents = []
        try:
            for i in range(clients):
                x, y = client_rows(config, {"partition-id": i})
                write_rows(work / f"data-{i}", x.numpy(), y.numpy())
                node = FederatedNode(superlink=cloud.superlink)
                agents.append(
                    _agent(cloud, public, work, f"agent-{i}", data=work / f"data-{i}", federated=node)
                )
            test_x, test_y = evaluation_rows(config)
            write_rows(work / "test", test_x.numpy(), test_y.numpy())
            fleet = train_on_fleet(FleetTrainingConfig(
                repository=work / "repo", model="digits", superlink=cloud.superlink, private_key=private,
                eval_data=work / "test", workdir=work / "fl", agents=clients, rounds=rounds,
            ))  # fmt: skip
        finally:
            for agent in agents:
                agent.stop()
            cloud.stop()
    gap = (simulated["final_accuracy"] - fleet["accuracy"]) * 100
    result = {
        "agents": clients, "rounds": rounds, "alpha": 0.5, "model": "mlp (digits)",
        "simulation_accuracy_per_round": simulated["accuracy_per_round"],
        "agents_accuracy_per_round": fleet["accuracy_per_round"],
        "simulation_final_accuracy": simulated["final_accuracy"], "agents_final_accuracy": fleet["accuracy"],
        "gap_points": gap, "within_1_point": abs(gap) <= 1.0, "published_version": fleet["published_version"],
        "agents_round_seconds": fleet["round_seconds"], "simulation_seconds": simulation_s,
    }  # fmt: skip
    print(f"fl on agents: {result}")
    return result


ROLLOUT_AGENTS = 50


def _roll(cloud: Any, version: int, available: list[int], agents: int) -> tuple[Any, float]:
    from skyline.edge.rollout import RolloutSpec

    spec = RolloutSpec(
        model="digits", version=version, canary=0.1, steps=(0.1, 0.5, 1.0), min_accuracy=0.8,
        min_samples=32, bake_s=2.0, wave_timeout_s=300.0, offline_after_s=15.0,
    )  # fmt: skip
    started = time.monotonic()
    rollout = cloud.controller.create(spec, available)
    _wait(lambda: cloud.fleet.rollout(rollout.id).state != "running", f"rollout of v{version}")
    return cloud.fleet.rollout(rollout.id), time.monotonic() - started


def _wait(done: Callable[[], bool], what: str, timeout_s: float = 600.0) -> None:
    """Poll ``done`` until it holds; a rollout that never settles fails the benchmark instead of hanging it."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not reached within {timeout_s:.0f} s")
        time.sleep(0.1)


def bench_rollout() -> dict[str, Any]:
    """50 agents (real `EdgeAgent`s in this process, the real protocol over 127.0.0.1) with labelled traffic:
    a good version rolled out in waves (10%, 50%, 100%), then one made worse on purpose."""
    import torch

    from skyline.edge.digit_models import fit_model, fit_settings, train_digit_models
    from skyline.edge.publish import publish_model
    from skyline.edge.traffic import LabelledTraffic
    from skyline.training.models import build_model

    count = 10 if QUICK else ROLLOUT_AGENTS
    models = train_digit_models(seed=0, epochs=10)
    splits = models.splits
    shuffled = type(splits.train)(splits.train.x, splits.train.y[torch.randperm(len(splits.train))])
    torch.manual_seed(1)
    bad = fit_model(
        build_model("mlp", splits.input_shape, splits.num_classes), shuffled, fit_settings(epochs=3)
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cloud, private, public = _fleet_world(work, train_digit_models(seed=1, epochs=10).edge)
        agents = []
        try:
            for i in range(count):
                agents.append(_agent(cloud, public, work, f"agent-{i:02d}", poll_s=0.5, telemetry_s=0.5))
            _wait(lambda: all(a.model_version == 1 for a in agents), "every agent serving v1")
            publish_model(
                models.edge, (1, 8, 8), root=work / "repo", name="digits", version=2, private_key=private
            )
            publish_model(bad, (1, 8, 8), root=work / "repo", name="digits", version=3, private_key=private)
            with LabelledTraffic(agents, splits.test.x.numpy(), splits.test.y.numpy()) as traffic:
                good, good_s = _roll(cloud, 2, [1, 2, 3], count)
                converge_started = time.monotonic()
                _wait(lambda: all(a.model_version == 2 for a in agents), "every agent serving v2")
                converged_s = time.monotonic() - converge_started
                worse, worse_s = _roll(cloud, 3, [1, 2, 3], count)
                _wait(lambda: all(a.model_version == 2 for a in agents), "every agent back on v2")
        finally:
            for agent in agents:
                agent.stop()
            cloud.stop()
    canary = set(worse.waves[0]) if worse.waves else set()
    beyond = sorted(n for n, served in traffic.versions_served.items() if 3 in served and n not in canary)
    result = {
        "agents": count, "waves": "10%, 50%, 100% (canary 10%)", "bake_s": 2.0, "min_samples": 32,
        "good_state": good.state, "good_to_100_percent_s": good_s, "good_all_agents_serving_s": good_s + converged_s,
        "good_events": list(good.events), "bad_state": worse.state, "bad_rolled_back_s": worse_s,
        "bad_reason": worse.reason, "bad_canary_agents": len(canary),
        "agents_that_served_bad_beyond_canary": len(beyond), "target_beyond_canary": 0,
    }  # fmt: skip
    print(f"rollout: {result}")
    return result


def _record_section(section: str, value: Any) -> None:
    """Merge one section into bench/results/edge.json, re-reading it first (other sections may have been
    recorded by a parallel run meanwhile); a quick run records nothing."""
    if QUICK:
        return
    path = RESULTS_DIR / "edge.json"
    results: dict[str, Any] = json.loads(path.read_text())["results"] if path.exists() else {}
    measured = (
        describe_machine()
    )  # sections are recorded at different times: each keeps its own date and load
    results[section] = {
        **value,
        "recorded_at": measured["date"],
        "load_average_at_record": measured["load_average_at_record"],
    }
    results["note"] = (
        "latencies are medians of interleaved repeats; the load average of each run is under machine"
    )
    print(f"recorded {record('edge', results)}")


def main() -> None:
    chosen = [s for s in os.environ.get("SKYLINE_BENCH_EDGE", ",".join(SECTIONS)).split(",") if s]
    runners = {
        "cascade": bench_cascade, "split": bench_split, "uplink": bench_uplink, "fl": bench_fl,
        "fl_agents": bench_fl_agents, "rollout": bench_rollout,
    }  # fmt: skip
    started = time.monotonic()
    for section in chosen:
        section_started = time.monotonic()
        value = runners[section]()
        print(f"== edge section {section}: {time.monotonic() - section_started:.0f} s")
        _record_section(section, value)
    if QUICK:
        print("quick run: not recorded")
    print(f"== edge benchmark: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
