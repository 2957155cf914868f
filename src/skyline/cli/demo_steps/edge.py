"""Demo step: the edge as a fleet. An agent cascading an int8 model to the cloud and surviving a cloud outage
through its uplink queue; an agent splitting a signed model with the cloud; then a fleet of agents that
train a federated round on their own data, the new version rolled out in waves, and a version made worse
on purpose stopped at the canary."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from skyline.cli.demo import DemoContext, StepReport
from skyline.edge.agent import AgentConfig, EdgeAgent, FederatedNode
from skyline.edge.cascade_eval import CLOUD_MODEL, CascadeEvalConfig, calibrate
from skyline.edge.cloud import CloudConfig, EdgeCloud
from skyline.edge.digit_models import DigitModels, predict_proba, train_digit_models
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.local_model import LocalModel
from skyline.edge.publish import publish_model
from skyline.edge.rollout import RolloutSpec
from skyline.edge.strategies import SplitStrategy
from skyline.edge.traffic import LabelledTraffic
from skyline.errors import UnavailableError
from skyline.security.rbac import Role
from skyline.security.signing import generate_signing_keys
from skyline.security.tokens import TokenAuthority


class _World:
    """Keys, a repository and an edge cloud (with a SuperLink when ``federated``) under ``folder``."""

    def __init__(
        self, folder: Path, models: dict[str, tuple[Any, dict[str, Any]]], *, federated: bool = False
    ) -> None:
        self.folder = folder
        self.private, self.public = generate_signing_keys(
            folder / "keys" / "k.key", folder / "keys" / "k.pub"
        )
        for name, (model, options) in models.items():
            publish_model(
                model,
                (1, 8, 8),
                root=folder / "repo",
                name=name,
                version=1,
                private_key=self.private,
                **options,
            )
        self.authority = TokenAuthority(folder / "tokens.json")
        config = CloudConfig(
            repository=folder / "repo", tokens=folder / "tokens.json", ingest=folder / "ingest.db",
            public_key=self.public, port=0, tick_s=0.2, superlink_port=0 if federated else None,
        )  # fmt: skip
        self.cloud = EdgeCloud(config, authority=self.authority).start()

    def agent(self, url: str, name: str, **options: Any) -> EdgeAgent:
        """Agent ``name`` with its own edge token (a token speaks only for the agent it names)."""
        config = AgentConfig(
            cloud_url=url,
            token=self.authority.issue(name, Role.EDGE),
            store=self.folder / name,
            public_key=self.public,
            name=name,
            **options,
        )
        return EdgeAgent(config)


def _cascade_and_outage(models: DigitModels, work: Path) -> dict[str, Any]:
    world = _World(work, {"digits": (models.edge, {"int8": True}), CLOUD_MODEL: (models.cloud, {})})
    detector = calibrate(models, CascadeEvalConfig(target_offload=0.15))
    test_x, test_y = models.splits.test.x.numpy(), models.splits.test.y.numpy()
    try:
        with LinkProxy(world.cloud.port, LinkConditions(latency_ms=5)) as link:
            agent = world.agent(
                link.url, "cascade-agent", model="digits", strategy="cascade", method=detector.method,
                threshold=detector.threshold, cloud_timeout_s=0.5,
            )  # fmt: skip
            try:
                result = _serve_through_an_outage(agent, link, test_x, test_y)
            finally:
                agent.stop()
        counts, stored = world.cloud.ingest.counters(), world.cloud.ingest.count()
    finally:
        world.cloud.stop()
    produced = len(test_x) + 100 + result.pop("degraded_hard_examples")  # results + buffered hard examples
    edge_alone = LocalModel(work / "cascade-agent" / "models" / "digits" / "1", 1).predict(test_x)
    return result | {
        "edge_int8_accuracy": float((edge_alone.argmax(axis=1) == test_y).mean()),
        "cloud_accuracy": float((predict_proba(models.cloud, test_x).argmax(axis=1) == test_y).mean()),
        "delivered_after_outage": stored - result.pop("before_outage"),
        "records_produced": produced,
        "records_lost": produced - stored,
        "duplicates_dropped": counts["duplicates"],
    }


def _serve_through_an_outage(agent: EdgeAgent, link: LinkProxy, x: Any, y: Any) -> dict[str, Any]:
    version = agent.refresh_model()
    probs, sources = agent.infer(x)
    if not agent.sender.drain(deadline_s=30):
        raise UnavailableError("the edge's uplink did not drain to the cloud within 30 s")
    before = len(x)  # the results delivered before the outage
    link.set_outage(True)  # the cloud goes away: hard inputs degrade, every record waits on the edge
    _, outage_sources = agent.infer(x[:100])
    queued = len(agent.uplink)
    agent.sender.drain(deadline_s=1.0)  # fails: the link is down
    link.set_outage(False)
    started = time.perf_counter()
    delivered = agent.sender.drain(deadline_s=60)
    return {
        "model_version": version,
        "cascade_accuracy": float((probs.argmax(axis=1) == y).mean()),
        "offload_fraction": sources.count("cloud") / len(sources),
        "degraded_during_outage": outage_sources.count("edge-degraded"),
        "degraded_hard_examples": outage_sources.count("edge-degraded"),
        "queued_during_outage": queued,
        "before_outage": before,
        "all_delivered": delivered,
        "drain_s": time.perf_counter() - started,
    }


def _split(models: DigitModels, work: Path) -> dict[str, Any]:
    """An agent splitting the trained CNN (signed, packed splittable) with the cloud over a 10 Mbit/s link."""
    world = _World(work, {"digits": (models.cloud, {"split": True})})
    x = models.splits.test.x.numpy()[:32]
    try:
        with LinkProxy(world.cloud.port, LinkConditions(latency_ms=5, bandwidth_mbps=10)) as link:
            agent = world.agent(
                link.url, "split-agent", model="digits", strategy="split", cloud_timeout_s=2.0
            )
            try:
                agent.refresh_model()
                _, sources = agent.infer(x)
                status = agent.status()
                if not isinstance(agent.strategy, SplitStrategy) or agent.strategy.serving is None:
                    raise UnavailableError("the split agent has no split model installed")
                split_model = agent.strategy.serving.model  # every cut must give the unsplit answers
                whole = LocalModel(work / "split-agent" / "models" / "digits" / "1", 1).predict(x).argmax(1)
                same = all(
                    np.array_equal(split_model.tail(k, split_model.run(0, k, x)).argmax(1), whole)
                    for k in range(len(split_model))
                )
                layers = len(split_model)
            finally:
                agent.stop()
    finally:
        world.cloud.stop()
    return {
        "split_partition": status["split_partition"],
        "split_layer": status["split_layer"],
        "split_layers": layers,
        "split_source": sources[0],
        "split_bandwidth_mbps": status["split_bandwidth_mbps"] or float("nan"),
        "split_every_cut_equal": same,
    }


def _fleet(models: DigitModels, work: Path, *, agents: int, rounds: int) -> dict[str, Any]:
    """Agents that train a federated round on their own data, a rollout in waves, a bad version stopped."""
    from skyline.edge.fleet_training import FleetTrainingConfig, train_on_fleet
    from skyline.federated.data_folder import write_rows
    from skyline.federated.partition import dirichlet_partition

    splits = models.splits
    world = _World(work, {"digits": (models.edge, {"architecture": "mlp"})}, federated=True)
    parts = dirichlet_partition(splits.train.y.numpy(), clients=agents, alpha=1.0, seed=0)
    fleet = []
    try:
        for i, rows in enumerate(parts):
            write_rows(work / f"data-{i}", splits.train.x.numpy()[rows], splits.train.y.numpy()[rows])
            fleet.append(world.agent(
                world.cloud.url, f"agent-{i}", model="digits", poll_s=0.2, telemetry_s=0.2,
                labels={"site": f"site-{i % 2}"}, data=work / f"data-{i}",
                federated=FederatedNode(superlink=world.cloud.superlink),
            ).start())  # fmt: skip
        write_rows(work / "eval", splits.val.x.numpy(), splits.val.y.numpy())
        trained = train_on_fleet(FleetTrainingConfig(
            repository=work / "repo", model="digits", superlink=world.cloud.superlink, private_key=world.private,
            eval_data=work / "eval", workdir=work / "fl", agents=agents, rounds=rounds,
        ))  # fmt: skip
        return {**_rollouts(world, fleet, models, trained["published_version"]), "fl": trained}
    finally:
        for agent in fleet:
            agent.stop()
        world.cloud.stop()


def _rollouts(world: _World, fleet: list[EdgeAgent], models: DigitModels, good: int) -> dict[str, Any]:
    """Roll the federated version out in waves; then a worse one, which must stop at the canary."""
    publish_model(
        _worse(models), (1, 8, 8), root=world.folder / "repo", name="digits", version=good + 1,
        private_key=world.private,
    )  # fmt: skip
    x, y = models.splits.test.x.numpy(), models.splits.test.y.numpy()
    records = {}
    with LabelledTraffic(fleet, x, y) as traffic:
        for version in (good, good + 1):
            spec = RolloutSpec(
                model="digits", version=version, canary=0.25, steps=(0.25, 0.66, 1.0), min_accuracy=0.8,
                min_samples=16, bake_s=1.0, wave_timeout_s=120.0, offline_after_s=5.0,
            )  # fmt: skip
            rollout = world.cloud.controller.create(spec, list(range(1, good + 2)))
            while world.cloud.fleet.rollout(rollout.id).state == "running":
                time.sleep(0.2)
            records[version] = world.cloud.fleet.rollout(rollout.id)
    beyond_canary = [
        n for n, served in traffic.versions_served.items() if good + 1 in served and n != "agent-0"
    ]
    return {"good": records[good], "bad": records[good + 1], "bad_served_beyond_canary": beyond_canary}


def _worse(models: DigitModels) -> Any:
    """The edge model retrained on shuffled labels: a version made worse on purpose."""
    import torch

    from skyline.edge.digit_models import fit_model, fit_settings
    from skyline.training.models import build_model

    train = models.splits.train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("mlp", models.splits.input_shape, models.splits.num_classes)
    return fit_model(model, type(train)(train.x, train.y[order]), fit_settings(epochs=3))


def _plot(accuracies: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(accuracies) + 1), accuracies, marker="o", label="FedAvg on the agents' own data")
    ax.set_xlabel("round")
    ax.set_ylabel("accuracy (validation rows)")
    ax.set_title("Federated learning run by edge agents")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _summary(edge: dict[str, Any], split: dict[str, Any], fleet: dict[str, Any], tests: int) -> str:
    fl, good, bad = fleet["fl"], fleet["good"], fleet["bad"]
    return (
        f"**Cascade.** An edge agent pulled the signed int8 digits model v{edge['model_version']} and answered "
        f"the {tests} test digits: edge alone {edge['edge_int8_accuracy']:.3f}, cloud CNN "
        f"{edge['cloud_accuracy']:.3f}, cascade {edge['cascade_accuracy']:.3f} sending "
        f"{edge['offload_fraction']:.1%} of inputs to the cloud (the inference server, OIP v2).\n\n"
        f"**Outage.** With the link cut, {edge['degraded_during_outage']} hard inputs were answered by the edge "
        f"(degraded) and {edge['queued_during_outage']} records waited in the SQLite queue; delivered in "
        f"{edge['drain_s']:.1f} s once the link was back: {edge['records_produced']} made, "
        f"{edge['records_lost']} lost, {edge['duplicates_dropped']} duplicates dropped.\n\n"
        f"**Split.** An agent split the trained CNN (signed, cut into {split['split_layers']} ONNX segments) "
        f"with the cloud over a 10 Mbit/s link: cut {split['split_partition']} ({split['split_layer']}), chosen "
        f"from both sides' measured profiles; every cut gives the unsplit answers: {split['split_every_cut_equal']}.\n\n"
        f"**Fleet.** {len(fl['accuracy_per_round'])} federated round(s) run by the agents' SuperNodes on their "
        f"own data: accuracy {fl['accuracy']:.3f}, published as signed v{fl['published_version']} "
        f"({fl['round_seconds']:.0f} s per round). Rolled out in waves: {good.state} ({len(good.events)} "
        f"events). A version made worse on purpose: {bad.state} — {bad.reason}; agents that served it beyond "
        f"the canary: {len(fleet['bad_served_beyond_canary'])}."
    )


def run(ctx: DemoContext) -> StepReport:
    models = train_digit_models(seed=0, epochs=3 if ctx.quick else 20)
    with tempfile.TemporaryDirectory() as tmp:
        edge = _cascade_and_outage(models, Path(tmp) / "cascade")
        split = _split(models, Path(tmp) / "split")
        fleet = _fleet(models, Path(tmp) / "fleet", agents=3, rounds=1 if ctx.quick else 3)
    figure = ctx.out_dir / "federated.png"
    _plot(fleet["fl"]["accuracy_per_round"], figure)
    metrics = {k: v for k, v in (edge | split).items() if not isinstance(v, dict)}
    metrics |= {
        "fl_accuracy": fleet["fl"]["accuracy"],
        "fl_published_version": fleet["fl"]["published_version"],
        "rollout_good": fleet["good"].state,
        "rollout_bad": fleet["bad"].state,
        "bad_served_beyond_canary": len(fleet["bad_served_beyond_canary"]),
    }
    return StepReport(
        title="Edge: cascade, outage, split inference, and a fleet (federated round, rollout, rollback)",
        summary=_summary(edge, split, fleet, len(models.splits.test)),
        figures=(figure,),
        metrics=metrics,
    )
