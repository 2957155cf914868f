"""Demo step: an edge agent with an int8 model cascading to the cloud, a cloud outage survived by the
uplink queue, an agent splitting a network with the cloud, and a short federated run with Flower."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from skyline.cli.demo import DemoContext, StepReport
from skyline.edge.agent import AgentConfig, EdgeAgent
from skyline.edge.cascade_eval import CLOUD_MODEL, CascadeEvalConfig, calibrate
from skyline.edge.cloud_app import create_cloud_app, edge_authority
from skyline.edge.digit_models import DigitModels, predict_proba, train_digit_models
from skyline.edge.ingest import IngestStore
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.publish import publish_model
from skyline.errors import ConfigError, UnavailableError
from skyline.federated.apps import FederatedConfig
from skyline.federated.simulation import run_federated
from skyline.security.signing import generate_signing_keys
from skyline.serving.server import BackgroundServer


def _cascade_and_outage(models: DigitModels, work: Path) -> dict[str, Any]:
    private, public = generate_signing_keys(work / "keys" / "signing.key", work / "keys" / "signing.pub")
    repository = work / "repository"
    publish_model(
        models.edge,
        models.splits.input_shape,
        root=repository,
        name="digits",
        version=1,
        private_key=private,
        int8=True,
    )
    detector = calibrate(models, CascadeEvalConfig(target_offload=0.15))
    ingest = IngestStore(work / "cloud-ingest.db")
    authority, token = edge_authority(work / "cloud-tokens.json")
    app = create_cloud_app(
        ingest=ingest,
        authority=authority,
        models={CLOUD_MODEL: lambda x: predict_proba(models.cloud, x)},
        repository=repository,
    )
    test_x, test_y = models.splits.test.x.numpy(), models.splits.test.y.numpy()
    try:
        with BackgroundServer(app) as server, LinkProxy(server.port, LinkConditions(latency_ms=5)) as link:
            config = AgentConfig(
                cloud_url=link.url,
                token=token,
                model="digits",
                store=work / "edge",
                public_key=public,
                strategy="cascade",
                method=detector.method,
                threshold=detector.threshold,
                cloud_timeout_s=0.5,
            )
            agent = EdgeAgent(config)
            try:
                version = agent.refresh_model()
                probs, sources = agent.infer(test_x)
                cascade_accuracy = float((probs.argmax(axis=1) == test_y).mean())
                offload = sources.count("cloud") / len(sources)
                if not agent.sender.drain(deadline_s=30):
                    raise UnavailableError("the edge's uplink did not drain to the cloud within 30 s")
                before_outage = ingest.count()
                # the cloud goes away: hard inputs degrade, every record waits on the edge
                link.set_outage(True)
                _, outage_sources = agent.infer(test_x[:100])
                queued_during_outage = len(agent.uplink)
                agent.sender.drain(deadline_s=1.0)  # fails: the link is down
                link.set_outage(False)
                started = time.perf_counter()
                delivered = agent.sender.drain(deadline_s=60)
                drain_s = time.perf_counter() - started
            finally:
                agent.stop()
        counts, stored = ingest.counters(), ingest.count()
    finally:
        ingest.close()
    produced = len(test_x) + 100 + outage_sources.count("edge-degraded")  # results + buffered hard examples
    return {
        "model_version": version,
        "edge_int8_accuracy": float((agent_probs_edge(work, test_x).argmax(axis=1) == test_y).mean()),
        "cloud_accuracy": float((predict_proba(models.cloud, test_x).argmax(axis=1) == test_y).mean()),
        "cascade_accuracy": cascade_accuracy,
        "offload_fraction": offload,
        "degraded_during_outage": outage_sources.count("edge-degraded"),
        "queued_during_outage": queued_during_outage,
        "delivered_after_outage": stored - before_outage,
        "records_produced": produced,
        "records_lost": produced - stored,
        "duplicates_dropped": counts["duplicates"],
        "all_delivered": delivered,
        "drain_s": drain_s,
    }


def _split(work: Path) -> dict[str, Any]:
    """An agent splitting split-patchify with the cloud over a 10 Mbit/s link, then with the cloud gone."""
    from skyline.edge.split import SPLIT_NETWORKS, tail_runner

    network = SPLIT_NETWORKS["split-patchify"]
    ingest = IngestStore(work / "split-ingest.db")
    authority, token = edge_authority(work / "split-tokens.json")
    tails = {"split-patchify": tail_runner(network.build(seed=0))}
    x = np.random.default_rng(0).standard_normal((4, *network.input_shape)).astype(np.float32)
    link_conditions = LinkConditions(latency_ms=5, bandwidth_mbps=10)
    app = create_cloud_app(ingest=ingest, authority=authority, tails=tails)
    try:
        with BackgroundServer(app) as server, LinkProxy(server.port, link_conditions) as link:
            config = AgentConfig(
                cloud_url=link.url,
                token=token,
                model="split-patchify",
                store=work / "split-edge",
                strategy="split",
                cloud_timeout_s=2.0,
            )
            agent = EdgeAgent(config)
            try:
                split = agent.split
                if (
                    split is None
                ):  # AgentConfig(strategy="split") always builds one; say so if it ever did not
                    raise ConfigError("the split demo's agent has no split network")
                split.refresh()
                started = time.perf_counter()
                _, sources = agent.infer(x)
                latency_ms = (time.perf_counter() - started) * 1e3 / len(x)
                status = agent.status()
                link.set_outage(True)
                _, outage_sources = agent.infer(x[:1])
            finally:
                agent.stop()
    finally:
        ingest.close()
    return {
        "split_partition": status["split_partition"],
        "split_layer": status["split_layer"],
        "split_layers": len(split.model),
        "split_source": sources[0],
        "split_latency_ms": latency_ms,
        # None when no probe reached the cloud (an overloaded host): shown as nan, not a crash
        "split_bandwidth_mbps": status["split_bandwidth_mbps"] or float("nan"),
        "split_rtt_ms": status["split_rtt_ms"] or float("nan"),
        "split_outage_source": outage_sources[0],
    }


def _cut_words(split: dict[str, Any]) -> str:
    if split["split_partition"] == split["split_layers"]:
        return "every layer on the edge: the link or the loaded cloud made sending slower"
    if split["split_partition"] == 0:
        return "the input sent to the cloud"
    return f"the edge runs up to {split['split_layer']}, the cloud the rest"


def agent_probs_edge(work: Path, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The int8 edge model alone, as the agent installed it (for its stand-alone accuracy)."""
    from skyline.edge.agent import LocalModel

    return LocalModel(work / "edge" / "models" / "digits" / "1", 1).predict(x)


