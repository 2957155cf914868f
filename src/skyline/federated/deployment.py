"""The Flower apps as module-level components, for Flower's deployment engine (SuperLink + SuperNodes).

In simulation `skyline fl run` builds the apps around a `FederatedConfig` object. A real federation loads
the apps by reference instead (`COMPONENTS`, named in the Flower App's ``pyproject.toml``), so the
configuration travels as Flower's run config, and each SuperNode's ``--node-config`` says which rows it
holds: ``data-path=FOLDER`` (an edge agent's own data) or ``partition-id=i`` (a share derived from the
seed, for `skyline fl deploy`). The training step, model, DP-SGD, SecAgg+ and evaluation are the same
functions the simulation runs (`skyline.federated.apps`, `skyline.federated.secagg`).

The ServerApp writes its result (the ``skyline fl run`` JSON contract) to the run config's
``results-path``, and the final global weights (a PyTorch state dict) to ``weights-path`` when given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from skyline.errors import ConfigError
from skyline.federated.apps import (
    FederatedConfig,
    RoundsResult,
    record_level_epsilon,
    run_rounds,
    train_reply,
)
from skyline.federated.local_training import LocalTraining
from skyline.federated.secagg import make_secagg_client_app, run_secagg_rounds

# Run-config keys (Flower's kebab-case) → FederatedConfig fields; defaults are FederatedConfig's.
RUN_CONFIG_KEYS = {
    "clients": "clients",
    "rounds": "rounds",
    "alpha": "alpha",
    "strategy": "strategy",
    "proximal-mu": "proximal_mu",
    "dataset": "dataset",
    "model": "model",
    "seed": "seed",
    "dp-epsilon": "dp_epsilon",
    "dp-delta": "dp_delta",
    "clipping-norm": "clipping_norm",
    "secagg": "secagg",
    "num-classes": "num_classes",
}
# Run-config keys → LocalTraining fields (how each client trains).
LOCAL_KEYS = {"local-epochs": "epochs", "batch-size": "batch_size", "lr": "lr", "momentum": "momentum"}
# Flower's run config has no null: 0 / "" stand for None (no DP; the DP unit's defaults; the dataset's).
_ZERO_IS_NONE = ("dp_epsilon", "dp_delta", "clipping_norm", "num_classes")
_PATH_KEYS = {"eval-data": "eval_data", "initial-weights": "initial_weights"}
# Which server and client app a run uses, by whether it runs SecAgg+.
COMPONENTS = {
    False: ("skyline.federated.deployment:server_app", "skyline.federated.deployment:client_app"),
    True: (
        "skyline.federated.deployment:secagg_server_app",
        "skyline.federated.deployment:secagg_client_app",
    ),
}


def config_from_run(run_config: dict[str, Any]) -> FederatedConfig:
    """The `FederatedConfig` a run config describes (``dp-epsilon`` 0 = no DP; record level only)."""
    fields: dict[str, Any] = {
        field: run_config[key] for key, field in RUN_CONFIG_KEYS.items() if key in run_config
    }
    for field in _ZERO_IS_NONE:
        if not fields.get(field):
            fields.pop(field, None)
    for key, field in _PATH_KEYS.items():
        if run_config.get(key):
            fields[field] = Path(str(run_config[key]))
    if run_config.get("input-shape"):
        fields["input_shape"] = tuple(int(d) for d in str(run_config["input-shape"]).split(","))
    local = {field: run_config[key] for key, field in LOCAL_KEYS.items() if key in run_config}
    return FederatedConfig(**fields, local=LocalTraining(**local))


def run_config_of(config: FederatedConfig) -> dict[str, Any]:
    """The run config that `config_from_run` turns back into ``config`` (every field the apps use)."""
    if config.dp_epsilon is not None and config.dp_unit != "record":
        raise ConfigError(
            "a deployed federation runs record-level DP or none; client-level DP is simulation-only"
        )
    values = {key: getattr(config, field) for key, field in RUN_CONFIG_KEYS.items()}
    values.update({key: getattr(config.local, field) for key, field in LOCAL_KEYS.items()})
    for key, field in RUN_CONFIG_KEYS.items():
        if field in _ZERO_IS_NONE and values[key] is None:
            values[key] = 0
    values.update({key: str(getattr(config, field) or "") for key, field in _PATH_KEYS.items()})
    values["input-shape"] = ",".join(str(d) for d in config.input_shape or ())
    return values


def _write_result(
    context: Context, config: FederatedConfig, accuracies: list[float], rounds: RoundsResult
) -> None:
    epsilon = rounds.epsilon
    if epsilon is None and config.eval_data is None and config.input_shape is None:
        epsilon = record_level_epsilon(config)  # partitions derived from the seed: computable here too
    result = {
        "rounds": config.rounds,
        "final_accuracy": accuracies[-1] if accuracies else None,
        "accuracy_per_round": accuracies,
        "epsilon": epsilon,
        "dp_unit": "record" if config.dp_epsilon is not None else None,
        "dp_delta": config.delta if config.dp_epsilon is not None else None,
        "secagg": config.secagg,
    }
    weights = str(context.run_config.get("weights-path", ""))
    if weights:
        torch.save(rounds.state_dict, weights)
    Path(str(context.run_config["results-path"])).write_text(json.dumps(result))


client_app = ClientApp()


@client_app.train()
def _train(msg: Message, context: Context) -> Message:
    reply: Message = train_reply(config_from_run(dict(context.run_config)), msg, context)
    return reply


server_app = ServerApp()


@server_app.main()
def _main(grid: Grid, context: Context) -> None:
    config = config_from_run(dict(context.run_config))
    accuracies: list[float] = []
    _write_result(context, config, accuracies, run_rounds(config, grid, accuracies))


secagg_client_app = make_secagg_client_app(None)
secagg_server_app = ServerApp()


@secagg_server_app.main()
def _secagg_main(grid: Grid, context: Context) -> None:
    config = config_from_run(dict(context.run_config))
    accuracies: list[float] = []
    _write_result(context, config, accuracies, run_secagg_rounds(config, grid, context, accuracies))
