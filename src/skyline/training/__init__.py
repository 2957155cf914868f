"""Training (`TrainConfig` → `train` → `TrainResult`) and the model primitives every other package calls:
the one loop (`fit`), DP-SGD and its accounting, ONNX export with a parity check, pruners and channel
removal. Nothing here imports torch until it is used."""

from skyline.lazy import lazy_exports

__all__, __getattr__ = lazy_exports(
    __name__,
    {
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
    },
)
