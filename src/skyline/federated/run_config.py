"""Flower's run config ⇄ `FederatedConfig`: how a federation's configuration travels to a deployed
SuperLink and its SuperNodes (`skyline.federated.deployment`), which have no Python object to share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from skyline.errors import ConfigError
from skyline.federated.apps import FederatedConfig
from skyline.federated.local_training import LocalTraining

__all__ = ["LOCAL_KEYS", "RUN_CONFIG_KEYS", "config_from_run", "run_config_of"]

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
