"""Pruning during training: masks that grow on a cubic schedule, folded in (or cut out) at the end.

Two pruners share one interface (`Pruner`) and one registry (`PRUNERS`):

- ``unstructured``: global magnitude pruning. The weights of every ``Linear`` and ``Conv2d`` compete in one
  pool; the smallest ``|w|`` are zeroed until exactly ``round(target · total)`` are zero. Masks only grow:
  a weight once pruned stays pruned (Zhu & Gupta 2017).
- ``structured``: channel/neuron pruning. In every hidden ``Conv2d``/``Linear`` the output channels
  (neurons) with the smallest L1 weight norm are masked until ``round(target · units)`` of them are; at the
  end they are physically removed, with the matching input columns of the next layer and the following
  BatchNorm entries, so the saved model really has fewer parameters and FLOPs.

The schedule: ``s(t) = s_f · (1 − (1 − (t − t0)/(t1 − t0))³)`` between steps t0 and t1, 0 before, ``s_f``
after: fast early pruning while the network is redundant, gentle at the end so that it can recover.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from skyline.errors import ConfigError
from skyline.training.surgery import chain_layers, hidden_layers, remove_units, strongest_units

if TYPE_CHECKING:
    import torch
    from torch import nn


def cubic_sparsity(step: int, *, start_step: int, end_step: int, final: float) -> float:
    """The target sparsity at optimizer step ``step`` (see the module docstring)."""
    if step <= start_step:
        return 0.0
    if step >= end_step:
        return final
    remaining = 1.0 - (step - start_step) / (end_step - start_step)
    return final * (1.0 - remaining**3)


def _weighted_layers(model: nn.Module) -> list[tuple[str, nn.Linear | nn.Conv2d]]:
    from torch import nn

    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)]


def dense_weight_count(model: nn.Module) -> int:
    """Weights (not biases) of every Linear and Conv2d: the pool both pruners measure sparsity against."""
    return sum(m.weight.numel() for _, m in _weighted_layers(model))


class Pruner(Protocol):
    """Masks a model's weights during training and folds them in at the end."""

    kind: str

    def update(self, model: nn.Module, target: float) -> None:
        """Grow the masks so that ``target`` (a fraction in [0, 1)) is pruned; never un-prune."""
        ...

    def apply(self, model: nn.Module) -> None:
        """Zero the masked weights in place (call after every optimizer step)."""
        ...

    def sparsity(self, model: nn.Module) -> float:
        """The fraction of the dense model's weights that are pruned (zeroed or dead) now."""
        ...

    def finalize(self, model: nn.Module) -> nn.Module:
        """The model to save: masks folded in, and for structured pruning the channels removed."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """The masks, for checkpoints."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks saved by `state_dict`."""
        ...


