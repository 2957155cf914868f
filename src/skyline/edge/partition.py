"""Where to cut a network between edge and cloud (Neurosurgeon, Kang et al. 2017): pure arithmetic.

Partition ``k`` (0 … n) runs layers ``[0, k)`` on the edge and ``[k, n)`` in the cloud; ``k = 0`` sends
the input (cloud only), ``k = n`` sends nothing (edge only). Its end-to-end latency is

    edge_ms[:k].sum() + (k < n) · (rtt_ms + overhead_ms + bytes(k)·8 / bandwidth + cloud_factor · cloud_ms[k:].sum())

where ``bytes(k)`` is the size of the tensor crossing the cut (the input for k = 0), ``overhead_ms`` what a
tail request costs beyond a bare round trip (decoding, dispatch, the JSON answer) and ``cloud_factor`` how
much slower the cloud runs the tail than its profile says (its load; the profile's per-layer minima) — both
measured by `skyline.edge.split_probe`, 0 and 1 when unknown. `choose_partition`
computes every candidate with prefix sums in O(n); `brute_force_partition` evaluates the formula for each
cut independently and exists so that tests can compare the two.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from skyline.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerProfile:
    """One layer: its name, latency on the edge and in the cloud (ms), and its output size (bytes)."""

    name: str
    edge_ms: float
    cloud_ms: float
    output_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkProfile:
    """The measured link: bandwidth (Mbit/s, edge → cloud) and round-trip time (ms), plus what a tail request
    costs beyond the round trip (``overhead_ms``) and the cloud's slowdown against its profile."""

    bandwidth_mbps: float
    rtt_ms: float
    overhead_ms: float = 0.0
    cloud_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.bandwidth_mbps <= 0 or self.rtt_ms < 0:
            raise ConfigError(
                f"bandwidth_mbps must be > 0 and rtt_ms >= 0, got {self.bandwidth_mbps}, {self.rtt_ms}"
            )
        if self.overhead_ms < 0 or self.cloud_factor <= 0:
            raise ConfigError(
                f"overhead_ms must be >= 0 and cloud_factor > 0, got {self.overhead_ms}, {self.cloud_factor}"
            )

    def cloud_call_ms(self, size_bytes: int, cloud_ms: float) -> float:
        """One tail request: round trip, overhead, sending ``size_bytes``, the cloud's ``cloud_ms`` of work."""
        return self.rtt_ms + self.overhead_ms + self.transfer_ms(size_bytes) + self.cloud_factor * cloud_ms

    def transfer_ms(self, size_bytes: int) -> float:
        return size_bytes * 8 / (self.bandwidth_mbps * 1e6) * 1e3


def _check(layers: Sequence[LayerProfile], input_bytes: int) -> None:
    if not layers:
        raise ConfigError("a network needs at least one layer to partition")
    if input_bytes <= 0:
        raise ConfigError(f"input_bytes must be positive, got {input_bytes}")


def partition_latency_ms(
    layers: Sequence[LayerProfile], input_bytes: int, network: NetworkProfile, k: int
) -> float:
    """Predicted end-to-end latency of cutting before layer ``k``."""
    _check(layers, input_bytes)
    if not 0 <= k <= len(layers):
        raise ConfigError(f"partition must be in 0..{len(layers)}, got {k}")
    edge = sum(layer.edge_ms for layer in layers[:k])
    if k == len(layers):
        return edge
    crossing = input_bytes if k == 0 else layers[k - 1].output_bytes
    cloud = sum(layer.cloud_ms for layer in layers[k:])
    return edge + network.cloud_call_ms(crossing, cloud)


def brute_force_partition(layers: Sequence[LayerProfile], input_bytes: int, network: NetworkProfile) -> int:
    """The best cut by evaluating every candidate separately (ties: the earliest cut)."""
    costs = [partition_latency_ms(layers, input_bytes, network, k) for k in range(len(layers) + 1)]
    return min(range(len(costs)), key=lambda k: (costs[k], k))


