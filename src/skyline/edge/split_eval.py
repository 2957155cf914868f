"""`skyline edge eval --strategy split`: profile, choose the cut (Neurosurgeon), and check it by brute force.

The cloud serves the network's tails on 127.0.0.1 behind the emulated link (bandwidth, RTT). The edge
measures the link with echo probes and two real tail requests (`skyline.edge.split_probe`), picks the cut from the layer profile and the measured link, and then
every cut is run end to end through the link: the brute-force best is the one with the lowest measured
median latency.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyline.edge.cloud_app import create_cloud_app, edge_authority
from skyline.edge.cloud_client import CloudClient
from skyline.edge.ingest import IngestStore
from skyline.edge.link import LinkConditions, LinkProxy
from skyline.edge.partition import choose_partition, predicted_latencies_ms
from skyline.edge.split import SPLIT_NETWORKS, SplitExecutor, profile_layers, tail_runner
from skyline.edge.split_probe import SplitProbe
from skyline.errors import ConfigError
from skyline.serving.server import BackgroundServer

SPLIT_MODEL = "split-vgg"  # the default network


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitEvalConfig:
    bandwidth_mbps: float
    network: str = SPLIT_MODEL
    rtt_ms: float = 10.0
    int8: bool = False
    edge_slowdown: float = 10.0
    repeats: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.network not in SPLIT_NETWORKS:
            raise ConfigError(f"--network must be one of {', '.join(SPLIT_NETWORKS)}, got {self.network!r}")
        if self.bandwidth_mbps <= 0 or self.rtt_ms < 0:
            raise ConfigError(
                f"--bandwidth-mbps must be > 0 and --rtt-ms >= 0, got {self.bandwidth_mbps}, {self.rtt_ms}"
            )
        if self.edge_slowdown < 1 or self.repeats < 1:
            raise ConfigError(
                f"edge_slowdown must be >= 1 and repeats >= 1, got {self.edge_slowdown}, {self.repeats}"
            )


def _time_ms(executor: SplitExecutor, partition: int, x: np.ndarray[Any, Any]) -> float:
    executor.partition = partition
    started = time.perf_counter()
    executor.infer(x)
    return (time.perf_counter() - started) * 1e3


def brute_force_measure(
    executor: SplitExecutor,
    partitions: int,
    x: np.ndarray[Any, Any],
    repeats: int,
    advance: Callable[[int], None] | None,
) -> list[float]:
    """Median measured latency of every cut. After one pass over all cuts, only cuts within 2× of the best
    are measured again (a cut 2× slower than another in one pass is not a contender), interleaved."""
    samples: list[list[float]] = [[_time_ms(executor, k, x)] for k in range(partitions)]
    best = min(s[0] for s in samples)
    contenders = [k for k in range(partitions) if samples[k][0] <= 2 * best]
    for _ in range(repeats - 1):
        for k in contenders:
            samples[k].append(_time_ms(executor, k, x))
        if advance is not None:
            advance(1)
    return [float(np.median(s)) for s in samples]


def evaluate_split(
    config: SplitEvalConfig, *, advance: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Run the whole evaluation; returns the JSON contract plus ``details`` (profiles, predictions)."""
    network = SPLIT_NETWORKS[config.network]
    shape = network.input_shape
    model = network.build(seed=config.seed)
    layers = profile_layers(model, shape, edge_slowdown=config.edge_slowdown, int8=config.int8)
    input_bytes = int(np.prod(shape)) * (1 if config.int8 else 4)
    x = np.random.default_rng(config.seed).standard_normal((1, *shape)).astype(np.float32)
    link_conditions = LinkConditions(latency_ms=config.rtt_ms / 2, bandwidth_mbps=config.bandwidth_mbps)
    with tempfile.TemporaryDirectory() as tmp:
        authority, token = edge_authority(Path(tmp) / "tokens.json")
        ingest = IngestStore(Path(tmp) / "ingest.db")
        app = create_cloud_app(ingest=ingest, authority=authority, tails={config.network: tail_runner(model)})
        try:
            with BackgroundServer(app) as server, LinkProxy(server.port, link_conditions) as link:
                client = CloudClient(link.url, token=token, timeout_s=120.0)
                try:
                    link_profile = SplitProbe(
                        client, config.network, model, layers, shape, int8=config.int8
                    )()
                    chosen = choose_partition(layers, input_bytes, link_profile)
                    executor = SplitExecutor(
                        model,
                        lambda k, a: client.split_tail(config.network, k, a.payload, a.headers),
                        edge_ms=[layer.edge_ms for layer in layers],
                        int8=config.int8,
                    )
                    measured = brute_force_measure(executor, len(layers) + 1, x, config.repeats, advance)
                finally:
                    client.close()
        finally:
            ingest.close()
    best = int(np.argmin(measured))
    return {
        "chosen_partition": chosen,
        "best_partition_bruteforce": best,
        "latency_ms": measured[chosen],
        "edge_only_ms": measured[len(layers)],
        "cloud_only_ms": measured[0],
        "details": {
            "measured_bandwidth_mbps": link_profile.bandwidth_mbps,
            "measured_rtt_ms": link_profile.rtt_ms,
            "measured_overhead_ms": link_profile.overhead_ms,
            "measured_cloud_factor": link_profile.cloud_factor,
            "layers": [layer.name for layer in layers],
            "predicted_ms": predicted_latencies_ms(layers, input_bytes, link_profile),
            "measured_ms": measured,
        },
    }
