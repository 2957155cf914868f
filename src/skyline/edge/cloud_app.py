"""The cloud side that edge agents talk to: ingestion, inference (whole model and split tails), model
repository downloads and telemetry — one FastAPI app, bearer-token protected.

Inference speaks the Open Inference Protocol v2 JSON (``POST /v2/models/{name}/infer``), the same protocol
the edge agent serves locally. Split tails take the raw activation bytes (float32 or int8) so that the
bytes on the wire are the activation's real size.
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from skyline.edge.ingest import IngestStore
from skyline.errors import AuthError, ConfigError, NotFoundError, SkylineError

FloatArray = npt.NDArray[np.float32]
InferFn = Callable[[FloatArray], FloatArray]
TailFn = Callable[[int, FloatArray], FloatArray]
TokenCheck = Callable[[str | None], None]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def static_token(expected: str) -> TokenCheck:
    """A token check against one shared secret (constant-time comparison)."""

    def check(token: str | None) -> None:
        if token is None or not hmac.compare_digest(token.encode(), expected.encode()):
            raise AuthError("missing or wrong bearer token; pass Authorization: Bearer <token>")

    return check


class TensorIn(BaseModel):
    name: str
    shape: list[int] = Field(min_length=1, max_length=8)
    datatype: str = "FP32"
    data: list[float]


class InferRequest(BaseModel):
    inputs: list[TensorIn] = Field(min_length=1, max_length=1)


class UplinkRecordIn(BaseModel):
    id: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64)
    payload: dict[str, Any]
    created_at: float


class UplinkBatch(BaseModel):
    records: list[UplinkRecordIn] = Field(max_length=10_000)


class Telemetry(BaseModel):
    agent: str = Field(min_length=1, max_length=128)
    metrics: dict[str, float | int | str | None] = Field(default_factory=dict)


def decode_tensor(tensor: TensorIn) -> FloatArray:
    """An OIP v2 tensor as a float32 array of its declared shape (422 if the sizes disagree)."""
    if tensor.datatype != "FP32":
        raise ConfigError(f"datatype {tensor.datatype!r} is not supported; send FP32")
    if any(size < 0 for size in tensor.shape):
        raise ConfigError(f"shape {tensor.shape} has a negative size; sizes are counts >= 0")
    needed = math.prod(tensor.shape)  # exact: numpy's product would wrap around for huge sizes
    if needed != len(tensor.data):
        raise ConfigError(f"shape {tensor.shape} needs {needed} values, got {len(tensor.data)}")
    array = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    if not np.isfinite(array).all():
        raise ConfigError(
            "the tensor holds NaN or infinite values (or values beyond float32); send finite numbers"
        )
    return array


def decode_activation(body: bytes, headers: Mapping[str, str]) -> FloatArray:
    """Raw activation bytes + x-shape/x-dtype (+ x-scale/x-zero-point for int8) as float32."""
    try:
        shape = tuple(int(v) for v in headers["x-shape"].split(","))
        dtype = headers.get("x-dtype", "float32")
        if dtype == "float32":
            return np.frombuffer(body, dtype=np.float32).reshape(shape).copy()  # writable, for torch
        if dtype == "int8":
            raw = np.frombuffer(body, dtype=np.int8).reshape(shape).astype(np.float32)
            scale, zero = float(headers["x-scale"]), float(headers["x-zero-point"])
            return ((raw - zero) * scale).astype(np.float32)
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"bad activation: {exc}; send x-shape, x-dtype and the raw bytes") from exc
    raise ConfigError(f"x-dtype must be float32 or int8, got {dtype!r}")


def create_cloud_app(
    *,
    ingest: IngestStore,
    token_check: TokenCheck,
    models: Mapping[str, InferFn] | None = None,
    tails: Mapping[str, TailFn] | None = None,
    repository: Path | None = None,
) -> FastAPI:
    """The cloud service for edge agents; every route but ``/health`` requires a valid bearer token."""
    models, tails = dict(models or {}), dict(tails or {})
    telemetry: dict[str, dict[str, Any]] = {}

    def authorized(authorization: str | None = Header(default=None)) -> None:
        scheme, _, token = (authorization or "").partition(" ")
        token_check(token if scheme.lower() == "bearer" and token else None)

    app = FastAPI(title="skyline cloud for edge agents")
    guarded = [Depends(authorized)]

    @app.exception_handler(SkylineError)
    async def _skyline_error(request: Request, exc: SkylineError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid request", "detail": str(exc.errors())[:2000]}, status_code=422)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/uplink", dependencies=guarded)
    def uplink(batch: UplinkBatch) -> dict[str, int]:
        result = ingest.ingest([r.model_dump() for r in batch.records])
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    @app.post("/v2/models/{name}/infer", dependencies=guarded)
    def infer(name: str, request: InferRequest) -> dict[str, Any]:
        if name not in models:
            raise NotFoundError(f"model {name!r} is not served here; models: {', '.join(sorted(models))}")
        x = decode_tensor(request.inputs[0])
        try:
            probs = models[name](x)
        except (ValueError, RuntimeError) as exc:  # torch and ONNX Runtime refuse a wrong shape this way
            raise ConfigError(f"model {name!r} cannot take an input of shape {list(x.shape)}") from exc
        return {
            "model_name": name,
            "outputs": [
                {
                    "name": "probs",
                    "shape": list(probs.shape),
                    "datatype": "FP32",
                    "data": probs.ravel().tolist(),
                }
            ],
        }

    @app.post("/v1/split/{name}/{partition}", dependencies=guarded)
    async def split_tail(name: str, partition: int, request: Request) -> dict[str, Any]:
        if name not in tails:
            raise NotFoundError(f"no split model {name!r}; split models: {', '.join(sorted(tails))}")
        activation = decode_activation(await request.body(), request.headers)
        started = time.perf_counter()
        try:
            probs = tails[name](partition, activation)
        except (ValueError, RuntimeError, IndexError) as exc:
            raise ConfigError(
                f"split model {name!r} cannot run its tail from partition {partition} on shape "
                f"{list(activation.shape)}"
            ) from exc
        return {
            "probs": probs.ravel().tolist(),
            "shape": list(probs.shape),
            "cloud_ms": (time.perf_counter() - started) * 1e3,
        }

    @app.post("/v1/echo", dependencies=guarded)
    async def echo(request: Request) -> dict[str, int]:
        """Network probe: the edge times a tiny and a big body to measure RTT and bandwidth."""
        return {"bytes": len(await request.body())}

    @app.post("/v1/telemetry", dependencies=guarded)
    def report(item: Telemetry) -> dict[str, str]:
        telemetry[item.agent] = {"received_at": time.time(), **item.metrics}
        return {"status": "ok"}

    @app.get("/v1/telemetry", dependencies=guarded)
    def telemetry_view() -> dict[str, Any]:
        return telemetry

    def _model_dir(model: str, version: str | None = None) -> Path:
        if (
            repository is None
            or not _SAFE_NAME.match(model)
            or (version is not None and not version.isdigit())
        ):
            raise NotFoundError(f"no model {model!r} in the repository")
        path = repository / model / version if version is not None else repository / model
        if not path.is_dir():
            raise NotFoundError(f"no model {model!r} version {version} in the repository")
        return path

    @app.get("/v1/repository/{model}", dependencies=guarded)
    def versions(model: str) -> dict[str, list[int]]:
        found = sorted(int(p.name) for p in _model_dir(model).iterdir() if p.name.isdigit())
        return {"versions": found}

    @app.get("/v1/repository/{model}/{version}", dependencies=guarded)
    def files(model: str, version: str) -> dict[str, list[str]]:
        root = _model_dir(model, version)
        return {"files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())}

    @app.get("/v1/repository/{model}/{version}/{filename}", dependencies=guarded)
    def download(model: str, version: str, filename: str) -> Response:
        root = _model_dir(model, version)
        path = (root / filename).resolve()
        if not _SAFE_NAME.match(filename) or path.parent != root.resolve() or not path.is_file():
            raise NotFoundError(f"no file {filename!r} in {model}/{version}")
        return FileResponse(path)

    return app
