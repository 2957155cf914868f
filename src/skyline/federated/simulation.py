"""`skyline fl run`: the Flower apps in Flower's simulation engine (Ray), plus the centralized baseline."""

from __future__ import annotations

import logging
import os
from typing import Any

from skyline.errors import UnavailableError
from skyline.federated.apps import (
    FederatedConfig,
    _dataset,
    make_client_app,
    make_server_app,
    new_model,
    record_level_privacy,
)
from skyline.federated.dp_sgd import client_level_plan
from skyline.federated.local_training import LocalTraining, accuracy, train_local

RAY_OBJECT_STORE_BYTES = 80 * 1024**2
START_ATTEMPTS = 3


def centralized_accuracy(config: FederatedConfig) -> float:
    """The same model trained on the whole training split for as many epochs as a client saw in total."""
    splits = _dataset(config.dataset, config.seed)
    model = new_model(config)
    settings = LocalTraining(
        epochs=config.rounds * config.local.epochs,
        lr=config.local.lr,
        momentum=config.local.momentum,
        batch_size=config.local.batch_size,
    )
    train_local(model, splits.train.x, splits.train.y, settings, seed=config.seed)
    return accuracy(model, splits.test.x, splits.test.y)


def _server_app(config: FederatedConfig, accuracies: list[float], noise: float | None) -> Any:
    if config.secagg:
        from skyline.federated.secagg import make_secagg_server_app

        return make_secagg_server_app(config, accuracies)
    return make_server_app(config, accuracies, noise)


def _client_app(config: FederatedConfig) -> Any:
    if config.secagg:
        from skyline.federated.secagg import make_secagg_client_app

        return make_secagg_client_app(config)
    return make_client_app(config)


def run_federated(config: FederatedConfig, *, num_cpus: int = 2, quiet: bool = False) -> dict[str, Any]:
    """Run the federation in simulation; returns the JSON contract of `skyline fl run`."""
    from flwr.simulation import run_simulation

    if quiet:
        logging.getLogger("flwr").setLevel(logging.ERROR)
    for name, value in {
        "RAY_USAGE_STATS_ENABLED": "0",
        "FLWR_TELEMETRY_ENABLED": "0",
        "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",  # keep accelerator env vars as they are; silences a FutureWarning
        "OMP_NUM_THREADS": "1",
    }.items():
        os.environ.setdefault(name, value)
    noise = None  # client level: the server's noise multiplier (record level: each client's, in dp_sgd)
    client_dp = None
    if config.dp_epsilon is not None and config.dp_unit == "client":
        client_dp = client_level_plan(
            target_epsilon=config.dp_epsilon,
            rounds=config.rounds,
            delta=config.delta,
            clipping_norm=config.clipping,
        )
        noise = client_dp.noise_multiplier
    accuracies: list[float] = []
    backend: Any = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            # Always a fresh Ray of our own: without this, ray.init joins any Ray cluster another job on
            # this host has started (and then refuses num_cpus).
            "address": "local",
            "num_cpus": num_cpus,
            "object_store_memory": RAY_OBJECT_STORE_BYTES,
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.ERROR,
        },
    }
    for attempt in range(1, START_ATTEMPTS + 1):
        accuracies.clear()
        try:
            run_simulation(
                server_app=_server_app(config, accuracies, noise),
                client_app=_client_app(config),
                num_supernodes=config.clients,
                backend_config=backend,
            )
            break
        except RuntimeError as exc:
            # Ray gives its raylet a fixed 30 s to register; on an overloaded host that can fail. Retry.
            if attempt == START_ATTEMPTS:
                raise UnavailableError(
                    f"Flower's simulation engine (Ray) failed {START_ATTEMPTS} times: {exc}; the host may be "
                    "overloaded — retry when it is less busy, or with fewer --clients"
                ) from exc
    if len(accuracies) != config.rounds:
        raise UnavailableError(f"the federated run ended after {len(accuracies)} of {config.rounds} rounds")
    report = record_level_privacy(config) if client_dp is None else client_dp
    private = config.dp_epsilon is not None
    return {
        "rounds": config.rounds,
        "final_accuracy": accuracies[-1] if accuracies else None,
        "centralized_accuracy": centralized_accuracy(config),
        "accuracy_per_round": accuracies,
        "epsilon": None if report is None else report.epsilon,
        # Which neighbouring datasets ε is about: one training row ("record") or one client's whole data.
        "dp_unit": config.dp_unit if private else None,
        "dp_delta": config.delta if private else None,
        "dp_clipping_norm": config.clipping if private else None,
        "secagg": config.secagg,
        "privacy": None if report is None else report.as_dict(),  # as every private run reports it
    }