def _plot(fl: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    rounds = range(1, len(fl["accuracy_per_round"]) + 1)
    ax.plot(rounds, fl["accuracy_per_round"], marker="o", label="FedAvg (Flower simulation)")
    ax.axhline(fl["centralized_accuracy"], color="gray", linestyle="--", label="centralized")
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_title("Federated learning on non-IID digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(ctx: DemoContext) -> StepReport:
    # Quick: fewer epochs (the digits models still reach ~97%), and the smallest federation that still
    # shows learning over rounds, on one Ray actor (its start, not the training, is what costs time).
    models = train_digit_models(seed=0, epochs=3 if ctx.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        edge = _cascade_and_outage(models, Path(tmp))
        split = _split(Path(tmp))
    fl_config = FederatedConfig(clients=2 if ctx.quick else 10, rounds=2 if ctx.quick else 20, alpha=0.5)
    figures: tuple[Path, ...] = ()
    try:
        fl: dict[str, Any] | None = run_federated(fl_config, num_cpus=1 if ctx.quick else 2, quiet=True)
    except UnavailableError as exc:  # Ray could not start on an overloaded host: say so, keep the rest
        fl, fl_error = None, str(exc)
    summary = (
        f"**Cascade.** An edge agent pulled the int8 (ONNX Runtime dynamic quantization) digits model "
        f"v{edge['model_version']} from the cloud repository, verified its Ed25519-signed manifest, and answered "
        f"the {len(models.splits.test)} test digits: edge alone {edge['edge_int8_accuracy']:.3f}, cloud CNN "
        f"{edge['cloud_accuracy']:.3f}, cascade {edge['cascade_accuracy']:.3f} sending {edge['offload_fraction']:.1%} "
        "of inputs to the cloud.\n\n"
        f"**Outage.** With the link cut, {edge['degraded_during_outage']} hard inputs were answered by the edge "
        f"(degraded) and {edge['queued_during_outage']} records waited in the SQLite queue; once the link came back "
        f"they were delivered in {edge['drain_s']:.1f} s: {edge['records_produced']} records made, "
        f"{edge['records_lost']} lost, {edge['duplicates_dropped']} duplicates dropped by the cloud's idempotent "
        "ingestion.\n\n"
        f"**Split.** An agent splitting split-patchify with the cloud over a 10 Mbit/s, 10 ms link measured "
        f"{split['split_bandwidth_mbps']:.1f} Mbit/s and {split['split_rtt_ms']:.1f} ms RTT and chose cut "
        f"{split['split_partition']} of {split['split_layers']} ({_cut_words(split)}; answers from "
        f"'{split['split_source']}', {split['split_latency_ms']:.0f} ms per input); with the cloud gone the "
        f"answer came from '{split['split_outage_source']}'.\n\n"
    )
    metrics: dict[str, Any] = dict(edge) | split
    if fl is not None:
        figure = ctx.out_dir / "federated.png"
        _plot(fl, figure)
        figures = (figure,)
        summary += (
            f"**Federated.** FedAvg, {fl_config.clients} clients, Dirichlet α = 0.5, {fl['rounds']} rounds in "
            f"Flower's simulation engine: {fl['final_accuracy']:.3f} vs {fl['centralized_accuracy']:.3f} trained "
            "centrally."
        )
        metrics |= {
            "fl_final_accuracy": fl["final_accuracy"],
            "fl_centralized_accuracy": fl["centralized_accuracy"],
        }
    else:
        summary += f"**Federated.** Did not run: {fl_error}"
    return StepReport(
        title="Edge agent, cascade, outage, split inference and federated learning",
        summary=summary,
        figures=figures,
        metrics=metrics,
    )
