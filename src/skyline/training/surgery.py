"""Structured channel removal: physically cut units (output channels, neurons) out of a chain of layers.

The one routine behind structured pruning during training (`skyline.training.pruning.ChannelPruner`) and
compression's pruning and distillation. A model is a chain: an ``nn.Sequential``, nested ones flattened
(a layer's name is its ``named_modules`` path, e.g. ``"3"`` or ``"1.0"``). A hidden ``Conv2d``/``Linear``
loses output units; the ``BatchNorm`` after it loses the same entries; the next ``Conv2d`` loses those
input channels and the next ``Linear`` those input features (after a ``Flatten``, channel ``c`` is the
block of features ``c·H·W … (c+1)·H·W − 1``). Layers without parameters (activations, dropout, pooling,
``Flatten``) pass through; any other layer after a cut one is refused. The output layer keeps every
class. Removing units whose weights and bias are zero changes nothing the model computes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING

from skyline.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


def chain_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of a chain model in order, nested ``nn.Sequential`` flattened, with their paths."""
    from torch import nn

    if not isinstance(model, nn.Sequential):
        raise ConfigError(
            f"structured pruning needs a plain chain of layers (nn.Sequential), got {type(model).__name__}; "
            "use unstructured pruning (kind: unstructured) or int8 quantization for this model"
        )
    layers: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            layers += [(f"{name}.{inner}", layer) for inner, layer in chain_layers(child)]
        else:
            layers.append((name, child))
    return layers


def hidden_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """The ``Conv2d``/``Linear`` layers that can lose units: every one of the chain but the output layer."""
    from torch import nn

    weighted = [(n, m) for n, m in chain_layers(model) if isinstance(m, nn.Conv2d | nn.Linear)]
    return weighted[:-1]


def strongest_units(weight: torch.Tensor, keep: int, alive: torch.Tensor | None = None) -> torch.Tensor:
    """A mask of the ``keep`` output units with the largest L1 weight norm (only ``alive`` ones count)."""
    import torch

    norms = weight.detach().abs().flatten(1).sum(dim=1).cpu()
    if alive is not None:
        norms = torch.where(alive, norms, -1.0)  # dead units rank last: masks only grow
    mask = torch.zeros(len(norms), dtype=torch.bool)
    mask[torch.topk(norms, keep).indices] = True
    return mask


def _input_columns(keep_in: torch.Tensor, in_features: int) -> torch.Tensor:
    """Indices of the input features that survive, spreading channels over their H·W features if flattened."""
    import torch

    channels = keep_in.numel()
    if in_features % channels:
        raise ConfigError(f"cannot map {channels} channels onto {in_features} input features")
    spatial = in_features // channels
    kept = torch.nonzero(keep_in).flatten()
    return (kept[:, None] * spatial + torch.arange(spatial)[None, :]).flatten()


def _cut_weighted(
    layer: nn.Conv2d | nn.Linear, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None
) -> nn.Module:
    from torch import nn

    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ConfigError("structured pruning does not support grouped/depthwise convolutions")
    new = copy.deepcopy(layer)
    weight, bias = layer.weight.detach(), None if layer.bias is None else layer.bias.detach()
    if keep_out is not None:
        weight, bias = weight[keep_out], None if bias is None else bias[keep_out]
    if keep_in is not None:
        conv = isinstance(layer, nn.Conv2d)
        weight = weight[:, keep_in if conv else _input_columns(keep_in, layer.weight.shape[1])]
    new.weight = nn.Parameter(weight.clone())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    if isinstance(new, nn.Conv2d):
        new.out_channels, new.in_channels = weight.shape[0], weight.shape[1]
    else:
        new.out_features, new.in_features = weight.shape[0], weight.shape[1]
    return new


def _cut_norm(norm: nn.BatchNorm1d | nn.BatchNorm2d, keep: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(norm)
    new.num_features = int(keep.sum())
    for name in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(norm, name)
        if tensor is not None:
            getattr(new, name).data = tensor.data[keep].clone()
    return new


def remove_units(model: nn.Module, keep: Mapping[str, torch.Tensor]) -> nn.Sequential:
    """A new, smaller chain: the units where ``keep[layer path]`` is False are gone (see the module docstring)."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    keep_in: torch.Tensor | None = (
        None  # the surviving units of the last cut layer, until the next weighted one
    )
    for name, layer in chain_layers(model):
        if isinstance(layer, nn.Conv2d | nn.Linear):
            keep_out = keep[name].bool().cpu() if name in keep else None
            layers.append(_cut_weighted(layer, keep_out, keep_in))
            keep_in = keep_out
        elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d) and keep_in is not None:
            layers.append(_cut_norm(layer, keep_in))
        elif keep_in is not None and any(True for _ in layer.parameters()):
            raise ConfigError(
                f"structured pruning cannot see through layer {name} ({type(layer).__name__}); supported "
                "between pruned layers: activations, dropout, pooling, batch norm and Flatten"
            )
        else:
            layers.append(copy.deepcopy(layer))
    with torch.no_grad():
        return nn.Sequential(*layers).to(next(model.parameters()).device)
