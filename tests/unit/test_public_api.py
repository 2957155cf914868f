"""Pins the public API: a change here is a deliberate, reviewed change of what users may import."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

import skyline

pytestmark = pytest.mark.unit

# Each subpackage's public API (its ``__all__``), by package.
PINNED = {
    "skyline.cli": [
        "app", "main"
    ],
    "skyline.cluster": [
        "AgentConfig", "AutoscaleSpec", "ClusterClient", "ClusterExecutor", "Console", "ConsoleConfig",
        "ControlConfig", "ControlPlane", "EXECUTORS", "ExecutorConfig", "FidelityConfig", "FidelityResult",
        "Gateway", "JobRequest", "LocalAgentConfig", "NodeAgent", "RoutingSpec", "ServerConfig", "ServerThread",
        "ServiceClient", "ServicePlane", "ServiceSpec", "ServicesConfig", "Serving", "Store", "build",
        "load_job_file", "load_service_file", "mount_console", "run_fidelity", "serve_forever",
        "service_from_mapping"
    ],
    "skyline.compression": [
        "BUILTIN_MODELS", "ClassificationData", "CompressionReport", "InferPlan", "InferResult",
        "MeasureConfig", "Measurement", "MetricDropError", "OnnxArtifact", "Predictor", "Recipe", "STEPS",
        "Step", "StepContext", "Subject", "Task", "TorchArtifact", "build_step", "builtin_recipes", "compress",
        "load_recipe", "plan", "refuse_drops", "resolve_subject", "run_batch_inference"
    ],
    "skyline.core": [
        "Allocation", "Clock", "Cluster", "ClusterState", "DemandForecast", "Executor", "GPU_MILLI", "Job",
        "JobEvent", "JobKind", "JobSpec", "JobStatus", "Node", "Placement", "Resources", "Tier"
    ],
    "skyline.edge": [
        "AgentConfig", "CascadeRouter", "CloudClient", "CloudConfig", "EDGE_STRATEGIES", "EdgeAgent",
        "EdgeCloud", "EdgeStrategy", "FederatedNode", "FleetClient", "FleetStore", "FleetTrainingConfig",
        "HardExampleDetector", "LayerProfile", "LinkConditions", "LinkProxy", "LocalModel", "NetworkProfile",
        "PartitionController", "RolloutController", "RolloutSpec", "SplitModel", "UplinkPolicy", "UplinkSender",
        "UplinkStore", "choose_partition", "create_agent_app", "publish_model", "train_on_fleet"
    ],
    "skyline.federated": [
        "FEDERATED_STRATEGIES", "FederatedConfig", "FederatedStrategy", "LocalTraining", "LoopbackFederation",
        "dirichlet_partition", "read_rows", "run_federated", "start_superlink", "start_supernode", "submit_run",
        "weighted_average", "write_rows"
    ],
    "skyline.llm": [
        "AsyncEngine", "ENGINES", "Engine", "EngineConfig", "EngineStats", "FinishReason", "GenerationRequest",
        "JsonConstraint", "LLMMetrics", "LLMServerConfig", "LoadConfig", "LoadResult", "Quantization",
        "RequestOutput", "RequestStream", "SamplingParams", "TokenConstraint", "build_app", "create_app",
        "create_engine", "json_constraint", "remote_chat", "response_format_grammar", "run_load",
        "run_to_completion", "running_server", "serve_forever"
    ],
    "skyline.scheduling": [
        "Decision", "JobView", "NodeSpec", "POLICIES", "Packer", "Policy", "PolicyOptions", "Request",
        "RoundView", "Scheduler", "make_policy", "options_for", "policy_class", "time_scaled", "unplaceable",
        "view_of"
    ],
    "skyline.security": [
        "Action", "AuditLog", "BodySizeLimitMiddleware", "Principal", "RateLimiter", "ResourceKind", "Role",
        "TokenAuthority", "authorize", "client_ssl_context", "decrypt", "decrypt_file", "encrypt",
        "encrypt_file", "error_response", "generate_kek", "generate_self_signed", "generate_signing_keys",
        "install_audit", "install_error_handlers", "is_allowed", "load_kek", "load_public_key", "read_private",
        "require", "rewrap", "server_ssl_context", "sign_directory", "verify_audit_log", "verify_directory",
        "write_private"
    ],
    "skyline.serving": [
        "BackgroundServer", "BatchingConfig", "DynamicBatcher", "InferenceRequest", "InvalidRequestError",
        "LoadedModel", "ModelManager", "ModelManifest", "ModelRepository", "OnnxRuntime", "RUNTIMES", "Runtime",
        "TensorSpec", "TorchRuntime", "bind_socket", "check_inputs", "create_app", "encode_response",
        "load_runtime", "onnx_session", "onnx_signature", "parse_request", "plan_threads", "serve_forever",
        "wait_for_stop_signal"
    ],
    "skyline.simulation": [
        "Outcome", "READERS", "SimClock", "SimConfig", "SimExecutor", "Simulation", "Trace", "TraceJob",
        "TraceReader", "TraceSource", "at_load", "build_policy", "compare_policies", "load_trace",
        "parse_cluster", "read_gavel_throughputs", "resample", "simulate", "simulate_policy", "summarize",
        "synthetic_trace"
    ],
    "skyline.training": [
        "DPSGD", "DatasetSplits", "EpochMetrics", "FitConfig", "LossFn", "MODELS", "PRUNERS", "PrivacyReport",
        "Pruner", "Step", "StepHooks", "TrainConfig", "TrainResult", "build_model", "check_parity",
        "count_parameters", "cubic_sparsity", "epsilon_for", "evaluate", "export_checked", "export_onnx", "fit",
        "hidden_layers", "load_dataset", "make_optimizer", "make_pruner", "noise_multiplier_for",
        "prepare_model", "read_result", "remove_units", "run_epoch", "strongest_units", "train"
    ],
}  # fmt: skip


def test_top_level_api_is_pinned() -> None:
    assert sorted(skyline.__all__) == [
        "Allocation",
        "Clock",
        "Cluster",
        "ClusterState",
        "DemandForecast",
        "Executor",
        "Job",
        "JobEvent",
        "JobKind",
        "JobSpec",
        "JobStatus",
        "Node",
        "Placement",
        "Resources",
        "SkylineError",
        "Tier",
        "__version__",
    ]
    for name in skyline.__all__:
        assert hasattr(skyline, name), name


@pytest.mark.parametrize("package", sorted(PINNED))
def test_subpackage_api_is_pinned_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == PINNED[package]
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError):
        _ = module.no_such_name


def test_core_imports_the_standard_library_only() -> None:
    core = Path(skyline.__file__).parent / "core"
    for path in core.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = top in sys.stdlib_module_names or name.startswith(
                    ("skyline.core", "skyline.errors")
                )
                assert allowed, f"{path.name} imports {name}: core is standard library only"


def test_every_error_is_a_skyline_error_with_an_http_status() -> None:
    import skyline.errors as errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.SkylineError)
        assert 400 <= cls.http_status < 600
