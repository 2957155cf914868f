"""Privacy accounting for client-level DP in federated learning (clipped updates + Gaussian noise).

Each round every sampled client's update is clipped to L2 norm ``C`` and the server adds Gaussian noise
with standard deviation ``σ·C`` to the sum (Flower's client-side fixed clipping). With all clients taking
part each round (sampling rate 1), ``rounds`` compositions of the Gaussian mechanism give ε at δ, computed
with Rényi DP (Opacus' RDP accountant). For a target ε the noise multiplier σ is searched.
"""

from __future__ import annotations

import warnings

from skyline.errors import ConfigError


def epsilon_for(*, noise_multiplier: float, rounds: int, sample_rate: float, delta: float) -> float:
    """ε spent after ``rounds`` rounds at noise multiplier σ and client sampling rate ``sample_rate``."""
    from opacus.accountants import RDPAccountant

    if noise_multiplier <= 0 or rounds < 1 or not 0 < sample_rate <= 1 or not 0 < delta < 1:
        raise ConfigError(
            "noise_multiplier > 0, rounds >= 1, sample_rate in (0, 1] and delta in (0, 1) are required"
        )
    accountant = RDPAccountant()
    accountant.history = [(noise_multiplier, sample_rate, rounds)]
    with warnings.catch_warnings():
        # Opacus notes when the best Rényi order sits at the edge of its grid: ε is then a (valid) upper bound.
        warnings.filterwarnings(
            "ignore", message="Optimal order is the (smallest|largest) alpha", category=UserWarning
        )
        return float(accountant.get_epsilon(delta=delta))


def noise_for_epsilon(*, target_epsilon: float, rounds: int, sample_rate: float, delta: float) -> float:
    """The smallest noise multiplier whose ε after ``rounds`` rounds is at most ``target_epsilon``."""
    if target_epsilon <= 0:
        raise ConfigError(f"--dp-epsilon must be positive, got {target_epsilon}")
    low, high = 0.01, 1.0
    while (
        epsilon_for(noise_multiplier=high, rounds=rounds, sample_rate=sample_rate, delta=delta)
        > target_epsilon
    ):
        high *= 2
        if high > 1e4:
            raise ConfigError(f"no noise multiplier reaches ε = {target_epsilon}; raise --dp-epsilon")
    while high - low > 1e-3 * high:  # bisection to 0.1 %: ε decreases as σ grows
        middle = (low + high) / 2
        if (
            epsilon_for(noise_multiplier=middle, rounds=rounds, sample_rate=sample_rate, delta=delta)
            > target_epsilon
        ):
            low = middle
        else:
            high = middle
    return high