def predicted_latencies_ms(
    layers: Sequence[LayerProfile], input_bytes: int, network: NetworkProfile
) -> list[float]:
    """Every cut's predicted latency in one pass (prefix sums of edge time, suffix sums of cloud time)."""
    _check(layers, input_bytes)
    n = len(layers)
    edge_prefix = [0.0]
    for layer in layers:
        edge_prefix.append(edge_prefix[-1] + layer.edge_ms)
    cloud_suffix = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        cloud_suffix[i] = cloud_suffix[i + 1] + layers[i].cloud_ms
    sizes = [input_bytes, *(layer.output_bytes for layer in layers)]
    costs = [edge_prefix[k] + network.cloud_call_ms(sizes[k], cloud_suffix[k]) for k in range(n)]
    costs.append(edge_prefix[n])
    return costs


def choose_partition(layers: Sequence[LayerProfile], input_bytes: int, network: NetworkProfile) -> int:
    """Neurosurgeon's choice: the cut with the lowest predicted latency (ties: the earliest cut)."""
    costs = predicted_latencies_ms(layers, input_bytes, network)
    return min(range(len(costs)), key=lambda k: (costs[k], k))


class PartitionController:
    """Re-chooses the cut when the measured network changes (Neurosurgeon's runtime loop).

    ``measure`` returns the current link as a `NetworkProfile` (`skyline.edge.split_probe.SplitProbe`) or as
    (bandwidth Mbit/s, RTT ms) (`skyline.edge.cloud_client.measure_network` bound to a client). Measurements
    are smoothed (EWMA, weight ``alpha`` on the newest) so that one noisy probe does not flip the cut; the
    bandwidth is smoothed as its inverse (time per byte), which the predicted latency is linear in, so a link
    that drops from 100 to 1 Mbit/s is seen as slow after one probe, not as 50 Mbit/s.
    """

    def __init__(
        self,
        layers: Sequence[LayerProfile],
        input_bytes: int,
        measure: Callable[[], NetworkProfile | tuple[float, float]],
        *,
        alpha: float = 0.5,
    ) -> None:
        if not 0 < alpha <= 1:
            raise ConfigError(f"alpha must be in (0, 1], got {alpha}")
        _check(layers, input_bytes)
        self.layers, self.input_bytes, self.measure, self.alpha = list(layers), input_bytes, measure, alpha
        self.network: NetworkProfile | None = None
        self.partition: int | None = None
        self.changes = 0

    def refresh(self) -> int:
        """Measure, update the smoothed network estimate, and return the (possibly new) best cut."""
        reading = self.measure()
        if not isinstance(reading, NetworkProfile):
            reading = NetworkProfile(bandwidth_mbps=reading[0], rtt_ms=reading[1])
        self.network = reading if self.network is None else _smooth(self.network, reading, self.alpha)
        best = choose_partition(self.layers, self.input_bytes, self.network)
        if self.partition is not None and best != self.partition:
            self.changes += 1
        self.partition = best
        return best

    def predicted_ms(self) -> list[float] | None:
        """Every cut's predicted latency under the current estimate (None before the first refresh)."""
        if self.network is None:
            return None
        return predicted_latencies_ms(self.layers, self.input_bytes, self.network)


def _smooth(old: NetworkProfile, new: NetworkProfile, alpha: float) -> NetworkProfile:
    def mix(a: float, b: float) -> float:
        return alpha * b + (1 - alpha) * a

    return NetworkProfile(
        bandwidth_mbps=1 / mix(1 / old.bandwidth_mbps, 1 / new.bandwidth_mbps),
        rtt_ms=mix(old.rtt_ms, new.rtt_ms),
        overhead_ms=mix(old.overhead_ms, new.overhead_ms),
        cloud_factor=mix(old.cloud_factor, new.cloud_factor),
    )
