"""Small models to serve, built directly as ONNX without torch (tests and the demo make them in milliseconds):
a seeded MLP with its numpy reference, and a no-op model that measures the protocol's own cost.

A real model to serve is any ONNX export (`skyline.training.export`), e.g. compression's MiniLM encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_mlp_onnx(
    path: Path, *, in_features: int = 16, hidden: int = 64, out_features: int = 4, seed: int = 0
) -> Path:
    """A 2-layer ReLU MLP ``x: FP32[-1, in] → y: FP32[-1, out]`` with seeded random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = {
        "w1": rng.normal(0, 0.3, (in_features, hidden)).astype(np.float32),
        "b1": rng.normal(0, 0.1, (hidden,)).astype(np.float32),
        "w2": rng.normal(0, 0.3, (hidden, out_features)).astype(np.float32),
        "b2": rng.normal(0, 0.1, (out_features,)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", out_features])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def mlp_reference(path: Path, x: np.ndarray) -> np.ndarray:
    """The MLP's output computed with numpy from the ONNX file's weights (hand-checkable)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    w = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    hidden = np.maximum(x @ w["w1"] + w["b1"], 0)
    return np.asarray(hidden @ w["w2"] + w["b2"], dtype=np.float32)


def write_identity_onnx(path: Path, *, features: int = 16) -> Path:
    """A no-op model ``x: FP32[-1, features] → y = x``: serving it measures the protocol's own cost."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", features])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
