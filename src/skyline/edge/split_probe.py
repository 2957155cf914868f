"""What the split cut depends on, measured through the real link: `SplitProbe` returns a `NetworkProfile`.

Echo probes give the round trip and the bandwidth (`skyline.edge.cloud_client.measure_network`), but a tail
request costs more than an echo, and the cloud runs a tail slower than the sum of its per-layer profile
(per-layer minima, per-call dispatch and softmax, and whatever load the cloud carries). Two real tail requests
measure both, Neurosurgeon-style (it models the server's load too):

- the last cut (a tiny activation, almost no work): its wall time minus the echo round trip, the transfer and
  the profiled work is the per-request ``overhead_ms``; the cloud's own report of its time, minus the
  profiled work, is its fixed per-call cost;
- cut 0 (the input, the whole network): the cloud's reported time, less the fixed cost, over the profiled
  work is ``cloud_factor``.

The cut-0 probe sends one input through the link each time the link is measured (3 kB float32 for a
28×28 image: 25 ms at 1 Mbit/s).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from skyline.edge.cloud_client import CloudClient, measure_network
from skyline.edge.partition import LayerProfile, NetworkProfile
from skyline.edge.split import SplitModel, encode_activation
from skyline.errors import ConfigError

_MIN_CLOUD_FACTOR = 0.5  # a cloud much faster than its own profile is a measuring error, not a fact


class SplitProbe:
    """Callable: measure the link and the split path once (``PartitionController``'s ``measure``)."""

    def __init__(
        self,
        client: CloudClient,
        cloud_model: str,
        version: int,
        model: SplitModel,
        layers: Sequence[LayerProfile],
        *,
        int8: bool = False,
        probe_bytes: int = 256 * 1024,
        repeats: int = 3,
    ) -> None:
        if len(layers) != len(model) or len(model) < 2:
            raise ConfigError(f"need one profile per layer of a network of >= 2 layers, got {len(layers)}")
        if probe_bytes < 1024 or repeats < 1:
            raise ConfigError(f"probe_bytes must be >= 1024 and repeats >= 1, got {probe_bytes}, {repeats}")
        self.client, self.cloud_model, self.version, self.int8 = client, cloud_model, version, int8
        self.probe_bytes, self.repeats = probe_bytes, repeats
        self.layers = list(layers)
        n = len(model)
        zeros = np.zeros((1, *model.input_shape), dtype=np.float32)
        self._last_input = encode_activation(model.run(0, n - 1, zeros), int8=int8)
        self._first_input = encode_activation(zeros, int8=int8)

    def _tail(self, partition: int, payload: bytes, headers: dict[str, str]) -> tuple[float, float]:
        """Median (wall ms, cloud-reported ms) of ``repeats`` real tail requests: a typical request, which is
        what a cut's latency will be (the echo probes take minima, to separate RTT from bandwidth)."""
        walls, reported = [], []
        for _ in range(self.repeats):
            started = time.perf_counter()
            _, cloud_ms = self.client.split_tail_timed(
                self.cloud_model, self.version, partition, payload, headers
            )
            walls.append((time.perf_counter() - started) * 1e3)
            reported.append(cloud_ms)
        return float(np.median(walls)), float(np.median(reported))

    def __call__(self) -> NetworkProfile:
        """One measurement; raises `skyline.errors.UnavailableError` when the cloud cannot be reached."""
        bandwidth, rtt = measure_network(self.client, probe_bytes=self.probe_bytes, repeats=self.repeats)
        link = NetworkProfile(bandwidth_mbps=bandwidth, rtt_ms=rtt)
        n = len(self.layers)
        last_work = self.layers[-1].cloud_ms
        wall, reported_last = self._tail(n - 1, self._last_input.payload, self._last_input.headers)
        overhead = wall - rtt - link.transfer_ms(len(self._last_input.payload)) - last_work
        fixed = max(0.0, reported_last - last_work)
        _, reported_all = self._tail(0, self._first_input.payload, self._first_input.headers)
        work = sum(layer.cloud_ms for layer in self.layers)
        factor = (reported_all - fixed) / work if work > 0 else 1.0
        return NetworkProfile(
            bandwidth_mbps=bandwidth,
            rtt_ms=rtt,
            overhead_ms=max(0.0, overhead),
            cloud_factor=max(_MIN_CLOUD_FACTOR, factor),
        )
