"""Training (`TrainConfig` → `train` → `TrainResult`) and the model primitives every other package calls:
the one loop (`fit`), DP-SGD and its accounting, ONNX export with a parity check, pruners and channel
removal. Nothing here imports torch until it is used."""

from skyline.training.config import TrainConfig
from skyline.training.data import DatasetSplits, load_dataset
from skyline.training.export import check_parity, export_checked, export_onnx
from skyline.training.fit import (
    FitConfig,
    LossFn,
    Step,
    StepHooks,
    evaluate,
    fit,
    make_optimizer,
    run_epoch,
)
from skyline.training.models import MODELS, build_model, count_parameters
from skyline.training.privacy import (
    DPSGD,
    PrivacyReport,
    epsilon_for,
    noise_multiplier_for,
    prepare_model,
)
from skyline.training.pruning import PRUNERS, Pruner, cubic_sparsity, make_pruner
from skyline.training.result import EpochMetrics, TrainResult
from skyline.training.surgery import hidden_layers, remove_units, strongest_units
from skyline.training.trainer import read_result, train

__all__ = [
    "DPSGD",
    "MODELS",
    "PRUNERS",
    "DatasetSplits",
    "EpochMetrics",
    "FitConfig",
    "LossFn",
    "PrivacyReport",
    "Pruner",
    "Step",
    "StepHooks",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "check_parity",
    "count_parameters",
    "cubic_sparsity",
    "epsilon_for",
    "evaluate",
    "export_checked",
    "export_onnx",
    "fit",
    "hidden_layers",
    "load_dataset",
    "make_optimizer",
    "make_pruner",
    "noise_multiplier_for",
    "prepare_model",
    "read_result",
    "remove_units",
    "run_epoch",
    "strongest_units",
    "train",
]
