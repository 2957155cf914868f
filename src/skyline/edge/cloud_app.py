"""The cloud side that edge agents talk to: ingestion, inference (whole model and split tails), model
repository downloads and telemetry — one FastAPI app. Every route but ``/health`` takes a bearer token of
the `skyline.security.tokens.TokenAuthority` and is authorized by the ONE permission table
(`skyline.security.rbac`, deny by default): an ``edge`` token uplinks, pulls models, invokes and reports
telemetry; reading the telemetry takes a role that reads metrics (admin, operator, viewer). Request bodies
are capped (413 above ``max_body_bytes``). With ``audit_log``, every state-changing call (uplink ingestion,
telemetry reports; refused attempts too) is appended to a hash-chained audit log — inference, split tails and
the echo probe change nothing and are not. With ``rate_limit_per_s``, each token gets that many requests
per second (burst: two seconds' worth) on every authenticated route, 429 + ``Retry-After`` beyond; off by
default. Served over TLS by whoever runs it (``tls`` of `skyline.serving.server.BackgroundServer`,
``skyline edge cloud --tls-cert/--tls-key``).

Inference speaks the Open Inference Protocol v2 JSON (``POST /v2/models/{name}/infer``), the same protocol
the edge agent serves locally. Split tails take the raw activation bytes (float32 or int8) so that the
bytes on the wire are the activation's real size.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from skyline.edge.ingest import IngestStore
from skyline.errors import ConfigError, NotFoundError
from skyline.security.audit import AuditLog
from skyline.security.http import DEFAULT_MAX_BODY_BYTES, RateLimiter, install_error_handlers, require
from skyline.security.http_audit import install_audit
from skyline.security.rbac import Principal, Role, authorize
from skyline.security.tokens import TokenAuthority

FloatArray = npt.NDArray[np.float32]
InferFn = Callable[[FloatArray], FloatArray]
TailFn = Callable[[int, FloatArray], FloatArray]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
AUDITED_PATHS = ("/v1/uplink", "/v1/telemetry")  # the cloud's state-changing routes


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
    authority: TokenAuthority,
    models: Mapping[str, InferFn] | None = None,
    tails: Mapping[str, TailFn] | None = None,
    repository: Path | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    audit_log: Path | None = None,
    rate_limit_per_s: float | None = None,
) -> FastAPI:
    """The cloud service for edge agents; every route but ``/health`` needs a token whose role allows it."""
    models, tails = dict(models or {}), dict(tails or {})
    telemetry: dict[str, dict[str, Any]] = {}

    app = FastAPI(title="skyline cloud for edge agents")
    install_error_handlers(app, max_body_bytes=max_body_bytes)
    if audit_log is not None:
        install_audit(app, AuditLog(audit_log), authority=authority, paths=AUDITED_PATHS)
    limiter = None
    if rate_limit_per_s is not None:
        limiter = RateLimiter(rate_per_s=rate_limit_per_s, burst=max(1, round(2 * rate_limit_per_s)))

    def allowed(action: str, kind: str) -> Any:
        # Dependencies as defaults, not Annotated: this module uses `from __future__ import annotations`.
        return Depends(require(authority, action, kind, limiter=limiter))

    invoke = allowed("invoke", "models")
    read_repository = allowed("read", "repository")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/uplink", dependencies=[allowed("create", "uplink")])
    def uplink(batch: UplinkBatch) -> dict[str, int]:
        result = ingest.ingest([r.model_dump() for r in batch.records])
        return {"accepted": result.accepted, "duplicates": result.duplicates}

    @app.post("/v2/models/{name}/infer")
    def infer(name: str, request: InferRequest, who: Principal = invoke) -> dict[str, Any]:
        authorize(who, "invoke", "models", model=name)  # the token's model scope
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

    @app.post("/v1/split/{name}/{partition}")
    async def split_tail(
        name: str, partition: int, request: Request, who: Principal = invoke
    ) -> dict[str, Any]:
        authorize(who, "invoke", "models", model=name)
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

    @app.post("/v1/echo", dependencies=[allowed("read", "uplink")])
    async def echo(request: Request) -> dict[str, int]:
        """Network probe: the edge times a tiny and a big body to measure RTT and bandwidth."""
        return {"bytes": len(await request.body())}

    @app.post("/v1/telemetry", dependencies=[allowed("create", "metrics")])
    def report(item: Telemetry) -> dict[str, str]:
        telemetry[item.agent] = {"received_at": time.time(), **item.metrics}
        return {"status": "ok"}

    @app.get("/v1/telemetry", dependencies=[allowed("read", "metrics")])
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

    @app.get("/v1/repository/{model}")
    def versions(model: str, who: Principal = read_repository) -> dict[str, list[int]]:
        authorize(who, "read", "repository", model=model)
        found = sorted(int(p.name) for p in _model_dir(model).iterdir() if p.name.isdigit())
        return {"versions": found}

    @app.get("/v1/repository/{model}/{version}")
    def files(model: str, version: str, who: Principal = read_repository) -> dict[str, list[str]]:
        authorize(who, "read", "repository", model=model)
        root = _model_dir(model, version)
        return {"files": sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())}

    @app.get("/v1/repository/{model}/{version}/{filename}")
    def download(model: str, version: str, filename: str, who: Principal = read_repository) -> Response:
        authorize(who, "read", "repository", model=model)
        root = _model_dir(model, version)
        path = (root / filename).resolve()
        if not _SAFE_NAME.match(filename) or path.parent != root.resolve() or not path.is_file():
            raise NotFoundError(f"no file {filename!r} in {model}/{version}")
        return FileResponse(path)

    return app


def edge_authority(path: Path, *, subject: str = "edge-device") -> tuple[TokenAuthority, str]:
    """A token file at ``path`` and one fresh ``edge`` token from it, for a cloud app run in-process
    (evaluations, the demo, tests)."""
    authority = TokenAuthority(path)
    return authority, authority.issue(subject, Role.EDGE)
