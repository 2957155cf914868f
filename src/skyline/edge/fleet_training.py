"""Federated learning run by the edge agents (``skyline fl start --model NAME``): rounds on the agents'
own data, then the aggregated model evaluated, signed and published as the model's next version.

The cloud runs a Flower SuperLink (``skyline edge cloud --superlink-port``); every agent started with
``--fl`` runs a SuperNode that trains on its data folder (`skyline.federated.data_folder`: a dataset put
there and the labelled records it collected). A run starts from the newest version's PyTorch weights
(``weights.pt``; `skyline.edge.publish`) and its architecture — or, for a model published without weights,
from a fresh ``arch`` — and uses the same apps, strategies, record-level DP and SecAgg+ as ``skyline fl
run`` (`skyline.federated.deployment`). Agents keep the version they run until ``skyline edge rollout``
moves the new one through the fleet (`skyline.edge.fleet`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skyline.edge.publish import WEIGHTS_FILE, Architecture, publish_model, read_architecture
from skyline.errors import ConfigError, NotFoundError
from skyline.federated.apps import FederatedConfig, evaluation_rows, new_model
from skyline.federated.data_folder import read_rows
from skyline.federated.deployment import COMPONENTS
from skyline.federated.local_training import LocalTraining, accuracy
from skyline.federated.loopback import submit_run
from skyline.federated.run_config import run_config_of
from skyline.serving.repository import ModelRepository
from skyline.serving.split_artifact import SPLIT_DIR


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetTrainingConfig:
    """One federated run on the agents, and where its model goes."""

    repository: Path
    model: str
    superlink: str  # host:port of the SuperLink the agents joined
    private_key: Path  # signs the published version
    eval_data: Path  # the cloud's held-out rows (a folder of shards)
    workdir: Path
    agents: int = 2  # agents that must take part in every round
    rounds: int = 3
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    local: LocalTraining = field(default_factory=LocalTraining)
    dp_epsilon: float | None = None
    secagg: bool = False
    seed: int = 0
    arch: str | None = None  # when the newest version has no PyTorch weights
    # A fresh --arch model's outputs (None: the largest label in eval_data + 1).
    num_classes: int | None = None
    min_accuracy: float | None = None  # publish only a model at least this accurate on eval_data
    ca: Path | None = None  # verifies the SuperLink's certificate
    timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        if self.min_accuracy is not None and not 0 <= self.min_accuracy <= 1:
            raise ConfigError(f"--min-accuracy must be in [0, 1], got {self.min_accuracy}")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout-s must be positive, got {self.timeout_s}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ConfigError(f"--num-classes must be at least 2, got {self.num_classes}")


def _starting_point(config: FleetTrainingConfig, current: int | None) -> tuple[Architecture, Path | None]:
    """The architecture to train and the weights to start from (None: fresh)."""
    if current is not None:
        folder = ModelRepository(config.repository).version_dir(config.model, current)
        try:
            found = read_architecture(folder)
            if config.arch is not None and config.arch != found.arch:
                raise ConfigError(
                    f"--arch {config.arch} but {config.model} v{current} is a {found.arch} the rounds continue "
                    "from: drop --arch (it is for a model with no PyTorch weights yet)"
                )
            if config.num_classes is not None and config.num_classes != found.num_classes:
                raise ConfigError(
                    f"--num-classes {config.num_classes} but {config.model} v{current} has "
                    f"{found.num_classes} outputs the rounds continue from: drop --num-classes"
                )
            return found, folder / WEIGHTS_FILE
        except NotFoundError:
            if config.arch is None:
                raise ConfigError(
                    f"{config.model} v{current} has no PyTorch weights to continue from; pass --arch NAME "
                    "to train a fresh model of that architecture"
                ) from None
    if config.arch is None:
        raise ConfigError(f"{config.model!r} has no version yet: pass --arch to train a fresh model")
    x, y = read_rows(config.eval_data)
    seen = int(y.max()) + 1
    if config.num_classes is not None and config.num_classes < seen:
        raise ConfigError(
            f"--num-classes {config.num_classes} but {config.eval_data} has label {seen - 1}; pass at least {seen}"
        )
    # Without --num-classes the eval rows decide: a class they lack (above their largest label) is not learnt.
    classes = config.num_classes or seen
    return Architecture(arch=config.arch, input_shape=tuple(x.shape[1:]), num_classes=classes), None


def federated_config(
    config: FleetTrainingConfig, architecture: Architecture, weights: Path | None
) -> FederatedConfig:
    """The `FederatedConfig` of the run (the same type ``skyline fl run`` builds)."""
    return FederatedConfig(
        clients=config.agents, rounds=config.rounds, strategy=config.strategy, proximal_mu=config.proximal_mu,
        model=architecture.arch, local=config.local, seed=config.seed, dp_epsilon=config.dp_epsilon,
        secagg=config.secagg, input_shape=architecture.input_shape, num_classes=architecture.num_classes,
        eval_data=config.eval_data.resolve(), initial_weights=None if weights is None else weights.resolve(),
    )  # fmt: skip


def train_on_fleet(config: FleetTrainingConfig) -> dict[str, Any]:
    """Run the rounds, evaluate the aggregated model, publish it; returns what happened."""
    repository = ModelRepository(config.repository)
    versions = repository.versions(config.model)
    current = versions[-1] if versions else None
    architecture, weights = _starting_point(config, current)
    run = federated_config(config, architecture, weights)
    final = config.workdir / "final.pt"
    started = time.monotonic()
    result = submit_run(
        config.workdir, config.superlink, {**run_config_of(run), "weights-path": str(final.resolve())},
        components=COMPONENTS[run.secagg], ca=config.ca, timeout_s=config.timeout_s,
    )  # fmt: skip
    seconds = time.monotonic() - started
    model = new_model(run)
    model.load_state_dict(torch.load(final, weights_only=True))
    x, y = evaluation_rows(run)
    result |= {
        "accuracy": accuracy(model, x, y),
        "seconds": seconds,
        "round_seconds": seconds / config.rounds,
    }
    result |= {"previous_version": current, "published_version": None}
    if config.min_accuracy is not None and result["accuracy"] < config.min_accuracy:
        result["not_published"] = f"accuracy {result['accuracy']:.4f} < --min-accuracy {config.min_accuracy}"
        return result
    version = (current or 0) + 1
    split = current is not None and (repository.version_dir(config.model, current) / SPLIT_DIR).is_dir()
    publish_model(
        model, architecture.input_shape, root=config.repository, name=config.model, version=version,
        private_key=config.private_key, split=split, architecture=architecture.arch,
    )  # fmt: skip
    result["published_version"] = version
    return result
