"""The inference server: model repository, runtimes, dynamic batching, the Open Inference Protocol, and the
one helper that runs a server in the background (`BackgroundServer`).

Names are imported on first use: the OIP app pulls in FastAPI, which a process that only needs a runtime
(a compression worker) or the background helper (the control plane, the edge agent) should not pay for.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "app": ("create_app",),
    "batching": ("BatchingConfig", "DynamicBatcher"),
    "manager": ("LoadedModel", "ModelManager"),
    "protocol": ("InferenceRequest", "encode_response", "parse_request"),
    "repository": ("ModelManifest", "ModelRepository", "onnx_signature"),
    "runtime": (
        "RUNTIMES",
        "OnnxRuntime",
        "Runtime",
        "TorchRuntime",
        "load_runtime",
        "onnx_session",
        "plan_threads",
    ),
    "server": ("BackgroundServer", "bind_socket", "serve_forever", "wait_for_stop_signal"),
    "tensors": ("InvalidRequestError", "TensorSpec", "check_inputs"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
