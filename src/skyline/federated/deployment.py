"""The Flower apps as module-level components, for Flower's deployment engine (SuperLink + SuperNodes).

In simulation `skyline fl run` builds the apps around a `FederatedConfig` object. A real federation loads
the apps by reference instead (``skyline.federated.deployment:server_app`` / ``:client_app``, named in
the Flower App's ``pyproject.toml``), so the configuration travels as Flower's run config and each
SuperNode's ``--node-config 'partition-id=i'`` says which share of the data it holds (an edge agent would
hold its own data; here every node derives its Dirichlet share from the same seed). The training step,
model, DP-SGD and evaluation are the same functions the simulation runs (`skyline.federated.apps`).

The ServerApp writes the result (the ``skyline fl run`` JSON contract) to the run config's
``results-path``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from skyline.errors import ConfigError
from skyline.federated.apps import FederatedConfig, record_level_epsilon, run_rounds, train_reply
from skyline.federated.local_training import LocalTraining

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
}
# Run-config keys → LocalTraining fields (how each client trains).
LOCAL_KEYS = {"local-epochs": "epochs", "batch-size": "batch_size", "lr": "lr", "momentum": "momentum"}
# Flower's run config has no null: 0 stands for None (no DP; the DP unit's default δ and clipping norm).
_ZERO_IS_NONE = ("dp_epsilon", "dp_delta", "clipping_norm")


def config_from_run(run_config: dict[str, Any]) -> FederatedConfig:
    """The `FederatedConfig` a run config describes (``dp-epsilon`` 0 = no DP; record level only)."""
    fields = {field: run_config[key] for key, field in RUN_CONFIG_KEYS.items() if key in run_config}
    for field in _ZERO_IS_NONE:
        if not fields.get(field):
            fields.pop(field, None)
    local = {field: run_config[key] for key, field in LOCAL_KEYS.items() if key in run_config}
    return FederatedConfig(**fields, local=LocalTraining(**local))


def run_config_of(config: FederatedConfig) -> dict[str, Any]:
    """The run config that `config_from_run` turns back into ``config`` (every field the apps use)."""
    if config.secagg or (config.dp_epsilon is not None and config.dp_unit != "record"):
        raise ConfigError("the deployment apps run FedAvg/FedProx with record-level DP or none; not SecAgg+")
    values = {key: getattr(config, field) for key, field in RUN_CONFIG_KEYS.items()}
    values.update({key: getattr(config.local, field) for key, field in LOCAL_KEYS.items()})
    for key, field in RUN_CONFIG_KEYS.items():
        if field in _ZERO_IS_NONE and values[key] is None:
            values[key] = 0.0
    return values


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
    run_rounds(config, grid, accuracies)
    result = {
        "rounds": config.rounds,
        "final_accuracy": accuracies[-1] if accuracies else None,
        "accuracy_per_round": accuracies,
        "epsilon": record_level_epsilon(config),
        "dp_unit": "record" if config.dp_epsilon is not None else None,
        "dp_delta": config.delta if config.dp_epsilon is not None else None,
    }
    Path(str(context.run_config["results-path"])).write_text(json.dumps(result))
