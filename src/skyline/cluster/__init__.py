"""The live control plane: API server, state store, node agents and executors.

Names are imported on first use: the server pulls in FastAPI and SQLAlchemy, which an agent or a client
alone need not pay for.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
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
    },
)
