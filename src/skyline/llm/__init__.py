"""Large language models: an engine with a paged KV cache and continuous batching, behind one port.

The port (:mod:`skyline.llm.engine`) is torch-free; engines load torch and the model when built.
"""

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

__all__ = [
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
