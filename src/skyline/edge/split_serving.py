"""The agent's split strategy: run the head up to the current cut, the cloud runs the tail.

`SplitServing` profiles the network once (per-layer latency on this host, × ``edge_slowdown`` for the emulated
edge, and each layer's output size), measures the link with `skyline.edge.split_probe.SplitProbe` and keeps
Neurosurgeon's cut in a `PartitionController`; ``refresh`` (the agent calls it every ``probe_s``) re-measures
and re-chooses. When the cloud cannot be reached — a request times out or fails, or a probe does — the whole
network runs on the edge and the answer is marked degraded; the cut stays at edge-only until a probe
reaches the cloud again. The fallback continues from the head's activation (the head is not run twice).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from torch import nn

from skyline.edge.cloud_client import CloudClient
from skyline.edge.partition import PartitionController
from skyline.edge.split import SplitExecutor, encode_activation, layer_names, profile_layers
from skyline.edge.split_probe import SplitProbe
from skyline.errors import ConfigError, SkylineError, UnavailableError

FloatArray = npt.NDArray[np.float32]


@dataclass(slots=True)
class SplitCounts:
    answered: int = 0
    degraded: int = 0
    probe_failures: int = 0


class SplitServing:
    """Answers batches with the current cut; ``refresh`` re-measures the link and re-chooses the cut."""

    def __init__(
        self,
        model: nn.Sequential,
        input_shape: tuple[int, ...],
        *,
        cloud: CloudClient,
        probe_client: CloudClient,
        cloud_model: str,
        edge_slowdown: float = 10.0,
        int8: bool = False,
        probe_bytes: int = 256 * 1024,
        alpha: float = 0.5,
    ) -> None:
        self.model, self.input_shape, self.cloud_model = model, input_shape, cloud_model
        self.int8 = int8
        self.layers = profile_layers(model, input_shape, edge_slowdown=edge_slowdown, int8=int8)
        self.names = layer_names(model)
        input_bytes = math.prod(input_shape) * (1 if int8 else 4)
        probe = SplitProbe(
            probe_client, cloud_model, model, self.layers, input_shape, int8=int8, probe_bytes=probe_bytes
        )
        self.controller = PartitionController(self.layers, input_bytes, probe, alpha=alpha)
        self.executor = SplitExecutor(
            model,
            lambda k, sent: cloud.split_tail(cloud_model, k, sent.payload, sent.headers),
            edge_ms=[layer.edge_ms for layer in self.layers],
            int8=int8,
        )
        self.partition = len(model)  # edge only until the first probe reached the cloud
        self.link_up = False
        self.counts = SplitCounts()
        self._lock = threading.Lock()

    def check_input(self, x: FloatArray) -> None:
        """Raise `ConfigError` (HTTP 422) unless ``x`` is a non-empty batch of the network's input shape."""
        if x.ndim != len(self.input_shape) + 1 or x.shape[1:] != self.input_shape or x.shape[0] == 0:
            raise ConfigError(
                f"input shape {list(x.shape)} does not fit the split network's input "
                f"{['batch', *self.input_shape]}; send a batch"
            )

    def refresh(self) -> int:
        """Measure the link (echo and tail probes) and re-choose the cut; edge-only while the cloud is away.

        Any skyline error from the probe counts as a failed probe: an unreachable cloud, a refused (revoked)
        token, a malformed answer (`CloudClient` raises `UnavailableError` for those) or nonsense measurements.
        """
        try:
            cut = self.controller.refresh()
        except SkylineError:
            with self._lock:
                self.counts.probe_failures += 1
                self.link_up = False
                self.partition = len(self.model)
            return self.partition
        with self._lock:
            self.link_up = True
            self.partition = cut
        return cut

    def answer(self, x: FloatArray) -> tuple[FloatArray, list[str]]:
        """Class probabilities for batch ``x`` and who answered each row: ``edge`` (cut after the last layer),
        ``cloud`` (cut 0), ``split``, or ``edge-degraded`` (the cloud failed; the edge ran everything)."""
        self.check_input(x)
        n, cut = len(self.model), self.partition
        source = "edge" if cut == n else "cloud" if cut == 0 else "split"
        head = self.executor.run_on_edge(x, 0, cut)
        if cut == n:
            probs = self.executor.finish_on_edge(head, n)
        else:
            try:
                probs = self.executor.send_tail(cut, encode_activation(head, int8=self.int8))
            except UnavailableError:
                probs, source = self.executor.finish_on_edge(head, cut), "edge-degraded"
                with self._lock:
                    self.counts.degraded += len(x)
        with self._lock:
            self.counts.answered += len(x)
        return probs, [source] * len(x)

    def status(self) -> dict[str, Any]:
        """Flat metrics (telemetry takes scalars): the cut, its layer, the measured link, the counters."""
        network = self.controller.network
        cut = self.partition
        return {
            "split_partition": cut,
            "split_layer": "input" if cut == 0 else self.names[cut - 1],
            "split_link": "up" if self.link_up else "down",
            "split_bandwidth_mbps": None if network is None else network.bandwidth_mbps,
            "split_rtt_ms": None if network is None else network.rtt_ms,
            "split_overhead_ms": None if network is None else network.overhead_ms,
            "split_cloud_factor": None if network is None else network.cloud_factor,
            "split_changes": self.controller.changes,
            "split_answered": self.counts.answered,
            "split_degraded": self.counts.degraded,
            "split_probe_failures": self.counts.probe_failures,
        }
