"""Pruning: global magnitude (unstructured) and L1-norm channel/neuron removal (structured).

Unstructured pruning zeroes exactly ``round(amount × N)`` of the N conv/linear weights with the smallest
magnitude, across all layers at once; the file does not shrink (the zeros are still stored) but the model
compresses and sparse kernels can skip them. Structured pruning physically removes output channels of
convolutions and neurons of hidden linear layers (the ones with the smallest L1 norm), and the matching
inputs of the next layer, so the saved model is really smaller and faster. The output layer is never pruned.

Structured pruning needs a plain chain of layers (an ``nn.Sequential``, nested ones flattened), which is
what the project's CNN and MLP are; anything else is refused with a clear message.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune

from skyline.errors import ConfigError

_PASS_THROUGH = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Identity,
)


def prunable_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    """The conv and linear layers, in registration order."""
    return [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def sparsity(model: nn.Module) -> float:
    """Fraction of conv/linear weights that are exactly zero."""
    weights = [layer.weight.detach() for layer in prunable_layers(model)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / total) if total else 0.0


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"pruning amount must be in [0, 1), got {amount}; e.g. 0.5 removes half")


def apply_unstructured_masks(model: nn.Module, amount: float) -> nn.Module:
    """Attach global-magnitude masks (kept through fine-tuning); `fold_masks` makes them permanent."""
    _check_amount(amount)
    layers = prunable_layers(model)
    if not layers:
        raise ConfigError("unstructured pruning found no Conv2d or Linear layer to prune")
    prune.global_unstructured(
        [(layer, "weight") for layer in layers], pruning_method=prune.L1Unstructured, amount=amount
    )
    return model


def fold_masks(model: nn.Module) -> nn.Module:
    """Multiply the masks into the weights and drop the pruning hooks."""
    for layer in prunable_layers(model):
        if prune.is_pruned(layer) and hasattr(layer, "weight_orig"):
            prune.remove(layer, "weight")  # type: ignore[no-untyped-call]
    return model


def _flatten_chain(model: nn.Module) -> list[nn.Module]:
    if not isinstance(model, nn.Sequential):
        raise ConfigError(
            f"structured pruning needs a plain chain of layers (nn.Sequential), got {type(model).__name__}; "
            "use unstructured pruning (kind: unstructured) or int8 quantization for this model"
        )
    layers: list[nn.Module] = []
    for child in model:
        layers.extend(_flatten_chain(child) if isinstance(child, nn.Sequential) else [child])
    return layers


def _keep_count(size: int, amount: float) -> int:
    # Exact and reproducible: remove floor(size × amount), always keep at least one unit.
    return max(1, size - int(size * amount))


def _strongest(weight: torch.Tensor, keep: int) -> torch.Tensor:
    norms = weight.detach().abs().flatten(1).sum(dim=1)
    return torch.sort(torch.topk(norms, keep).indices).values


def _slice_out(layer: nn.Module, index: torch.Tensor) -> nn.Module:
    """A copy of ``layer`` with only the output units in ``index``."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ConfigError("structured pruning does not support grouped/depthwise convolutions")
        new: nn.Module = nn.Conv2d(
            layer.in_channels,
            len(index),
            layer.kernel_size,  # type: ignore[arg-type]
            stride=layer.stride,  # type: ignore[arg-type]
            padding=layer.padding,  # type: ignore[arg-type]
            dilation=layer.dilation,  # type: ignore[arg-type]
            bias=layer.bias is not None,
        )
    else:
        assert isinstance(layer, nn.Linear)
        new = nn.Linear(layer.in_features, len(index), bias=layer.bias is not None)
    new.weight.data = layer.weight.data[index].clone()
    if layer.bias is not None:
        new.bias.data = layer.bias.data[index].clone()
    return new


def _slice_in(layer: nn.Module, index: torch.Tensor, channels_before: int) -> nn.Module:
    """A copy of ``layer`` reading only the inputs in ``index`` (a Linear after Flatten reads blocks)."""
    new = copy.deepcopy(layer)
    if isinstance(layer, nn.Conv2d):
        new.weight.data = layer.weight.data[:, index].clone()
        new.in_channels = len(index)  # type: ignore[assignment]
        return new
    assert isinstance(layer, nn.Linear)
    per_channel = layer.in_features // channels_before  # spatial positions per flattened channel
    columns = (index[:, None] * per_channel + torch.arange(per_channel)[None, :]).flatten()
    new.weight.data = layer.weight.data[:, columns].clone()
    new.in_features = len(columns)  # type: ignore[assignment]
    return new


def _slice_norm(norm: nn.Module, index: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(norm)
    assert isinstance(new, nn.BatchNorm1d | nn.BatchNorm2d)
    new.num_features = len(index)
    for name in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(norm, name)
        if tensor is not None:
            getattr(new, name).data = tensor.data[index].clone()
    return new


def _next_prunable(layers: list[nn.Module], start: int) -> int | None:
    for position in range(start + 1, len(layers)):
        layer = layers[position]
        if isinstance(layer, nn.Conv2d | nn.Linear):
            return position
        if not isinstance(layer, (*_PASS_THROUGH, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten)):
            raise ConfigError(
                f"structured pruning cannot see through layer {type(layer).__name__}; supported between "
                "pruned layers: activations, dropout, pooling, batch norm and Flatten"
            )
    return None


def hidden_sizes(model: nn.Module) -> list[int]:
    """Units (channels or neurons) of each hidden conv/linear layer of a chain model, in order."""
    layers = _flatten_chain(model)
    sizes = []
    for position, layer in enumerate(layers):
        if isinstance(layer, nn.Conv2d | nn.Linear) and _next_prunable(layers, position) is not None:
            sizes.append(layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features)
    return sizes


def schedule_targets(original: list[int], amount: float, stages: int) -> list[list[int]]:
    """Units to keep per hidden layer after each of ``stages`` equal steps toward ``amount`` removed.

    Counted from the original sizes, so the last stage lands exactly on ``size − floor(size × amount)``.
    """
    _check_amount(amount)
    if stages < 1:
        raise ConfigError(f"pruning stages must be >= 1, got {stages}")
    fractions = [amount * k / stages for k in range(1, stages)] + [amount]
    return [[_keep_count(size, fraction) for size in original] for fraction in fractions]


def prune_structured(model: nn.Module, amount: float, *, keep: list[int] | None = None) -> nn.Sequential:
    """A new, smaller model: each hidden conv/linear keeps ``size − floor(size × amount)`` units, or
    ``keep[i]`` units for the i-th hidden layer when ``keep`` is given (see `schedule_targets`)."""
    _check_amount(amount)
    layers = [copy.deepcopy(m) for m in _flatten_chain(model)]
    hidden = 0
    for position, layer in enumerate(layers):
        if not isinstance(layer, nn.Conv2d | nn.Linear):
            continue
        following = _next_prunable(layers, position)
        if following is None:  # the output layer keeps every class
            break
        size = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        target = _keep_count(size, amount) if keep is None else min(size, keep[hidden])
        hidden += 1
        index = _strongest(layer.weight, target)
        layers[position] = _slice_out(layer, index)
        for between in range(position + 1, following):
            if isinstance(layers[between], nn.BatchNorm1d | nn.BatchNorm2d):
                layers[between] = _slice_norm(layers[between], index)
        layers[following] = _slice_in(layers[following], index, size)
    return nn.Sequential(*layers).eval()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (pruned-away zeros of unstructured pruning still count: they are stored)."""
    return sum(p.numel() for p in model.parameters())
