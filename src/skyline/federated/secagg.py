"""Secure aggregation (SecAgg+, Bell et al. 2020) with Flower: the server learns only the weighted sum.

Flower 1.42 implements SecAgg+ for its workflow API (`SecAggPlusWorkflow` inside a `DefaultWorkflow`,
legacy strategies, `NumPyClient` + `secaggplus_mod` on the clients), not for the message-API strategies of
`skyline.federated.apps`; this module provides the same training (same data split, model, local step and
per-round test evaluation, through `local_update`) on that API. Clients mask their quantized updates
pairwise; the server unmasks only the aggregate (dropped clients' masks are rebuilt from Shamir shares).

Record-level DP composes with it: each client's DP-SGD noise is in its update before the update is masked,
so the server's unmasked sum is a sum of already-private models.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from skyline.federated.apps import (
    FederatedConfig,
    RoundsResult,
    evaluation_rows,
    initial_model,
    local_update,
    new_model,
)
from skyline.federated.local_training import accuracy
from skyline.federated.run_config import config_from_run
from skyline.federated.strategies import FEDERATED_STRATEGIES


def _weights(model: torch.nn.Module) -> list[np.ndarray[Any, Any]]:
    return [value.detach().cpu().numpy() for value in model.state_dict().values()]


def _load(model: torch.nn.Module, weights: list[np.ndarray[Any, Any]]) -> None:
    keys = list(model.state_dict().keys())
    model.load_state_dict(
        OrderedDict((k, torch.from_numpy(np.array(w))) for k, w in zip(keys, weights, strict=True))
    )


def make_secagg_client_app(config: FederatedConfig | None) -> Any:
    """A ClientApp whose updates leave the node only masked (``secaggplus_mod``); with ``config`` None it
    reads each run's configuration from Flower's run config (the deployment engine)."""
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import Context

    class EdgeClient(NumPyClient):
        def __init__(self, run: FederatedConfig, node: dict[str, Any]) -> None:
            self.run, self.node = run, node

        def fit(
            self, parameters: list[Any], fit_config: dict[str, Any]
        ) -> tuple[list[Any], int, dict[str, Any]]:
            model = new_model(self.run)
            _load(model, parameters)
            mu = float(fit_config.get("proximal_mu", 0.0))
            loss, rows, epsilon = local_update(self.run, self.node, model, mu)
            metrics = {"train_loss": loss, **({} if epsilon is None else {"epsilon": epsilon})}
            return _weights(model), rows, metrics

    def client_fn(context: Context) -> Any:
        run = config if config is not None else config_from_run(dict(context.run_config))
        return EdgeClient(run, dict(context.node_config)).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def _largest_epsilon(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    spent = [float(m["epsilon"]) for _, m in metrics if "epsilon" in m]
    return {"epsilon": max(spent)} if spent else {}


def run_secagg_rounds(
    config: FederatedConfig, grid: Any, context: Any, accuracies: list[float]
) -> RoundsResult:
    """A SecAgg+ ServerApp's work: FedAvg/FedProx rounds whose fit stage is the SecAgg+ protocol, the
    global model evaluated after each on `evaluation_rows` (appended to ``accuracies``)."""
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    x, y = evaluation_rows(config)
    latest: list[list[Any]] = []
    epsilons: list[float] = []

    def evaluate(
        server_round: int, parameters: list[Any], _: dict[str, Any]
    ) -> tuple[float, dict[str, float]]:
        model = new_model(config)
        _load(model, parameters)
        value = accuracy(model, x, y)
        latest[:] = [parameters]  # the global model after the last round is the run's result
        if server_round > 0:
            accuracies.append(value)
        return 1.0 - value, {"accuracy": value}

    def fit_metrics(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        found = _largest_epsilon(metrics)
        epsilons.extend(found.values())
        return found

    common: dict[str, Any] = {
        "fraction_fit": 1.0, "fraction_evaluate": 0.0, "min_fit_clients": config.clients,
        "min_available_clients": config.clients, "evaluate_fn": evaluate, "fit_metrics_aggregation_fn": fit_metrics,
        "initial_parameters": ndarrays_to_parameters(_weights(initial_model(config))),
    }  # fmt: skip
    strategy = FEDERATED_STRATEGIES[config.strategy].legacy(config, common)
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=config.rounds), strategy=strategy)
    shares = (
        config.clients
    )  # every client holds a share of every other's secret (SecAgg); threshold: majority
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=shares // 2 + 1)
    )
    workflow(grid, legacy)
    model = new_model(config)
    _load(model, latest[0])
    return RoundsResult(state_dict=model.state_dict(), epsilon=max(epsilons) if epsilons else None)


def make_secagg_server_app(config: FederatedConfig, accuracies: list[float]) -> Any:
    """A ServerApp running FedAvg/FedProx rounds whose fit stage is the SecAgg+ protocol."""
    from flwr.common import Context
    from flwr.server import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_secagg_rounds(config, grid, context, accuracies)

    return app
