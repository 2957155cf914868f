"""Structured pruning for compression: keep the strongest units of every hidden layer, by count.

Compression cuts a trained model in one or more stages and fine-tunes after each (`PruneStep`); the
distillation student is the teacher cut to a width (`skyline.compression.distill`). Both choose, in every
hidden ``Conv2d``/``Linear``, the units with the largest L1 weight norm and remove the others with the
project's one channel-removal routine (`skyline.training.surgery.remove_units`), so the saved model is
really smaller and faster. Amounts are exact: a layer of ``size`` units keeps ``size − floor(size ×
amount)`` (at least one). Unstructured pruning is training's global magnitude pruner
(`skyline.training.pruning.GlobalMagnitudePruner`), kept through fine-tuning by an ``after_update`` hook.
"""

from __future__ import annotations

from torch import nn

from skyline.errors import ConfigError
from skyline.training.surgery import hidden_layers, remove_units, strongest_units


def _check_amount(amount: float) -> None:
    if not 0.0 <= amount < 1.0:
        raise ConfigError(f"pruning amount must be in [0, 1), got {amount}; e.g. 0.5 removes half")


def _keep_count(size: int, amount: float) -> int:
    # Exact and reproducible: remove floor(size × amount), always keep at least one unit.
    return max(1, size - int(size * amount))


def hidden_sizes(model: nn.Module) -> list[int]:
    """Units (channels or neurons) of each hidden conv/linear layer of a chain model, in order."""
    return [int(layer.weight.shape[0]) for _, layer in hidden_layers(model)]


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
    ``keep[i]`` units for the i-th hidden layer when ``keep`` is given (see `schedule_targets`).

    Layers are cut in order, so a layer's strongest units are judged on the inputs that survived the cut
    before it."""
    _check_amount(amount)
    pruned = remove_units(model, {})  # a flat copy
    counts = keep or [_keep_count(size, amount) for size in hidden_sizes(pruned)]
    for position, count in enumerate(counts):
        name, layer = hidden_layers(pruned)[position]
        units = strongest_units(layer.weight, min(int(layer.weight.shape[0]), count))
        pruned = remove_units(pruned, {name: units})
    return pruned.eval()
