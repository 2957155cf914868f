"""Flower apps: the `ClientApp` every edge agent (or simulated node) runs and the `ServerApp` that drives
FedAvg or FedProx, optionally with differential privacy: record-level (DP-SGD on every client,
`skyline.federated.dp_sgd`, the default) or client-level (client-side clipping + server noise).

The same two apps run in Flower's simulation engine (`skyline.federated.simulation`) and on real nodes
(``flwr run`` against a SuperLink). A node trains on the rows its node config names: ``data-path`` (a
folder of shards, `skyline.federated.data_folder`: what an edge agent holds) or ``partition-id`` (its
Dirichlet(α) share of the dataset, for simulations and `skyline fl deploy`). The server evaluates the
global model after each round on ``eval_data`` (a folder of shards) or the dataset's test split.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skyline.errors import ConfigError
from skyline.federated.data_folder import read_rows
from skyline.federated.dp_sgd import RecordPrivacy, plan_for, record_level_report, train_private
from skyline.federated.local_training import LocalTraining, accuracy, train_local
from skyline.federated.partition import dirichlet_partition
from skyline.federated.strategies import FEDERATED_STRATEGIES
from skyline.training.data import DatasetSplits, load_dataset
from skyline.training.models import build_model
from skyline.training.privacy import PrivacyReport

NodeConfig = Mapping[str, Any]
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
    # A federation of edge agents: the model's shape (else the dataset's), where the server's evaluation
    # rows are (else the dataset's test split) and the weights the first round starts from (else fresh).
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    eval_data: Path | None = None
    initial_weights: Path | None = None

    def __post_init__(self) -> None:
        if self.clients < 2 or self.rounds < 1 or self.alpha <= 0:
            raise ConfigError(
                f"need clients >= 2, rounds >= 1, alpha > 0; got {self.clients}, {self.rounds}, {self.alpha}"
            )
        if self.strategy not in FEDERATED_STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}; strategies are {', '.join(FEDERATED_STRATEGIES)}"
            )
        if (self.input_shape is None) != (self.num_classes is None):
            raise ConfigError("give both input_shape and num_classes, or neither (the dataset's)")
        self._check_privacy()

    def _check_privacy(self) -> None:
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


def client_rows(config: FederatedConfig, node: NodeConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows of one node: the shards in its ``data-path`` folder, else its Dirichlet(α)
    share (``partition-id``) of the training split."""
    if "data-path" in node:
        x, y = read_rows(Path(str(node["data-path"])))
        return torch.from_numpy(x), torch.from_numpy(y)
    splits = _dataset(config.dataset, config.seed)
    parts = dirichlet_partition(
        splits.train.y.numpy(), clients=config.clients, alpha=config.alpha, seed=config.seed
    )
    rows = torch.from_numpy(parts[int(node["partition-id"])])
    return splits.train.x[rows], splits.train.y[rows]


