"""The model repository (manifests, sha256, versions), tensor specs, the thread plan and the OIP codec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from skyline.errors import ConfigError, IntegrityError, NotFoundError
from skyline.serving.batching import BatchingConfig
from skyline.serving.protocol import InferenceRequest, encode_response, parse_request
from skyline.serving.repository import MANIFEST_NAME, ModelManifest, ModelRepository, check_model_name
from skyline.serving.runtime import plan_threads
from skyline.serving.samples import write_mlp_onnx
from skyline.serving.tensors import InvalidRequestError, TensorSpec, check_inputs

pytestmark = pytest.mark.unit


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    root = tmp_path / "repo"
    root.mkdir()
    return ModelRepository(root)


def test_pack_reads_the_onnx_signature_and_writes_a_manifest_with_the_hash(
    repo: ModelRepository, tmp_path: Path
) -> None:
    source = write_mlp_onnx(tmp_path / "mlp.onnx", in_features=5, out_features=3)
    manifest = repo.add(source, name="mlp", version=2, batching=BatchingConfig(max_batch_size=7))
    assert manifest.inputs == (TensorSpec(name="x", datatype="FP32", shape=(-1, 5)),)
    assert manifest.outputs == (TensorSpec(name="y", datatype="FP32", shape=(-1, 3)),)
    on_disk = json.loads((repo.version_dir("mlp", 2) / MANIFEST_NAME).read_text())
    assert ModelManifest.from_json(on_disk) == manifest
    assert on_disk["batching"]["max_batch_size"] == 7 and len(on_disk["sha256"]) == 64
    assert repo.models() == ["mlp"] and repo.versions("mlp") == [2]
    assert repo.verified_file(manifest).name == "model.onnx"


def test_the_newest_version_is_the_default_and_unknown_ones_are_not_found(
    repo: ModelRepository, tmp_path: Path
) -> None:
    source = write_mlp_onnx(tmp_path / "mlp.onnx")
    for version in (1, 3):
        repo.add(source, name="m", version=version)
    assert repo.manifest("m").version == 3
    with pytest.raises(NotFoundError, match="no version 2"):
        repo.manifest("m", 2)
    with pytest.raises(NotFoundError, match="not in repository"):
        repo.manifest("other")
    with pytest.raises(ConfigError, match="already exists"):
        repo.add(source, name="m", version=3)


def test_a_model_file_changed_after_packing_is_refused(repo: ModelRepository, tmp_path: Path) -> None:
    manifest = repo.add(write_mlp_onnx(tmp_path / "mlp.onnx"), name="m", version=1)
    path = repo.version_dir("m", 1) / manifest.file
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="changed after packing"):
        repo.verified_file(manifest)


@pytest.mark.parametrize("name", ["../etc", "a/b", "", ".hidden", "x" * 65])
def test_model_names_cannot_escape_the_repository(name: str) -> None:
    with pytest.raises(ConfigError, match="model name"):
        check_model_name(name)


def test_tensor_specs_check_datatype_shape_and_a_shared_batch() -> None:
    specs = [
        TensorSpec(name="a", datatype="FP32", shape=(-1, 2)),
        TensorSpec(name="b", datatype="INT64", shape=(-1,)),
    ]
    assert check_inputs(specs, {"a": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.int64)}) == 3
    with pytest.raises(InvalidRequestError, match="datatype FP64"):
        check_inputs(specs, {"a": np.zeros((3, 2)), "b": np.zeros(3, np.int64)})
    with pytest.raises(InvalidRequestError, match="shape"):
        check_inputs(specs, {"a": np.zeros((3, 4), np.float32), "b": np.zeros(3, np.int64)})
    with pytest.raises(InvalidRequestError, match="different batch sizes"):
        check_inputs(specs, {"a": np.zeros((3, 2), np.float32), "b": np.zeros(2, np.int64)})
    with pytest.raises(ConfigError, match="first dimension must be -1"):
        TensorSpec(name="a", datatype="FP32", shape=(4, 2))


@pytest.mark.parametrize(
    ("instances", "cores", "requested", "threads"),
    [(1, 2, None, 2), (2, 2, None, 1), (3, 2, None, 1), (2, 16, None, 8), (2, 2, 4, 4)],
)
def test_the_thread_plan_never_oversubscribes_unless_asked(
    instances: int, cores: int, requested: int | None, threads: int
) -> None:
    assert plan_threads(instances, cores=cores, requested=requested) == threads


def test_json_requests_decode_to_arrays_and_responses_encode_back() -> None:
    body = orjson.dumps(
        {"id": "7", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}]}
    )
    request = parse_request(body, None)
    np.testing.assert_array_equal(request.inputs["x"], np.array([[1, 2], [3, 4]], np.int32))
    out, header = encode_response(
        model="m",
        version=1,
        request=request,
        outputs={"y": np.array([[0.5], [1.5]], np.float32)},
        order=["y"],
    )
    assert header is None
    assert orjson.loads(out) == {
        "model_name": "m", "model_version": "1", "id": "7",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [2, 1], "data": [0.5, 1.5]}],
    }  # fmt: skip


def test_binary_tensor_data_round_trips() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    head = orjson.dumps({
        "inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
        "parameters": {"binary_data_output": True},
    })  # fmt: skip
    request = parse_request(head + x.tobytes(), str(len(head)))
    np.testing.assert_array_equal(request.inputs["x"], x)
    out, header = encode_response(model="m", version=1, request=request, outputs={"y": x * 2}, order=["y"])
    assert header is not None
    meta = orjson.loads(out[:header])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == x.nbytes
    np.testing.assert_array_equal(np.frombuffer(out[header:], np.float32).reshape(2, 3), x * 2)


@pytest.mark.parametrize(
    ("body", "header", "message"),
    [
        (b"{not json", None, "not JSON"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}', None, "do not fill"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "F32", "data": [1]}]}', None, "datatype"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}',
            None,
            "not a list of FP32",
        ),
        (b'{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}', None, "dimensions"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}', None, "neither"),
        (
            b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}',
            "999",
            "within the body",
        ),
    ],
)
def test_malformed_requests_are_invalid_request_errors(body: bytes, header: str | None, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        parse_request(body, header)
    assert caught.value.http_status == 400


def test_request_type_is_frozen() -> None:
    request = InferenceRequest(id=None, inputs={}, binary_outputs=frozenset(), all_binary=False)
    with pytest.raises(AttributeError):
        request.id = "x"  # type: ignore[misc]


def test_dynamic_sizes_need_dynamic_size_and_outputs_are_then_observed(
    repo: ModelRepository, tmp_path: Path
) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", "seq"])],
    )
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), str(path))
    with pytest.raises(ConfigError, match="--dynamic-size"):
        repo.add(path, name="seq", version=1)
    manifest = repo.add(path, name="seq", version=1, dynamic_size=5)
    assert manifest.inputs == (TensorSpec(name="x", datatype="INT64", shape=(-1, 5)),)
    assert manifest.outputs == (TensorSpec(name="y", datatype="INT64", shape=(-1, 5)),)
