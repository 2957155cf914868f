"""Training (`TrainConfig` → `train` → `TrainResult`) and the model primitives every other package calls:
the one loop (`fit`), DP-SGD and its accounting, ONNX export with a parity check, pruners and channel
removal. Nothing here imports torch until it is used."""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "config": ("TrainConfig",),
    "data": ("DatasetSplits", "load_dataset"),
    "export": ("check_parity", "export_checked", "export_onnx"),
    "fit": ("FitConfig", "LossFn", "Step", "StepHooks", "evaluate", "fit", "make_optimizer", "run_epoch"),
    "models": ("MODELS", "build_model", "count_parameters"),
    "privacy": ("DPSGD", "PrivacyReport", "epsilon_for", "noise_multiplier_for", "prepare_model"),
    "pruning": ("PRUNERS", "Pruner", "cubic_sparsity", "make_pruner"),
    "result": ("EpochMetrics", "TrainResult"),
    "surgery": ("hidden_layers", "remove_units", "strongest_units"),
    "trainer": ("read_result", "train"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = sorted(_MODULE_OF)  # the public API: the names above, by the module that defines them


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
