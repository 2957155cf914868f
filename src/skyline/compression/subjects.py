"""What `skyline compress MODEL` can compress: built-in names or a model file from `skyline train`."""

from __future__ import annotations

import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from skyline.compression.task import ClassificationData, Task, classification_task
from skyline.errors import ConfigError, DataError, NotFoundError

BUILTIN_MODELS = ("digits-cnn", "minilm", "efficientnet-lite0")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """A model and the task it is judged on."""

    name: str
    module: nn.Module
    task: Task


def _digits_cnn(*, epochs: int) -> Subject:
    """The project's digits CNN, trained by `skyline.training` exactly as ``skyline train`` would."""
    from skyline.training.config import TrainConfig
    from skyline.training.trainer import train

    with tempfile.TemporaryDirectory(prefix="skyline-compress-") as folder:
        config = TrainConfig(
            dataset="digits", model="cnn", epochs=epochs, out_dir=Path(folder), plot=False, export_onnx=False
        )
        train(config)
        module = load_model_file(Path(folder) / "model.pt")
    return Subject(
        name="digits-cnn", module=module, task=classification_task("digits", training_data("digits"))
    )


def training_data(dataset: str) -> ClassificationData:
    """The dataset exactly as `skyline train` split and normalised it (same seed), train and test splits."""
    from skyline.training.data import load_dataset

    splits = load_dataset(dataset)
    if splits.task != "classification":
        raise ConfigError(f"compression evaluates classifiers; dataset {dataset!r} is {splits.task}")
    return ClassificationData(
        x_train=splits.train.x,
        y_train=splits.train.y,
        x_test=splits.test.x,
        y_test=splits.test.y,
        num_classes=splits.num_classes,
    )


def load_model_file(path: Path) -> nn.Module:
    """A whole module saved with ``torch.save(model, path)``; anything else is a clear `DataError`."""
    if not path.is_file():
        raise NotFoundError(f"model file {path} does not exist; pass a model.pt written by `skyline train`")
    try:
        # weights_only=False unpickles code: only load model files you made or trust.
        loaded = torch.load(path, map_location="cpu", weights_only=False)
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        RuntimeError,
        EOFError,
        ValueError,
        AttributeError,
        ModuleNotFoundError,
    ) as exc:
        raise DataError(
            f"cannot read model file {path}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else 'corrupted'}; "
            "expected a whole PyTorch module saved with torch.save (skyline train writes model.pt)"
        ) from None
    if not isinstance(loaded, nn.Module):
        raise DataError(
            f"model file {path} holds a {type(loaded).__name__}, not a PyTorch module; "
            "save the whole model (torch.save(model, path)), not only its state_dict"
        )
    return loaded.eval()


def check_model_fits(module: nn.Module, task: Task, *, source: str) -> None:
    """Run one real batch through the model; wrong input or output shapes become a clear `ConfigError`."""
    batch = task.sample(2)
    tensors = [torch.from_numpy(batch[name]) for name in task.input_names]
    try:
        with torch.inference_mode():
            output = module.eval()(*tensors)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        shapes = ", ".join(f"{name} {tuple(batch[name].shape)}" for name in task.input_names)
        raise ConfigError(
            f"model {source} does not accept {task.name} inputs ({shapes}): {str(exc).splitlines()[0][:200]}; "
            "pass --dataset matching the data the model was trained on"
        ) from None
    expected = task.data.num_classes if task.data is not None else None
    if expected is not None and (output.ndim != 2 or output.shape[1] != expected):
        raise ConfigError(
            f"model {source} outputs shape {tuple(output.shape)} but {task.name} has {expected} classes; "
            "pass --dataset matching the data the model was trained on"
        )


def resolve_subject(model: str, *, dataset: str = "digits", quick: bool = False) -> Subject:
    """A built-in model name (see `BUILTIN_MODELS`) or the path of a `skyline train` model.pt."""
    if model == "digits-cnn":
        return _digits_cnn(epochs=8 if quick else 15)
    if model == "minilm":
        from skyline.compression.minilm import load_minilm, minilm_task

        encoder, tokenizer = load_minilm()
        return Subject(name="all-MiniLM-L6-v2", module=encoder, task=minilm_task(tokenizer))
    if model == "efficientnet-lite0":
        from skyline.compression.efficientnet import efficientnet_subject_parts

        module, task = efficientnet_subject_parts()
        return Subject(name="efficientnet-lite0", module=module, task=task)
    path = Path(model)
    if path.suffix not in (".pt", ".pth") and not path.exists():
        raise NotFoundError(
            f"unknown model {model!r}; built-ins are {', '.join(BUILTIN_MODELS)}, or pass a model.pt path"
        )

    module = load_model_file(path)
    task = classification_task(dataset, training_data(dataset))
    check_model_fits(module, task, source=str(path))
    return Subject(name=path.parent.name or path.stem, module=module, task=task)