def evaluation_rows(config: FederatedConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """What the server evaluates the global model on: ``eval_data`` if given, else the test split."""
    if config.eval_data is not None:
        x, y = read_rows(config.eval_data)
        return torch.from_numpy(x), torch.from_numpy(y)
    test = _dataset(config.dataset, config.seed).test
    return test.x, test.y


def new_model(config: FederatedConfig) -> torch.nn.Module:
    """The model every round starts from before its weights are loaded (seeded initialization)."""
    if config.input_shape is not None and config.num_classes is not None:
        shape, classes = config.input_shape, config.num_classes
    else:
        splits = _dataset(config.dataset, config.seed)
        shape, classes = splits.input_shape, splits.num_classes
    torch.manual_seed(config.seed)
    return build_model(config.model, shape, classes)


def initial_model(config: FederatedConfig) -> torch.nn.Module:
    """The global model of round 0: ``initial_weights`` (a state dict) when given, else fresh."""
    model = new_model(config)
    if config.initial_weights is not None:
        try:
            model.load_state_dict(torch.load(config.initial_weights, weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot start from {config.initial_weights}: {exc}") from exc
    return model


def local_update(
    config: FederatedConfig, node: NodeConfig, model: torch.nn.Module, proximal_mu: float
) -> tuple[float, int, float | None]:
    """One node's round, shared by every app: train ``model`` in place on the node's rows (DP-SGD under
    record-level DP); returns the last epoch's mean loss, the number of rows, and the ε this node's
    DP-SGD spends over the whole run (None without record-level DP)."""
    torch.set_num_threads(1)
    x, y = client_rows(config, node)
    settings = LocalTraining(
        epochs=config.local.epochs,
        lr=config.local.lr,
        momentum=config.local.momentum,
        batch_size=config.local.batch_size,
        proximal_mu=proximal_mu,
    )
    privacy = config.record_privacy()
    if privacy is not None:
        spent = plan_for(privacy, rows=len(y), epochs=settings.epochs, batch_size=settings.batch_size).epsilon
        return train_private(model, x, y, settings, privacy), len(y), spent
    seed = config.seed + int(node.get("partition-id", 0))
    return train_local(model, x, y, settings, seed=seed), len(y), None


def record_level_privacy(config: FederatedConfig) -> PrivacyReport | None:
    """The record-level guarantee of a partitioned run: its worst client's (each row lives on one client)."""
    privacy = config.record_privacy()
    if privacy is None:
        return None
    rows = [len(client_rows(config, {"partition-id": i})[1]) for i in range(config.clients)]
    local = config.local
    return record_level_report(privacy, client_rows=rows, epochs=local.epochs, batch_size=local.batch_size)


def record_level_epsilon(config: FederatedConfig) -> float | None:
    """The largest ε any client's DP-SGD spends over a partitioned run."""
    report = record_level_privacy(config)
    return None if report is None else report.epsilon


def train_reply(config: FederatedConfig, msg: Any, context: Any) -> Any:
    """A ClientApp's answer to a train message: the global model trained on this node's rows."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict

    model = new_model(config)
    model.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
    train_config = msg.content.config_records.get("config")
    mu = float(str(train_config.get("proximal-mu", 0.0))) if train_config is not None else 0.0
    loss, rows, epsilon = local_update(config, dict(context.node_config), model, mu)
    values: dict[str, Any] = {"train_loss": loss, "num-examples": rows}
    if epsilon is not None:
        values["epsilon"] = epsilon
    return Message(
        content=RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(values)}),
        reply_to=msg,
    )


def make_client_app(config: FederatedConfig) -> Any:
    """The ClientApp: load the global model, train on this node's rows, return it with its size."""
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


def aggregate_train_metrics(contents: list[Any], weighted_by_key: str) -> Any:
    """Flower's example-weighted average of the clients' train metrics, except ``epsilon``: the largest
    any client spent (the run's record-level guarantee is its weakest client's)."""
    from flwr.app import MetricRecord
    from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

    merged = aggregate_metricrecords(contents, weighted_by_key)
    spent = [float(str(c["metrics"]["epsilon"])) for c in contents if "epsilon" in c["metrics"]]
    if spent:
        merged["epsilon"] = max(spent)
    return MetricRecord(dict(merged))


def _strategy(config: FederatedConfig, noise_multiplier: float | None) -> Any:
    from flwr.serverapp.strategy import DifferentialPrivacyClientSideFixedClipping

    common: dict[str, Any] = {
        "fraction_train": 1.0,
        "fraction_evaluate": 0.0,
        "min_train_nodes": config.clients,
        "min_available_nodes": config.clients,
        "train_metrics_aggr_fn": aggregate_train_metrics,
    }
    base = FEDERATED_STRATEGIES[config.strategy].message(config, common)
    if noise_multiplier is None:
        return base
    return DifferentialPrivacyClientSideFixedClipping(
        base,
        noise_multiplier=noise_multiplier,
        clipping_norm=config.clipping,
        num_sampled_clients=config.clients,
    )


@dataclass(frozen=True, slots=True)
class RoundsResult:
    """What a run of rounds produced: the final global weights and the largest ε a client spent."""

    state_dict: dict[str, torch.Tensor]
    epsilon: float | None


def run_rounds(
    config: FederatedConfig, grid: Any, accuracies: list[float], noise_multiplier: float | None = None
) -> RoundsResult:
    """A ServerApp's work: the strategy's rounds over ``grid``, the global model evaluated after each on
    `evaluation_rows` (appended to ``accuracies``)."""
    from flwr.app import ArrayRecord, ConfigRecord, MetricRecord

    x, y = evaluation_rows(config)

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model = new_model(config)
        model.load_state_dict(arrays.to_torch_state_dict())
        value = accuracy(model, x, y)
        if server_round > 0:
            accuracies.append(value)
        return MetricRecord({"accuracy": value})

    result = _strategy(config, noise_multiplier).start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model(config).state_dict()),
        num_rounds=config.rounds,
        train_config=ConfigRecord({}),
        evaluate_fn=evaluate,
    )
    spent = [float(str(m["epsilon"])) for m in result.train_metrics_clientapp.values() if "epsilon" in m]
    return RoundsResult(state_dict=result.arrays.to_torch_state_dict(), epsilon=max(spent) if spent else None)


def make_server_app(
    config: FederatedConfig, accuracies: list[float], noise_multiplier: float | None = None
) -> Any:
    """The ServerApp: run the strategy, evaluating the global model after every round."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_rounds(config, grid, accuracies, noise_multiplier)

    return app
