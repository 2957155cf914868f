"""The inference server: model repository, runtimes, dynamic batching, the Open Inference Protocol, and the
one helper that runs a server in the background (`BackgroundServer`).

Names are imported on first use: the OIP app pulls in FastAPI, which a process that only needs a runtime
(a compression worker) or the background helper (the control plane, the edge agent) should not pay for.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "app": ("create_app",),
        "batching": ("BatchingConfig", "DynamicBatcher"),
        "manager": ("LoadedModel", "ModelManager"),
        "protocol": ("InferenceRequest", "encode_response", "parse_request"),
        "repository": ("ModelManifest", "ModelRepository"),
        "runtime": (
            "RUNTIMES",
            "OnnxRuntime",
            "Runtime",
            "TorchRuntime",
            "load_runtime",
            "onnx_session",
            "onnx_signature",
            "plan_threads",
        ),
        "server": ("BackgroundServer", "bind_socket", "serve_forever", "wait_for_stop_signal"),
        "tensors": ("InvalidRequestError", "TensorSpec", "check_inputs"),
    },
)
