"""Neurosurgeon's partition choice against brute force; int8 activations; where an ONNX graph can be cut,
and its segments chained == the whole model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.edge.partition import (
    LayerProfile,
    NetworkProfile,
    brute_force_partition,
    choose_partition,
    partition_latency_ms,
)
from skyline.edge.split import SplitModel, decode_activation, encode_activation
from skyline.errors import ConfigError
from skyline.serving.split_artifact import cut_points, write_split

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


def _graph(nodes: list[tuple[str, list[str], str]], width: int = 4) -> object:
    """An ONNX model over input ``x`` (batch, width) whose nodes are (op, inputs, output); the last is ``y``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.eye(width, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node(op, inputs, [out]) for op, inputs, out in nodes], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])], initializer=[weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def test_a_chain_can_be_cut_between_every_two_nodes() -> None:
    chain = _graph([("MatMul", ["x", "w"], "a"), ("Relu", ["a"], "b"), ("MatMul", ["b", "w"], "y")])
    assert cut_points(chain) == ["a", "b"]


def test_a_residual_block_is_cut_only_around_it() -> None:
    # a → (b = relu a) → c = a + b: inside the block both a and b are alive, so no cut between them.
    residual = _graph([
        ("MatMul", ["x", "w"], "a"), ("Relu", ["a"], "b"), ("Add", ["a", "b"], "c"), ("MatMul", ["c", "w"], "y"),
    ])  # fmt: skip
    assert cut_points(residual) == ["a", "c"]


def test_the_segments_chained_give_the_whole_models_answer(tmp_path: Path) -> None:
    import onnx

    from skyline.edge.local_model import LocalModel
    from skyline.serving.repository import ModelRepository

    residual = _graph([
        ("MatMul", ["x", "w"], "a"), ("Relu", ["a"], "b"), ("Add", ["a", "b"], "c"), ("Sigmoid", ["c"], "y"),
    ])  # fmt: skip
    onnx.save(residual, str(tmp_path / "m.onnx"))
    ModelRepository(tmp_path).add(tmp_path / "m.onnx", name="m", version=1, split=True)
    folder = tmp_path / "m" / "1"
    model = SplitModel(folder)
    assert [s.input.name for s in model.spec.segments] == ["x", "a", "c"]
    assert model.spec.cut_bytes(0) == 16 and model.spec.cut_bytes(3) == 0
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    whole = LocalModel(folder, 1).predict(x)
    for k in range(len(model)):
        np.testing.assert_allclose(model.tail(k, model.run(0, k, x)), whole, rtol=1e-6)
    with pytest.raises(ConfigError, match="cut 1 must have shape"):
        model.tail(1, x[:, :2])


def test_a_graph_with_no_cut_is_refused(tmp_path: Path) -> None:
    import onnx

    onnx.save(_graph([("MatMul", ["x", "w"], "y")]), str(tmp_path / "one.onnx"))
    with pytest.raises(ConfigError, match="cannot be split"):
        write_split(tmp_path / "one.onnx", tmp_path / "out")


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
