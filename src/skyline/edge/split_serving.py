"""The agent's split strategy for one verified version: its head here up to the current cut, its tail in the
cloud, which runs the same signed version.

`SplitServing` loads the version's segments (`skyline.edge.split.SplitModel`) and profiles them on THIS
device — the real edge hardware; nothing is emulated here — then fetches the cloud's profile of the same
segments, measures the link (`skyline.edge.split_probe.SplitProbe`) and keeps Neurosurgeon's cut in a
`PartitionController`; ``refresh`` (every ``probe_s``) re-measures and re-chooses. Until the cloud has
answered a probe, and whenever it cannot be reached — a request times out or fails, or a probe does — the
whole network runs on the edge and the answer is marked degraded (a fallback continues from the head's
activation: the head is not run twice); the cut stays at edge-only until a probe gets through again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skyline.edge.cloud_client import CloudClient
from skyline.edge.local_model import as_probabilities
from skyline.edge.partition import LayerProfile, PartitionController
from skyline.edge.split import SplitModel, encode_activation
from skyline.edge.split_probe import SplitProbe
from skyline.errors import SkylineError, UnavailableError

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
        folder: Path,
        version: int,
        *,
        cloud: CloudClient,
        probe_client: CloudClient,
        model_name: str,
        int8: bool = False,
        probe_bytes: int = 256 * 1024,
        alpha: float = 0.5,
    ) -> None:
        self.model, self.version, self.model_name = SplitModel(folder), version, model_name
        self.cloud, self.probe_client = cloud, probe_client
        self.int8, self.probe_bytes, self.alpha = int8, probe_bytes, alpha
        self.edge_ms = self.model.profile_ms()  # measured on this device
        self.names = self.model.names()
        self.controller: PartitionController | None = None  # once the cloud's profile is known
        self.partition = len(self.model)  # edge only until the first probe reached the cloud
        self.link_up = False
        self.counts = SplitCounts()
        self._lock = threading.Lock()

    def check_input(self, x: FloatArray) -> None:
        self.model.check_input(x)

    def _controller(self) -> PartitionController:
        """The cut chooser, built from both sides' profiles once the cloud has sent its own."""
        if self.controller is None:
            cloud_ms = self.probe_client.split_profile(self.model_name, self.version)
            if len(cloud_ms) != len(self.model):
                raise UnavailableError(
                    f"the cloud profiled {len(cloud_ms)} segments of {self.model_name} v{self.version}, this "
                    f"device has {len(self.model)}: not the same version"
                )
            spec = self.model.spec
            layers = [
                LayerProfile(name=name, edge_ms=edge, cloud_ms=cloud, output_bytes=spec.cut_bytes(k + 1))
                for k, (name, edge, cloud) in enumerate(zip(self.names, self.edge_ms, cloud_ms, strict=True))
            ]
            layers = [self._int8(layer) for layer in layers] if self.int8 else layers
            probe = SplitProbe(
                self.probe_client, self.model_name, self.version, self.model, layers,
                int8=self.int8, probe_bytes=self.probe_bytes,
            )  # fmt: skip
            input_bytes = spec.cut_bytes(0) // (4 if self.int8 else 1)
            self.controller = PartitionController(layers, input_bytes, probe, alpha=self.alpha)
        return self.controller

    @staticmethod
    def _int8(layer: LayerProfile) -> LayerProfile:
        return LayerProfile(
            name=layer.name,
            edge_ms=layer.edge_ms,
            cloud_ms=layer.cloud_ms,
            output_bytes=layer.output_bytes // 4,
        )

    def refresh(self) -> int:
        """Measure the link (echo and tail probes) and re-choose the cut; edge-only while the cloud is away.

        Any skyline error counts as a failed probe: an unreachable cloud, a refused (revoked) token, a
        version the cloud refuses (tampered there), a malformed answer, nonsense measurements."""
        try:
            cut = self._controller().refresh()
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
        """Class probabilities for batch ``x`` and who answered each row: ``edge`` (cut after the last
        segment), ``cloud`` (cut 0), ``split``, or ``edge-degraded`` (the cloud failed; the edge ran all)."""
        self.check_input(x)
        n, cut = len(self.model), self.partition
        source = "edge" if cut == n else "cloud" if cut == 0 else "split"
        head = self.model.run(0, cut, x)
        if cut == n:
            probs = as_probabilities(head)
        else:
            try:
                sent = encode_activation(head, int8=self.int8)
                probs = self.cloud.split_tail(self.model_name, self.version, cut, sent.payload, sent.headers)
            except UnavailableError:
                probs, source = self.model.tail(cut, head), "edge-degraded"
                with self._lock:
                    self.counts.degraded += len(x)
        with self._lock:
            self.counts.answered += len(x)
        return probs, [source] * len(x)

    def status(self) -> dict[str, Any]:
        """Flat metrics (telemetry takes scalars): the cut, its tensor, the measured link, the counters."""
        network = None if self.controller is None else self.controller.network
        cut = self.partition
        return {
            "split_partition": cut,
            "split_layer": "input" if cut == 0 else self.names[cut - 1],
            "split_link": "up" if self.link_up else "down",
            "split_bandwidth_mbps": None if network is None else network.bandwidth_mbps,
            "split_rtt_ms": None if network is None else network.rtt_ms,
            "split_overhead_ms": None if network is None else network.overhead_ms,
            "split_cloud_factor": None if network is None else network.cloud_factor,
            "split_changes": 0 if self.controller is None else self.controller.changes,
            "split_answered": self.counts.answered,
            "split_degraded": self.counts.degraded,
            "split_probe_failures": self.counts.probe_failures,
            "split_edge_ms": round(sum(self.edge_ms), 3),
        }

    def close(self) -> None:
        self.model.close()
