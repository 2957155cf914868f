"""The model registry: ``linear``, ``mlp``, ``cnn`` and ``cnn-bn``, every one an ``nn.Sequential``.

Initialization (documented because results depend on it; all of it is drawn from torch's global RNG, so
``torch.manual_seed(seed)`` before `build_model` gives the same weights every time):

- hidden ``Linear`` and ``Conv2d`` layers: Kaiming-normal, fan-in, for ReLU (He et al. 2015): the activations
  keep their variance through the ReLUs at any depth;
- the output ``Linear``: Xavier-uniform (Glorot & Bengio 2010), no ReLU after it;
- every bias zero; ``BatchNorm`` weight one and bias zero.

Models are plain ``nn.Sequential`` stacks so that structured pruning can cut channels and neurons out of
them physically (`skyline.training.pruning`), and so that they export to ONNX as they are.
``cnn`` has no BatchNorm, so differential privacy and DDP need no special handling; ``cnn-bn`` has
BatchNorm (trains faster on big images; Opacus replaces it with GroupNorm, see `skyline.training.privacy`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from skyline.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from torch import nn

MLP_HIDDEN = (128, 64)


def _flat_size(input_shape: tuple[int, ...]) -> int:
    size = 1
    for dim in input_shape:
        size *= dim
    return size


def _linear(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Multinomial logistic regression (or linear regression with one output)."""
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(_flat_size(input_shape), num_classes))


def _mlp(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """Two ReLU hidden layers of 128 and 64 neurons."""
    from torch import nn

    layers: list[nn.Module] = [nn.Flatten()]
    width = _flat_size(input_shape)
    for hidden in MLP_HIDDEN:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _conv_stack(input_shape: tuple[int, ...], num_classes: int, *, batch_norm: bool) -> nn.Sequential:
    """Two 3×3 conv blocks (32, 64 channels), 2×2 max-pool after each while the side is ≥ 16, then 128 → classes.

    For 8×8 digits that is conv-conv-pool (4×4×64 features); for 28×28 images conv-pool-conv-pool (7×7×64).
    """
    from torch import nn

    if len(input_shape) != 3:
        raise ConfigError(
            f"model 'cnn' needs image inputs (channels, height, width), got shape {input_shape}"
        )
    channels, height, width = input_shape
    layers: list[nn.Module] = []
    for out_channels in (32, 64):
        layers.append(nn.Conv2d(channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU())
        if min(height, width) >= 16:
            layers.append(nn.MaxPool2d(2))
            height, width = height // 2, width // 2
        channels = out_channels
    if layers and not isinstance(layers[-1], nn.MaxPool2d):
        layers.append(nn.MaxPool2d(2))
        height, width = height // 2, width // 2
    layers += [
        nn.Flatten(),
        nn.Linear(channels * height * width, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    ]
    return nn.Sequential(*layers)


def _cnn(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return _conv_stack(input_shape, num_classes, batch_norm=False)


def _cnn_bn(input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    return _conv_stack(input_shape, num_classes, batch_norm=True)


MODELS: dict[str, Callable[[tuple[int, ...], int], nn.Sequential]] = {
    "linear": _linear,
    "mlp": _mlp,
    "cnn": _cnn,
    "cnn-bn": _cnn_bn,
}


def initialize(model: nn.Module) -> None:
    """Apply the documented initialization in place (see the module docstring)."""
    from torch import nn

    weighted = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    for index, module in enumerate(weighted):
        if index == len(weighted) - 1 and isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    for norm in model.modules():
        if isinstance(norm, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(norm.weight)
            nn.init.zeros_(norm.bias)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """A freshly initialized model ``name`` for inputs of ``input_shape`` (one sample) and ``num_classes`` outputs."""
    if name not in MODELS:
        raise NotFoundError(f"unknown model {name!r}; models are {', '.join(MODELS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    model = MODELS[name](tuple(input_shape), num_classes)
    initialize(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (weights and biases), zeros included."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
