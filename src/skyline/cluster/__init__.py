"""The live control plane: API server, state store, node agents and executors.

Names are imported on first use: the server pulls in FastAPI and SQLAlchemy, which an agent or a client
alone need not pay for.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "agent": ("AgentConfig", "NodeAgent"),
    "client": ("ClusterClient",),
    "console": ("Console", "ConsoleConfig", "mount_console"),
    "control": ("ControlConfig", "ControlPlane"),
    "executors": ("EXECUTORS", "ClusterExecutor", "ExecutorConfig"),
    "fidelity": ("FidelityConfig", "FidelityResult", "run_fidelity"),
    "local_agent": ("LocalAgentConfig",),
    "gateway": ("Gateway",),
    "server": ("ServerConfig", "ServerThread", "Serving", "build", "serve_forever"),
    "service_client": ("ServiceClient",),
    "service_plane": ("ServicePlane",),
    "service_spec": (
        "AutoscaleSpec",
        "RoutingSpec",
        "ServiceSpec",
        "load_service_file",
        "service_from_mapping",
    ),
    "services": ("ServicesConfig",),
    "spec": ("JobRequest", "load_job_file"),
    "store": ("Store",),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
