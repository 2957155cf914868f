"""Every registered runtime honours the `Runtime` contract on the same small MLP."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from skyline.errors import DataError
from skyline.serving.runtime import RUNTIMES, OnnxRuntime, load_runtime
from skyline.serving.samples import mlp_reference, write_mlp_onnx
from skyline.serving.tensors import TensorSpec

pytestmark = pytest.mark.unit

INPUTS = (TensorSpec(name="x", datatype="FP32", shape=(-1, 16)),)
OUTPUTS = (TensorSpec(name="y", datatype="FP32", shape=(-1, 4)),)


def model_file(fmt: str, onnx_path: Path, tmp_path: Path) -> Path:
    if fmt == "onnx":
        return onnx_path
    import torch
    from onnx import load, numpy_helper

    w = {
        i.name: torch.from_numpy(numpy_helper.to_array(i).copy())
        for i in load(str(onnx_path)).graph.initializer
    }

    class Mlp(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]

    path = tmp_path / "mlp.pt2"
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(Mlp(), (torch.zeros(2, 16),), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))
    return path


@pytest.mark.parametrize("fmt", sorted(RUNTIMES))
def test_runtime_matches_the_reference_at_any_batch_size_and_from_many_threads(
    fmt: str, tmp_path: Path
) -> None:
    onnx_path = write_mlp_onnx(tmp_path / "mlp.onnx")
    runtime = load_runtime(fmt, model_file(fmt, onnx_path, tmp_path), INPUTS, OUTPUTS, 1)
    rng = np.random.default_rng(0)
    for rows in (1, 7):
        x = rng.normal(size=(rows, 16)).astype(np.float32)
        y = runtime.infer({"x": x})["y"]
        assert y.shape == (rows, 4) and y.dtype == np.float32
        np.testing.assert_allclose(y, mlp_reference(onnx_path, x), rtol=1e-5, atol=1e-5)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        x = np.random.default_rng(seed).normal(size=(3, 16)).astype(np.float32)
        try:
            for _ in range(20):
                np.testing.assert_allclose(
                    runtime.infer({"x": x})["y"], mlp_reference(onnx_path, x), rtol=1e-5, atol=1e-5
                )
        except BaseException as exc:  # collected: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runtime.close()


@pytest.mark.parametrize("fmt", sorted(RUNTIMES))
def test_a_file_the_runtime_cannot_load_is_a_data_error(fmt: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a model")
    with pytest.raises(DataError, match=str(broken)):
        load_runtime(fmt, broken, INPUTS, OUTPUTS, 1)


def test_onnx_runtime_without_a_manifest_reads_its_names_from_the_graph(tmp_path: Path) -> None:
    onnx_path = write_mlp_onnx(tmp_path / "mlp.onnx")
    runtime = OnnxRuntime(onnx_path, intra_op_threads=1)
    assert (runtime.input_names, runtime.output_names) == (("x",), ("y",))
    x = np.ones((2, 16), np.float32)
    np.testing.assert_allclose(
        runtime.infer({"x": x})["y"], mlp_reference(onnx_path, x), rtol=1e-5, atol=1e-5
    )
