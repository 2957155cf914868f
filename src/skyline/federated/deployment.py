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
}


def config_from_run(run_config: dict[str, Any]) -> FederatedConfig:
    """The `FederatedConfig` a run config describes (``dp-epsilon`` 0 = no DP; record level only)."""
    fields = {field: run_config[key] for key, field in RUN_CONFIG_KEYS.items() if key in run_config}
    if not fields.get("dp_epsilon"):
        fields.pop("dp_epsilon", None)
    return FederatedConfig(**fields)


def run_config_of(config: FederatedConfig) -> dict[str, Any]:
    """The run config that `config_from_run` turns back into ``config``."""
    if config.secagg or (config.dp_epsilon is not None and config.dp_unit != "record"):
        raise ConfigError("the deployment apps run FedAvg/FedProx with record-level DP or none; not SecAgg+")
    values = {key: getattr(config, field) for key, field in RUN_CONFIG_KEYS.items()}
    values["dp-epsilon"] = config.dp_epsilon or 0.0
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
