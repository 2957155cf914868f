"""FedAvg's aggregation: the example-weighted average of client models (McMahan et al. 2017).

Flower's strategies do this on the server; this plain version documents the arithmetic and lets tests
check Flower's result against a hand computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from skyline.errors import ConfigError

Arrays = list[npt.NDArray[np.floating]]


def weighted_average(updates: Sequence[tuple[Arrays, int]]) -> Arrays:
    """Σ nᵢ·wᵢ / Σ nᵢ, layer by layer, for client models ``wᵢ`` trained on ``nᵢ`` examples."""
    if not updates:
        raise ConfigError("cannot average zero client updates")
    total = sum(n for _, n in updates)
    if total <= 0 or any(n < 0 for _, n in updates):
        raise ConfigError(f"example counts must be >= 0 with a positive sum, got {[n for _, n in updates]}")
    layers = len(updates[0][0])
    if any(len(arrays) != layers for arrays, _ in updates):
        raise ConfigError("every client update must have the same number of arrays")
    return [
        np.sum([arrays[i].astype(np.float64) * n for arrays, n in updates], axis=0) / total
        for i in range(layers)
    ]
