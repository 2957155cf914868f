"""Flower apps: the `ClientApp` every edge agent (or simulated node) runs and the `ServerApp` that drives
FedAvg or FedProx, optionally with differential privacy: record-level (DP-SGD on every client,
`skyline.federated.dp_sgd`, the default) or client-level (client-side clipping + server noise).

The same two apps run in Flower's simulation engine (`skyline.federated.simulation`) and on real nodes
(``flwr run`` against a SuperLink, each edge agent running a SuperNode with its own partition).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from skyline.errors import ConfigError
from skyline.federated.dp_sgd import RecordPrivacy, plan_for, train_private
from skyline.federated.local_training import LocalTraining, accuracy, train_local
from skyline.federated.partition import dirichlet_partition
from skyline.training.data import DatasetSplits, load_dataset
from skyline.training.models import build_model

STRATEGIES = ("fedavg", "fedprox")
DP_UNITS = ("record", "client")
# Defaults per DP unit. Record level: δ well below 1/rows (1,168 digits rows); per-example clipping at 3
# measured best of 1, 2, 3, 5 at ε = 8. Client level: δ below 1/clients, updates clipped to norm 1.
DEFAULT_DELTA = {"record": 1e-5, "client": 1e-3}
DEFAULT_CLIPPING_NORM = {"record": 3.0, "client": 1.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class FederatedConfig:
    """One federated run: who takes part, how data is skewed, how clients train, what privacy applies."""

    clients: int = 10
    rounds: int = 20
    alpha: float = 0.5
    strategy: str = "fedavg"
    proximal_mu: float = 0.01
    dataset: str = "digits"
    model: str = "mlp"
    local: LocalTraining = field(default_factory=LocalTraining)
    seed: int = 0
    dp_epsilon: float | None = None
    dp_unit: str = "record"
    dp_delta: float | None = None  # None: DEFAULT_DELTA[dp_unit]
    clipping_norm: float | None = None  # None: DEFAULT_CLIPPING_NORM[dp_unit]
    secagg: bool = False

    def __post_init__(self) -> None:
        if self.clients < 2 or self.rounds < 1 or self.alpha <= 0:
            raise ConfigError(
                f"need clients >= 2, rounds >= 1, alpha > 0; got {self.clients}, {self.rounds}, {self.alpha}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; strategies are {', '.join(STRATEGIES)}")
        if self.dp_epsilon is not None and self.dp_epsilon <= 0:
            raise ConfigError(f"--dp-epsilon must be positive, got {self.dp_epsilon}")
        if self.dp_unit not in DP_UNITS:
            raise ConfigError(f"unknown DP unit {self.dp_unit!r}; units are {', '.join(DP_UNITS)}")
        if self.secagg and self.dp_epsilon is not None and self.dp_unit == "client":
            raise ConfigError(
                "--secagg with client-level DP is not supported (the server would add the noise after "
                "unmasking); use --dp-unit record, whose noise is added on the clients before masking"
            )
        if self.secagg and self.clients < 3:
            raise ConfigError(f"SecAgg+ needs at least 3 clients, got {self.clients}")
        if (self.clipping_norm is not None and self.clipping_norm <= 0) or (
            self.dp_delta is not None and not 0 < self.dp_delta < 1
        ):
            raise ConfigError("clipping_norm must be > 0 and dp_delta in (0, 1)")

    @property
    def delta(self) -> float:
        """δ of the DP guarantee (the default of the DP unit unless set)."""
        return DEFAULT_DELTA[self.dp_unit] if self.dp_delta is None else self.dp_delta

    @property
    def clipping(self) -> float:
        """The L2 clipping norm: of each example's gradient (record level) or each update (client level)."""
        return DEFAULT_CLIPPING_NORM[self.dp_unit] if self.clipping_norm is None else self.clipping_norm

    def record_privacy(self) -> RecordPrivacy | None:
        """The DP-SGD budget every client trains under, or None without record-level DP."""
        if self.dp_epsilon is None or self.dp_unit != "record":
            return None
        return RecordPrivacy(
            target_epsilon=self.dp_epsilon, delta=self.delta, clipping_norm=self.clipping, rounds=self.rounds
        )


@functools.lru_cache(maxsize=4)
def _dataset(name: str, seed: int) -> DatasetSplits:
    return load_dataset(name, seed=seed)


