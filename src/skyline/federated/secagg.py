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

from skyline.federated.apps import FederatedConfig, _dataset, local_update, new_model
from skyline.federated.local_training import accuracy


def _weights(model: torch.nn.Module) -> list[np.ndarray[Any, Any]]:
    return [value.detach().cpu().numpy() for value in model.state_dict().values()]


def _load(model: torch.nn.Module, weights: list[np.ndarray[Any, Any]]) -> None:
    keys = list(model.state_dict().keys())
    model.load_state_dict(
        OrderedDict((k, torch.from_numpy(np.array(w))) for k, w in zip(keys, weights, strict=True))
    )


def make_secagg_client_app(config: FederatedConfig) -> Any:
    """A ClientApp whose updates leave the node only masked (``secaggplus_mod``)."""
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod
    from flwr.clientapp import ClientApp
    from flwr.common import Context

    class DigitsClient(NumPyClient):
        def __init__(self, partition_id: int) -> None:
            self.partition_id = partition_id

        def fit(
            self, parameters: list[Any], fit_config: dict[str, Any]
        ) -> tuple[list[Any], int, dict[str, Any]]:
            model = new_model(config)
            _load(model, parameters)
            mu = float(fit_config.get("proximal_mu", 0.0))
            loss, rows = local_update(config, self.partition_id, model, mu)
            return _weights(model), rows, {"train_loss": loss}

    def client_fn(context: Context) -> Any:
        return DigitsClient(int(context.node_config["partition-id"])).to_client()

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


def make_secagg_server_app(config: FederatedConfig, accuracies: list[float]) -> Any:
    """A ServerApp running FedAvg/FedProx rounds whose fit stage is the SecAgg+ protocol."""
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import Grid, LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg, FedProx
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    splits = _dataset(config.dataset, config.seed)

    def evaluate(
        server_round: int, parameters: list[Any], _: dict[str, Any]
    ) -> tuple[float, dict[str, float]]:
        model = new_model(config)
        _load(model, parameters)
        value = accuracy(model, splits.test.x, splits.test.y)
        if server_round > 0:
            accuracies.append(value)
        return 1.0 - value, {"accuracy": value}

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        common: dict[str, Any] = {
            "fraction_fit": 1.0,
            "fraction_evaluate": 0.0,
            "min_fit_clients": config.clients,
            "min_available_clients": config.clients,
            "initial_parameters": ndarrays_to_parameters(_weights(new_model(config))),
            "evaluate_fn": evaluate,
        }
        strategy = (
            FedProx(proximal_mu=config.proximal_mu, **common)
            if config.strategy == "fedprox"
            else FedAvg(**common)
        )
        legacy = LegacyContext(
            context=context, config=ServerConfig(num_rounds=config.rounds), strategy=strategy
        )
        shares = (
            config.clients
        )  # every client holds a share of every other's secret (SecAgg); threshold: majority
        workflow = DefaultWorkflow(
            fit_workflow=SecAggPlusWorkflow(num_shares=shares, reconstruction_threshold=shares // 2 + 1)
        )
        workflow(grid, legacy)

    return app
