"""Model surgery: physically remove pruned channels/neurons from an ``nn.Sequential``.

A hidden ``Conv2d``/``Linear`` loses output units; the ``BatchNorm`` after it loses the same entries; the
next ``Conv2d`` loses those input channels and the next ``Linear`` those input features (after a
``Flatten``, channel ``c`` is the block of features ``c·H·W … (c+1)·H·W − 1``). Activations and pooling
layers have no parameters and pass through unchanged. The result computes exactly what the masked model
computed, because the removed units produced zeros.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skyline.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn


def _input_columns(keep_in: torch.Tensor, in_features: int) -> torch.Tensor:
    """Indices of the input features that survive, spreading channels over their H·W features if flattened."""
    import torch

    channels = keep_in.numel()
    if in_features % channels:
        raise ConfigError(f"cannot map {channels} channels onto {in_features} input features")
    spatial = in_features // channels
    kept = torch.nonzero(keep_in).flatten()
    return (kept[:, None] * spatial + torch.arange(spatial)[None, :]).flatten()


def _cut_conv(module: nn.Conv2d, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None) -> nn.Conv2d:
    from torch import nn

    weight = module.weight.detach()
    if keep_out is not None:
        weight = weight[keep_out]
    if keep_in is not None:
        weight = weight[:, keep_in]
    new = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        kernel_size=module.kernel_size,  # type: ignore[arg-type]
        stride=module.stride,  # type: ignore[arg-type]
        padding=module.padding,  # type: ignore[arg-type]
        dilation=module.dilation,  # type: ignore[arg-type]
        bias=module.bias is not None,
    )
    new.weight.data.copy_(weight)
    if module.bias is not None and new.bias is not None:
        bias = module.bias.detach()
        new.bias.data.copy_(bias[keep_out] if keep_out is not None else bias)
    return new


def _cut_linear(module: nn.Linear, keep_out: torch.Tensor | None, keep_in: torch.Tensor | None) -> nn.Linear:
    from torch import nn

    weight = module.weight.detach()
    if keep_out is not None:
        weight = weight[keep_out]
    if keep_in is not None:
        weight = weight[:, _input_columns(keep_in, module.in_features)]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
    new.weight.data.copy_(weight)
    if module.bias is not None and new.bias is not None:
        bias = module.bias.detach()
        new.bias.data.copy_(bias[keep_out] if keep_out is not None else bias)
    return new


def _cut_norm(module: nn.Module, keep: torch.Tensor) -> nn.Module:
    from torch import nn

    if isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
        new = type(module)(int(keep.sum()), eps=module.eps, momentum=module.momentum, affine=module.affine)
        with_stats = module.running_mean is not None and module.running_var is not None
        if with_stats and new.running_mean is not None and new.running_var is not None:
            new.running_mean.copy_(module.running_mean[keep])  # type: ignore[index]
            new.running_var.copy_(module.running_var[keep])  # type: ignore[index]
        if module.affine:
            new.weight.data.copy_(module.weight.detach()[keep])
            new.bias.data.copy_(module.bias.detach()[keep])
        return new
    raise ConfigError(
        f"structured pruning cannot cut a {type(module).__name__}; use --prune-kind unstructured"
    )


def remove_units(model: nn.Sequential, keep: dict[str, torch.Tensor]) -> nn.Sequential:
    """A new, smaller ``nn.Sequential``: the units where ``keep[layer_name]`` is False are removed."""
    import torch
    from torch import nn

    layers: list[nn.Module] = []
    keep_in: torch.Tensor | None = None  # the surviving channels of the layer feeding the next weighted one
    for name, module in model.named_children():
        keep_out = keep.get(name)
        if keep_out is not None:
            keep_out = keep_out.bool().cpu()
        if isinstance(module, nn.Conv2d):
            layers.append(_cut_conv(module, keep_out, keep_in))
            keep_in = keep_out
        elif isinstance(module, nn.Linear):
            layers.append(_cut_linear(module, keep_out, keep_in))
            keep_in = keep_out
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm) and keep_in is not None:
            layers.append(_cut_norm(module, keep_in))
        elif any(True for _ in module.parameters()):
            raise ConfigError(f"structured pruning cannot cut layer {name} ({type(module).__name__})")
        else:
            layers.append(module)
    with torch.no_grad():
        return nn.Sequential(*layers).to(next(model.parameters()).device)