def client_rows(config: FederatedConfig, partition_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows of one client: its Dirichlet(α) share of the training split."""
    splits = _dataset(config.dataset, config.seed)
    parts = dirichlet_partition(
        splits.train.y.numpy(), clients=config.clients, alpha=config.alpha, seed=config.seed
    )
    rows = torch.from_numpy(parts[partition_id])
    return splits.train.x[rows], splits.train.y[rows]


def new_model(config: FederatedConfig) -> torch.nn.Module:
    splits = _dataset(config.dataset, config.seed)
    torch.manual_seed(config.seed)
    return build_model(config.model, splits.input_shape, splits.num_classes)


def local_update(
    config: FederatedConfig, partition_id: int, model: torch.nn.Module, proximal_mu: float
) -> tuple[float, int]:
    """One client's round, shared by both apps: train ``model`` in place on the client's rows (with
    DP-SGD under record-level DP); returns the last epoch's mean loss and the number of rows."""
    torch.set_num_threads(1)
    x, y = client_rows(config, partition_id)
    settings = LocalTraining(
        epochs=config.local.epochs,
        lr=config.local.lr,
        momentum=config.local.momentum,
        batch_size=config.local.batch_size,
        proximal_mu=proximal_mu,
    )
    privacy = config.record_privacy()
    if privacy is not None:
        return train_private(model, x, y, settings, privacy), len(y)
    return train_local(model, x, y, settings, seed=config.seed + partition_id), len(y)


def record_level_epsilon(config: FederatedConfig) -> float | None:
    """The largest ε any client's DP-SGD spends over the run (each row lives on one client only)."""
    privacy = config.record_privacy()
    if privacy is None:
        return None
    return max(
        plan_for(
            privacy,
            rows=len(client_rows(config, i)[1]),
            epochs=config.local.epochs,
            batch_size=config.local.batch_size,
        ).epsilon
        for i in range(config.clients)
    )


def train_reply(config: FederatedConfig, msg: Any, context: Any) -> Any:
    """A ClientApp's answer to a train message: the global model trained on this node's partition."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    model = new_model(config)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    train_config = msg.content.config_records.get("config")
    mu = float(str(train_config.get("proximal-mu", 0.0))) if train_config is not None else 0.0
    loss, rows = local_update(config, int(context.node_config["partition-id"]), model, mu)
    metrics = MetricRecord({"train_loss": loss, "num-examples": rows})
    return Message(
        content=RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics}), reply_to=msg
    )


def make_client_app(config: FederatedConfig) -> Any:
    """The ClientApp: load the global model, train on this node's partition, return it with its size."""
    from flwr.app import Context, Message
    from flwr.clientapp import ClientApp

    mods: list[Any] = []
    if config.dp_epsilon is not None and config.dp_unit == "client":
        from flwr.clientapp.mod import fixedclipping_mod

        mods.append(fixedclipping_mod)
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        reply: Message = train_reply(config, msg, context)
        return reply

    return app


def _strategy(config: FederatedConfig, noise_multiplier: float | None) -> Any:
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg, FedProx

    common: dict[str, Any] = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": config.clients,
        "min_available_nodes": config.clients,
    }
    base = (
        FedProx(proximal_mu=config.proximal_mu, **common)
        if config.strategy == "fedprox"
        else FedAvg(**common)
    )
    if noise_multiplier is None:
        return base
    return DifferentialPrivacyClientSideFixedClipping(
        base,
        noise_multiplier=noise_multiplier,
        clipping_norm=config.clipping,
        num_sampled_clients=config.clients,
    )


def run_rounds(
    config: FederatedConfig, grid: Any, accuracies: list[float], noise_multiplier: float | None = None
) -> None:
    """A ServerApp's work: the strategy's rounds over ``grid``, the global model evaluated on the test
    split after each (appended to ``accuracies``)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    splits = _dataset(config.dataset, config.seed)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = new_model(config)
        model.load_state_dict(arrays.to_torch_state_dict())
        value = accuracy(model, splits.test.x, splits.test.y)
        if server_round > 0:
            accuracies.append(value)
        return MetricRecord({"accuracy": value})

    _strategy(config, noise_multiplier).start(
        grid=grid,
        initial_arrays=ArrayRecord(new_model(config).state_dict()),
        num_rounds=config.rounds,
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate,
    )


def make_server_app(
    config: FederatedConfig, accuracies: list[float], noise_multiplier: float | None = None
) -> Any:
    """The ServerApp: run the strategy, evaluating the global model on the test split after every round."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_rounds(config, grid, accuracies, noise_multiplier)

    return app
