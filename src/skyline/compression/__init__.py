"""Inference optimization: recipes of steps (prune, distill, export, optimize, quantize, torchao, half) applied
to a model, every variant measured side by side with the original, the report and its accuracy gate, and
parallel batch inference.

Names are imported on first use: most of compression imports torch, and its batch-inference worker
processes (ONNX Runtime only) must not pay for it.
"""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
        "artifact": ("OnnxArtifact", "TorchArtifact"),
        "batch_infer": ("InferPlan", "InferResult", "plan", "run_batch_inference"),
        "measure": ("MeasureConfig", "Measurement"),
        "pipeline": ("compress",),
        "recipe": ("Recipe", "builtin_recipes", "load_recipe"),
        "report": ("CompressionReport", "MetricDropError", "refuse_drops"),
        "steps": ("STEPS", "Step", "StepContext", "build_step"),
        "subjects": ("BUILTIN_MODELS", "Subject", "resolve_subject"),
        "task": ("ClassificationData", "Predictor", "Task"),
    },
)
