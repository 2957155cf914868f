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

import torch
from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from skyline.federated.apps import (
    FederatedConfig,
    RoundsResult,
    record_level_epsilon,
    run_rounds,
    train_reply,
)
from skyline.federated.run_config import config_from_run
from skyline.federated.secagg import make_secagg_client_app, run_secagg_rounds

# Which server and client app a run uses, by whether it runs SecAgg+.
COMPONENTS = {
    False: ("skyline.federated.deployment:server_app", "skyline.federated.deployment:client_app"),
    True: (
        "skyline.federated.deployment:secagg_server_app",
        "skyline.federated.deployment:secagg_client_app",
    ),
}


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
