"""Federated learning with Flower: one set of apps (`FederatedConfig`; FedAvg/FedProx from
`FEDERATED_STRATEGIES`, record-level DP-SGD, SecAgg+) run in Flower's simulation engine (`run_federated`),
on local processes (`LoopbackFederation`), or on edge agents that hold their own data (`start_superlink`,
`start_supernode`, `submit_run`; data folders via `read_rows`/`write_rows`).

Names are imported on first use: the apps pull in torch and Flower.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "aggregate": ("weighted_average",),
        "apps": ("FederatedConfig",),
        "data_folder": ("read_rows", "write_rows"),
        "local_training": ("LocalTraining",),
        "loopback": ("LoopbackFederation", "submit_run"),
        "partition": ("dirichlet_partition",),
        "processes": ("start_superlink", "start_supernode"),
        "simulation": ("run_federated",),
        "strategies": ("FEDERATED_STRATEGIES", "FederatedStrategy"),
    },
)
