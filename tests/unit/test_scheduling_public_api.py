"""Pins the public API of the scheduling, simulation and cluster packages (a change is deliberate)."""

from __future__ import annotations

import importlib

import pytest

pytestmark = pytest.mark.unit

PINNED = {
    "skyline.scheduling": [
        "Decision", "JobView", "NodeSpec", "POLICIES", "Packer", "Policy", "PolicyOptions", "Request",
        "RoundView", "Scheduler", "make_policy", "options_for", "policy_class", "time_scaled", "unplaceable",
        "view_of",
    ],
    "skyline.simulation": [
        "Outcome", "READERS", "SimClock", "SimConfig", "SimExecutor", "Simulation", "Trace", "TraceJob",
        "TraceReader", "TraceSource", "at_load", "build_policy", "compare_policies", "load_trace",
        "parse_cluster", "read_gavel_throughputs", "resample", "simulate", "simulate_policy", "summarize",
        "synthetic_trace",
    ],
    "skyline.cluster": [
        "AgentConfig", "ClusterClient", "ClusterExecutor", "ControlConfig", "ControlPlane", "EXECUTORS",
        "ExecutorConfig", "FidelityConfig", "FidelityResult", "JobRequest", "LocalAgentConfig", "NodeAgent",
        "ServerConfig", "ServerThread", "Serving", "Store", "build", "load_job_file", "run_fidelity",
        "serve_forever", "AutoscaleSpec", "Gateway", "RoutingSpec", "ServiceClient", "ServicePlane", "ServiceSpec",
        "ServicesConfig", "load_service_file", "service_from_mapping", "Console", "ConsoleConfig", "mount_console",
    ],
}  # fmt: skip


@pytest.mark.parametrize("package", sorted(PINNED))
def test_public_api_is_pinned_and_importable(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PINNED[package])
    for name in module.__all__:
        assert getattr(module, name) is not None, name