class GlobalMagnitudePruner:
    """Unstructured global magnitude pruning (see the module docstring)."""

    kind = "unstructured"

    def __init__(self, model: nn.Module) -> None:
        import torch

        self.masks: dict[str, torch.Tensor] = {
            name: torch.ones_like(module.weight, dtype=torch.bool) for name, module in _weighted_layers(model)
        }
        self.total = dense_weight_count(model)

    def update(self, model: nn.Module, target: float) -> None:
        import torch

        layers = dict(_weighted_layers(model))
        to_prune = round(target * self.total)
        already = sum(int((~mask).sum()) for mask in self.masks.values())
        if to_prune <= already:
            return
        # Pruned weights score -1 so that they are chosen first: the masks only grow.
        scores = torch.cat(
            [
                torch.where(self.masks[name], layers[name].weight.detach().abs(), -1.0).flatten()
                for name in self.masks
            ]
        )
        chosen = torch.topk(scores, to_prune, largest=False).indices
        flat = torch.ones(self.total, dtype=torch.bool)
        flat[chosen] = False
        offset = 0
        for name, mask in self.masks.items():
            count = mask.numel()
            self.masks[name] = flat[offset : offset + count].view_as(mask).clone()
            offset += count
        self.apply(model)

    def apply(self, model: nn.Module) -> None:
        import torch

        with torch.no_grad():
            for name, module in _weighted_layers(model):
                module.weight.mul_(self.masks[name].to(module.weight.device))

    def sparsity(self, model: nn.Module) -> float:
        zeros = sum(int((m.weight == 0).sum()) for _, m in _weighted_layers(model))
        return zeros / self.total

    def finalize(self, model: nn.Module) -> nn.Module:
        self.apply(model)  # the weights are plain tensors: nothing else to fold
        return model

    def state_dict(self) -> dict[str, Any]:
        return {"masks": {name: mask.clone() for name, mask in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.masks = {name: mask.clone() for name, mask in state["masks"].items()}


class ChannelPruner:
    """Structured channel/neuron pruning with physical removal (see the module docstring)."""

    kind = "structured"

    def __init__(self, model: nn.Module) -> None:
        import torch

        layers = hidden_layers(model)
        if not layers:
            raise ConfigError(
                "structured pruning removes hidden channels/neurons and this model has no hidden layer; "
                "use --prune-kind unstructured or a deeper model (mlp, cnn)"
            )
        self.total = dense_weight_count(model)
        # Every weighted layer but the output one loses units; keep[name] marks the surviving units.
        self.keep: dict[str, torch.Tensor] = {
            name: torch.ones(int(m.weight.shape[0]), dtype=torch.bool) for name, m in layers
        }

    def update(self, model: nn.Module, target: float) -> None:
        layers = dict(hidden_layers(model))
        for name, keep in self.keep.items():
            units = keep.numel()
            to_prune = min(units - 1, round(target * units))  # a layer keeps at least one unit
            if to_prune > int((~keep).sum()):
                self.keep[name] = strongest_units(layers[name].weight, units - to_prune, alive=keep)
        self.apply(model)

    def apply(self, model: nn.Module) -> None:
        import torch
        from torch import nn

        with torch.no_grad():
            current: torch.Tensor | None = None
            for name, module in chain_layers(model):
                if name in self.keep:
                    current = self.keep[name].to(next(module.parameters()).device)
                    self._zero_units(module, current)
                elif (
                    isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d | nn.GroupNorm) and current is not None
                ):
                    self._zero_units(module, current)  # or its bias would revive the dead channel
                elif isinstance(module, nn.Linear | nn.Conv2d):
                    current = None

    @staticmethod
    def _zero_units(module: nn.Module, keep: torch.Tensor) -> None:
        weight: torch.Tensor = getattr(module, "weight")  # noqa: B009 - typed access to a Module attribute
        weight.mul_(keep.view((-1,) + (1,) * (weight.dim() - 1)).to(weight.dtype))
        bias: torch.Tensor | None = getattr(module, "bias", None)
        if bias is not None:
            bias.mul_(keep.to(bias.dtype))

    def sparsity(self, model: nn.Module) -> float:
        """The fraction of the dense weights the cut removes: what `finalize` keeps is the rest."""
        return 1.0 - dense_weight_count(remove_units(model, self.keep)) / self.total

    def finalize(self, model: nn.Module) -> nn.Module:
        self.apply(model)
        return remove_units(model, self.keep)

    def state_dict(self) -> dict[str, Any]:
        return {"keep": {name: keep.clone() for name, keep in self.keep.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keep = {name: keep.clone() for name, keep in state["keep"].items()}


PRUNERS: dict[str, type[GlobalMagnitudePruner] | type[ChannelPruner]] = {
    "unstructured": GlobalMagnitudePruner,
    "structured": ChannelPruner,
}


def make_pruner(kind: str, model: nn.Module) -> Pruner:
    """A fresh pruner of ``kind`` for ``model`` (an unwrapped module, not DDP)."""
    if kind not in PRUNERS:
        raise ConfigError(f"unknown prune kind {kind!r}; kinds are {', '.join(PRUNERS)}")
    return PRUNERS[kind](model)
