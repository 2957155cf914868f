"""The OIP v2 server for real: every endpoint and error, metrics, 429, the auth matrix, tampered models,
and a hot reload under load with zero failed requests (uvicorn on 127.0.0.1, the real load client)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient

from skyline.security.signing import generate_signing_keys, sign_directory
from skyline.security.tokens import TokenAuthority
from skyline.serving.app import create_app
from skyline.serving.batching import BatchingConfig
from skyline.serving.loadgen import HttpConnection, run_load
from skyline.serving.repository import ModelRepository
from skyline.serving.samples import mlp_reference, write_mlp_onnx
from skyline.serving.server import BackgroundServer

pytestmark = pytest.mark.integration


def body(x: np.ndarray, **extra: object) -> dict[str, object]:
    return {
        "inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
        **extra,
    }


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    root = tmp_path / "repo"
    root.mkdir()
    repository = ModelRepository(root)
    repository.add(
        write_mlp_onnx(tmp_path / "mlp.onnx"),
        name="mlp",
        version=1,
        batching=BatchingConfig(max_batch_size=8),
    )
    return repository


@pytest.fixture
def client(repo: ModelRepository) -> Iterator[TestClient]:
    with TestClient(create_app(repo, cores=1)) as c:
        yield c


def test_health_server_and_model_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    server = client.get("/v2").json()
    assert server["name"] == "skyline" and "model_repository" in server["extensions"]
    for path in ("/v2/models/mlp", "/v2/models/mlp/versions/1"):
        meta = client.get(path).json()
        assert meta["name"] == "mlp" and meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 16]}]
        assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    assert client.get("/v2/models/mlp/ready").json() == {"name": "mlp", "ready": True}
    assert client.get("/v2/models/mlp/versions/1/ready").status_code == 200


def test_infer_answers_the_reference_outputs_in_the_spec_shape(client: TestClient, tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    for path in ("/v2/models/mlp/infer", "/v2/models/mlp/versions/1/infer"):
        answer = client.post(path, json=body(x, id="req-1"))
        assert answer.status_code == 200
        payload = answer.json()
        assert payload["model_name"] == "mlp" and payload["model_version"] == "1" and payload["id"] == "req-1"
        (out,) = payload["outputs"]
        assert out["name"] == "y" and out["datatype"] == "FP32" and out["shape"] == [3, 4]
        expected = mlp_reference(tmp_path / "mlp.onnx", x)
        np.testing.assert_allclose(
            np.array(out["data"], np.float32).reshape(3, 4), expected, rtol=1e-5, atol=1e-6
        )


def test_binary_tensor_data_extension(client: TestClient) -> None:
    x = np.ones((2, 16), np.float32)
    head = orjson.dumps({
        "inputs": [{"name": "x", "shape": [2, 16], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}}],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    })  # fmt: skip
    answer = client.post(
        "/v2/models/mlp/infer",
        content=head + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert answer.status_code == 200
    split = int(answer.headers["inference-header-content-length"])
    meta = orjson.loads(answer.content[:split])
    assert meta["outputs"][0]["parameters"] == {"binary_data_size": 2 * 4 * 4}
    assert np.frombuffer(answer.content[split:], np.float32).shape == (8,)


@pytest.mark.parametrize(
    ("method", "path", "payload", "status", "message"),
    [
        ("post", "/v2/models/nope/infer", body(np.ones((1, 16), np.float32)), 404, "not loaded"),
        ("post", "/v2/models/mlp/versions/2/infer", body(np.ones((1, 16), np.float32)), 404, "version 2"),
        ("post", "/v2/models/mlp/versions/x/infer", body(np.ones((1, 16), np.float32)), 404, "version"),
        ("post", "/v2/models/mlp/versions/¹/infer", body(np.ones((1, 16), np.float32)), 404, "version"),
        ("get", "/v2/models/mlp/versions/²", None, 404, "version"),
        ("post", "/v2/models/mlp/infer", body(np.ones((1, 15), np.float32)), 400, "shape"),
        (
            "post",
            "/v2/models/mlp/infer",
            {"inputs": [{"name": "x", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16}]},
            400,
            "datatype INT32",
        ),
        (
            "post",
            "/v2/models/mlp/infer",
            {"inputs": [{"name": "z", "shape": [1, 16], "datatype": "FP32", "data": [1] * 16}]},
            400,
            "expects exactly",
        ),
        ("post", "/v2/models/mlp/infer", body(np.ones((9, 16), np.float32)), 400, "at most 8"),
        ("post", "/v2/models/mlp/infer", {"inputs": "x"}, 400, "inputs"),
        ("get", "/v2/models/nope", None, 404, "not loaded"),
        ("get", "/v2/models/mlp/versions/3", None, 404, "version 3"),
        ("get", "/v2/models/nope/ready", None, 404, "not loaded"),
        ("get", "/v2/nothing/here", None, 404, "Not Found"),
        ("post", "/v2/repository/models/nope/load", None, 404, "not in repository"),
        ("post", "/v2/repository/models/nope/unload", None, 404, "not loaded"),
    ],
)
def test_errors_have_the_spec_status_and_an_error_body(
    client: TestClient, method: str, path: str, payload: object, status: int, message: str
) -> None:
    answer = client.request(method.upper(), path, json=payload)
    assert answer.status_code == status
    assert set(answer.json()) == {"error"} and message in answer.json()["error"]


def test_repository_index_load_and_unload(client: TestClient, repo: ModelRepository, tmp_path: Path) -> None:
    repo.add(write_mlp_onnx(tmp_path / "mlp2.onnx", seed=2), name="mlp", version=2)
    index = client.post("/v2/repository/index").json()
    assert {(e["name"], e["version"], e["state"]) for e in index} == {
        ("mlp", "1", "READY"),
        ("mlp", "2", "UNAVAILABLE"),
    }
    assert client.post("/v2/repository/index", json={"ready": True}).json() == [
        {"name": "mlp", "version": "1", "state": "READY", "reason": ""}
    ]
    for bad in (b"{not json", b"[1, 2]", b'{"ready": "yes"}', b"[" * 5000 + b"]" * 5000):
        answer = client.post(
            "/v2/repository/index", content=bad, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400 and set(answer.json()) == {"error"}
    assert client.post("/v2/repository/models/mlp/load").json() == {}
    assert client.get("/v2/models/mlp").json()["versions"] == ["2"]
    assert client.post("/v2/repository/models/mlp/unload").status_code == 200
    assert client.get("/v2/models/mlp/ready").status_code == 503
    assert client.post("/v2/models/mlp/infer", json=body(np.ones((1, 16), np.float32))).status_code == 404


def test_metrics_show_counts_histograms_and_the_realized_batch_size(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v2/models/mlp/infer", json=body(np.ones((2, 16), np.float32)))
    text = client.get("/metrics").text
    assert 'skyline_inference_requests_total{model="mlp",outcome="success",version="1"} 3.0' in text
    assert 'skyline_inference_count_total{model="mlp",version="1"} 6.0' in text
    assert 'skyline_execution_count_total{model="mlp",version="1"} 3.0' in text
    for histogram in (
        "queue_duration_seconds",
        "compute_duration_seconds",
        "request_duration_seconds",
        "batch_size",
    ):
        assert f'skyline_{histogram}_count{{model="mlp",version="1"}} 3.0' in text
    assert 'skyline_queue_depth{model="mlp",version="1"} 0.0' in text


def test_a_full_queue_answers_429_with_retry_after(repo: ModelRepository, tmp_path: Path) -> None:
    repo.add(
        write_mlp_onnx(tmp_path / "tiny.onnx"),
        name="tiny",
        version=1,
        batching=BatchingConfig(max_queue_size=1, max_batch_size=1),
    )
    app = create_app(repo, cores=1)
    with TestClient(app) as c:
        model = app.state.manager.get("tiny")
        gate = threading.Event()
        compute = model.batcher.compute
        model.batcher.compute = lambda inputs: (gate.wait(10), compute(inputs))[1]
        statuses: list[int] = []

        def call() -> None:
            statuses.append(
                c.post("/v2/models/tiny/infer", json=body(np.ones((1, 16), np.float32))).status_code
            )

        def wait_until(in_flight: int, queued: int) -> None:  # generously: a loaded CI machine is slow
            deadline = time.monotonic() + 120
            while not (model.batcher.in_flight == in_flight and model.batcher.queue_depth == queued):
                assert time.monotonic() < deadline, f"never {in_flight} in flight with {queued} queued"
                threading.Event().wait(0.005)

        # One request held in compute (batches of 1), then one in the queue: the queue is full. The second
        # starts only once the first has left the queue (started together, on a loaded machine the second
        # could find the first still queued and be refused itself).
        threads = [threading.Thread(target=call) for _ in range(2)]
        threads[0].start()
        wait_until(1, 0)
        threads[1].start()
        wait_until(2, 1)
        refused = c.post("/v2/models/tiny/infer", json=body(np.ones((1, 16), np.float32)))
        gate.set()
        for t in threads:
            t.join()
    assert (
        refused.status_code == 429
        and int(refused.headers["retry-after"]) >= 1
        and "queued" in refused.json()["error"]
    )
    assert statuses == [200, 200]


def test_auth_matrix(repo: ModelRepository, tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    tokens = {
        "admin": authority.issue("root", "admin"),
        "invoker-mlp": authority.issue("app", "invoker", models=["mlp"]),
        "invoker-other": authority.issue("app2", "invoker", models=["other"]),
        "viewer": authority.issue("eve", "viewer"),
        "none": None,
        "garbage": "sk_not-a-token",
    }
    calls = {
        "infer": ("POST", "/v2/models/mlp/infer", body(np.ones((1, 16), np.float32))),
        "metadata": ("GET", "/v2/models/mlp", None),
        "load": ("POST", "/v2/repository/models/mlp/load", None),
        "index": ("POST", "/v2/repository/index", None),
        "health": ("GET", "/v2/health/ready", None),
        "metrics": ("GET", "/metrics", None),
    }
    expected = {
        "admin": {"infer": 200, "metadata": 200, "load": 200, "index": 200, "health": 200, "metrics": 200},
        "invoker-mlp": {
            "infer": 200,
            "metadata": 200,
            "load": 403,
            "index": 403,
            "health": 200,
            "metrics": 403,
        },
        "invoker-other": {
            "infer": 403,
            "metadata": 403,
            "load": 403,
            "index": 403,
            "health": 200,
            "metrics": 403,
        },
        "viewer": {"infer": 403, "metadata": 200, "load": 403, "index": 200, "health": 200, "metrics": 200},
        "none": {"infer": 401, "metadata": 401, "load": 401, "index": 401, "health": 200, "metrics": 401},
        "garbage": {"infer": 401, "metadata": 401, "load": 401, "index": 401, "health": 200, "metrics": 401},
    }
    with TestClient(create_app(repo, authority=authority, cores=1)) as c:
        seen = {
            who: {
                name: c.request(
                    method, path, json=payload, headers={"Authorization": f"Bearer {token}"} if token else {}
                ).status_code
                for name, (method, path, payload) in calls.items()
            }
            for who, token in tokens.items()
        }
    assert seen == expected


def test_a_tampered_or_unsigned_model_is_refused_and_the_others_still_serve(
    repo: ModelRepository, tmp_path: Path
) -> None:
    private, public = generate_signing_keys(tmp_path / "k.pem", tmp_path / "k.pub")
    repo.add(write_mlp_onnx(tmp_path / "b.onnx", seed=3), name="bad", version=1)
    for name in ("mlp", "bad"):
        sign_directory(repo.version_dir(name, 1), private, version=1)
    (repo.version_dir("bad", 1) / "model.onnx").write_bytes(b"not the signed model")
    repo.add(write_mlp_onnx(tmp_path / "u.onnx"), name="unsigned", version=1)
    with TestClient(create_app(repo, public_key=public, cores=1)) as c:
        assert c.get("/v2/models/mlp/ready").status_code == 200
        assert c.get("/v2/models/bad/ready").status_code == 503
        reasons = {e["name"]: e["reason"] for e in c.post("/v2/repository/index").json()}
        assert "does not match its signed manifest" in reasons["bad"]
        assert "no signed manifest" in reasons["unsigned"]
        refused = c.post("/v2/repository/models/bad/load")
        assert refused.status_code == 400 and "signed manifest" in refused.json()["error"]
    # Without a key the manifest's own sha256 still catches the change.
    with TestClient(create_app(repo, cores=1)) as c:
        refused = c.post("/v2/repository/models/bad/load")
        assert refused.status_code == 400 and "changed after packing" in refused.json()["error"]


def test_hot_reload_under_load_fails_no_request(repo: ModelRepository, tmp_path: Path) -> None:
    app = create_app(repo, cores=1)
    payload = orjson.dumps(body(np.ones((1, 16), np.float32)))
    with BackgroundServer(app) as server:

        async def scenario() -> tuple[object, list[str]]:
            load = asyncio.create_task(
                run_load(server.url, path="/v2/models/mlp/infer", body=payload, concurrency=6, duration_s=3.0)
            )
            await asyncio.sleep(0.8)
            conn = HttpConnection(server.url)
            versions = []
            for version, seed in ((2, 5), (3, 6)):
                await asyncio.to_thread(
                    repo.add,
                    write_mlp_onnx(tmp_path / f"v{version}.onnx", seed=seed),
                    name="mlp",
                    version=version,
                )
                status, _ = await conn.request("POST", "/v2/repository/models/mlp/load")
                assert status == 200
                _, answer = await conn.request("POST", "/v2/models/mlp/infer", payload)
                versions.append(orjson.loads(answer)["model_version"])
                await asyncio.sleep(0.5)
            await conn.close()
            return await load, versions

        result, versions = asyncio.run(scenario())
    assert versions == ["2", "3"]
    assert result.errors == 0 and result.requests > 20 and result.statuses == {"200": result.requests}  # type: ignore[attr-defined]


def test_non_ascii_digits_are_refused_not_crashed_on(client: TestClient) -> None:
    # "¹".isdigit() is True but int("¹") raises: found by schemathesis as a 500.
    answer = client.post(
        "/v2/models/mlp/infer",
        content=orjson.dumps(body(np.ones((1, 16), np.float32))),
        headers={"Inference-Header-Content-Length": "¹".encode("latin-1")},
    )
    assert answer.status_code == 400 and "error" in answer.json()
