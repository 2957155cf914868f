"""Large language models: an engine with a paged KV cache and continuous batching, behind one port, and the
OpenAI-compatible server around it.

The port (:mod:`skyline.llm.engine`) is torch-free; engines load torch and the model when built. The server's
names (the app, its engine driver, structured outputs, the load client) are imported on first use, so that the
port stays free of FastAPI and torch.
"""

import importlib
from typing import Any

from skyline.llm.engine import (
    ENGINES,
    Engine,
    EngineConfig,
    EngineStats,
    FinishReason,
    GenerationRequest,
    Quantization,
    RequestOutput,
    SamplingParams,
    TokenConstraint,
    create_engine,
)

_HOMES = {
    "api": ("create_app",),
    "api_client": ("remote_chat",),
    "async_engine": ("AsyncEngine", "RequestStream", "run_to_completion"),
    "loadgen": ("LoadConfig", "LoadResult", "run_load"),
    "metrics": ("LLMMetrics",),
    "server": ("LLMServerConfig", "build_app", "running_server", "serve_forever"),
    "structured": ("JsonConstraint", "json_constraint", "response_format_grammar"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    *sorted(_MODULE_OF),
    "ENGINES",
    "Engine",
    "EngineConfig",
    "EngineStats",
    "FinishReason",
    "GenerationRequest",
    "Quantization",
    "RequestOutput",
    "SamplingParams",
    "TokenConstraint",
    "create_engine",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
