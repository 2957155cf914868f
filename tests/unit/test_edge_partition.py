"""Neurosurgeon's partition choice against brute force; int8 activations; split == whole model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.edge.cloud_app import decode_activation
from skyline.edge.partition import (
    LayerProfile,
    NetworkProfile,
    brute_force_partition,
    choose_partition,
    partition_latency_ms,
)
from skyline.edge.split import (
    SPLIT_NETWORKS,
    encode_activation,
    layer_names,
    run_layers,
    split_network,
    tail_runner,
)
from skyline.errors import ConfigError

pytestmark = pytest.mark.unit


def _layers(*rows: tuple[float, float, int]) -> list[LayerProfile]:
    return [
        LayerProfile(name=f"l{i}", edge_ms=e, cloud_ms=c, output_bytes=b) for i, (e, c, b) in enumerate(rows)
    ]


def test_hand_computed_partitions() -> None:
    # input 1 MB; layer 0 shrinks it to 1 kB. Edge 10 ms/layer, cloud 1 ms/layer.
    layers = _layers((10.0, 1.0, 1000), (10.0, 1.0, 1000), (10.0, 1.0, 40))
    slow = NetworkProfile(bandwidth_mbps=1.0, rtt_ms=10.0)  # 1 MB = 8000 ms; 1 kB = 8 ms
    assert partition_latency_ms(layers, 1_000_000, slow, 0) == pytest.approx(10 + 8000 + 3)
    assert partition_latency_ms(layers, 1_000_000, slow, 1) == pytest.approx(10 + 10 + 8 + 2)
    assert partition_latency_ms(layers, 1_000_000, slow, 3) == pytest.approx(30)
    assert choose_partition(layers, 1_000_000, slow) == 1
    fast = NetworkProfile(bandwidth_mbps=100_000.0, rtt_ms=1.0)  # 1 MB = 0.08 ms
    assert choose_partition(layers, 1_000_000, fast) == 0


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.floats(0, 100), st.floats(0, 20), st.integers(1, 10_000_000)), min_size=1, max_size=20
    ),
    input_bytes=st.integers(1, 10_000_000),
    bandwidth=st.floats(0.1, 10_000),
    rtt=st.floats(0, 200),
)
def test_choice_equals_brute_force(
    rows: list[tuple[float, float, int]], input_bytes: int, bandwidth: float, rtt: float
) -> None:
    layers, network = _layers(*rows), NetworkProfile(bandwidth_mbps=bandwidth, rtt_ms=rtt)
    chosen, best = (
        choose_partition(layers, input_bytes, network),
        brute_force_partition(layers, input_bytes, network),
    )
    assert partition_latency_ms(layers, input_bytes, network, chosen) == pytest.approx(
        partition_latency_ms(layers, input_bytes, network, best), rel=1e-9, abs=1e-9
    )


def test_int8_activation_round_trip_is_within_one_step() -> None:
    activation = np.random.default_rng(0).normal(size=(1, 8, 4, 4)).astype(np.float32)
    encoded = encode_activation(activation, int8=True)
    assert len(encoded.payload) == activation.size  # 4× fewer bytes than float32
    decoded = decode_activation(encoded.payload, encoded.headers)
    step = float(encoded.headers["x-scale"])
    assert np.abs(decoded - activation).max() <= step / 2 + 1e-6
    plain = encode_activation(activation, int8=False)
    exact = decode_activation(plain.payload, plain.headers)
    np.testing.assert_array_equal(exact, activation)


@pytest.mark.parametrize("name", sorted(SPLIT_NETWORKS))
def test_every_cut_gives_the_whole_models_answer(name: str) -> None:
    network = SPLIT_NETWORKS[name]
    model = network.build(seed=1)
    x = np.random.default_rng(1).normal(size=(1, *network.input_shape)).astype(np.float32)
    tail = tail_runner(model)
    whole = tail(0, x)
    for k in range(1, len(model)):
        np.testing.assert_allclose(tail(k, run_layers(model, 0, k, x)), whole, rtol=1e-5, atol=1e-6)


def test_split_executor_matches_the_whole_model_at_every_cut() -> None:
    from skyline.edge.split import SplitExecutor

    model = split_network(seed=2)
    tail = tail_runner(model)
    x = np.random.default_rng(2).normal(size=(1, 3, 64, 64)).astype(np.float32)
    whole = tail(0, x)
    for int8 in (False, True):
        executor = SplitExecutor(
            model,
            lambda k, sent: tail(k, decode_activation(sent.payload, sent.headers)),
            edge_ms=[0.0] * len(model),
            int8=int8,
        )
        for k in range(len(model) + 1):
            executor.partition = k
            probs = executor.infer(x)
            if int8 and k < len(model):
                np.testing.assert_allclose(probs, whole, atol=0.05)  # quantized activations: close, not equal
            else:
                np.testing.assert_allclose(probs, whole, rtol=1e-5, atol=1e-6)


def test_controller_rechooses_when_the_network_changes() -> None:
    from skyline.edge.partition import PartitionController

    # Cloud-only wins on a fast link, an early cut on a slow one (layer 0 shrinks 1 MB to 1 kB).
    layers = _layers((10.0, 1.0, 1000), (10.0, 1.0, 1000), (10.0, 1.0, 40))
    readings = iter([(100_000.0, 1.0), (100_000.0, 1.0), (1.0, 10.0), (1.0, 10.0), (1.0, 10.0)])
    controller = PartitionController(layers, 1_000_000, lambda: next(readings), alpha=1.0)
    assert controller.refresh() == 0 and controller.refresh() == 0
    assert controller.refresh() == 1  # the link slowed down: cut after the shrinking layer
    assert controller.changes == 1
    smoothing = PartitionController(
        layers, 1_000_000, iter([(100_000.0, 1.0), (1.0, 10.0)]).__next__, alpha=0.5
    )
    smoothing.refresh()
    smoothing.refresh()
    assert smoothing.network is not None and smoothing.network.bandwidth_mbps == pytest.approx(
        1 / (0.5 / 100_000 + 0.5 / 1)
    )


def test_tail_overhead_and_cloud_factor_enter_every_cloud_cut() -> None:
    # Edge 10 ms/layer, cloud 1 ms/layer; a tail request costs 3 ms beyond the round trip and the cloud runs
    # its tail 2× slower than profiled: cut 1 = 10 (edge) + 10 (RTT) + 3 + 8 (1 kB at 1 Mbit/s) + 2·2.
    layers = _layers((10.0, 1.0, 1000), (10.0, 1.0, 1000), (10.0, 1.0, 40))
    network = NetworkProfile(bandwidth_mbps=1.0, rtt_ms=10.0, overhead_ms=3.0, cloud_factor=2.0)
    assert partition_latency_ms(layers, 1_000_000, network, 1) == pytest.approx(10 + 10 + 3 + 8 + 4)
    assert partition_latency_ms(layers, 1_000_000, network, 3) == pytest.approx(30)  # edge only: no request
    # Cloud-only (23 ms) beats edge-only (30 ms) on a bare round trip; with 8 ms of overhead it does not.
    fast = NetworkProfile(bandwidth_mbps=10_000.0, rtt_ms=20.0)
    assert choose_partition(layers, 1_000, fast) == 0
    assert (
        choose_partition(layers, 1_000, NetworkProfile(bandwidth_mbps=10_000.0, rtt_ms=20.0, overhead_ms=8.0))
        == 3
    )
    with pytest.raises(ConfigError):
        NetworkProfile(bandwidth_mbps=1.0, rtt_ms=1.0, cloud_factor=0.0)


def test_patchify_network_cuts_between_blocks() -> None:
    model = SPLIT_NETWORKS["split-patchify"].build(seed=0)
    names = layer_names(model)
    assert names[0] == "0:conv2d+relu" and names[3] == "3:maxpool2d" and names[-1] == "8:linear"
    x = np.zeros((1, 3, 128, 128), dtype=np.float32)
    assert run_layers(model, 0, 1, x).size * 3 == x.size  # the stem shrinks the input 3×
