"""Federated learning with Flower: one set of apps (`FederatedConfig`; FedAvg/FedProx from
`FEDERATED_STRATEGIES`, record-level DP-SGD, SecAgg+) run in Flower's simulation engine (`run_federated`),
on local processes (`LoopbackFederation`), or on edge agents that hold their own data (`start_superlink`,
`start_supernode`, `submit_run`; data folders via `read_rows`/`write_rows`).

Names are imported on first use: the apps pull in torch and Flower.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "aggregate": ("weighted_average",),
    "apps": ("FederatedConfig",),
    "data_folder": ("read_rows", "write_rows"),
    "local_training": ("LocalTraining",),
    "loopback": ("LoopbackFederation", "submit_run"),
    "partition": ("dirichlet_partition",),
    "processes": ("start_superlink", "start_supernode"),
    "simulation": ("run_federated",),
    "strategies": ("FEDERATED_STRATEGIES", "FederatedStrategy"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'skyline.federated' has no attribute {name!r}")
    return getattr(importlib.import_module(f"skyline.federated.{module}"), name)
