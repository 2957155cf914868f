"""The cloud's part of split inference: the tails of signed, splittable model versions, and their profile.

A version is loaded on first use: its folder's signed manifest is verified with the cloud's public key (a
tampered or unsigned version is refused, 400), its segments are loaded with the serving runtime family
(`skyline.edge.split.SplitModel`) and profiled on this host — the cloud's side of the profile the edge
combines with its own. Routes:

- ``GET /v1/split/{model}/{version}/profile`` → ``{"segment_ms": [...], "cut_bytes": [...]}``;
- ``POST /v1/split/{model}/{version}/{partition}`` with the raw activation at cut ``partition`` (float32 or
  int8, `skyline.edge.split.encode_activation`) → ``{"probs", "shape", "cloud_ms"}``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from skyline.edge.split import SplitModel, decode_activation
from skyline.errors import IntegrityError, NotFoundError
from skyline.security.rbac import Principal, authorize
from skyline.security.signing import verify_directory
from skyline.serving.repository import ModelRepository


class SplitTails:
    """Verified split models by (name, version), loaded and profiled once each."""

    def __init__(self, repository: Path, *, public_key: Path | None, profile_repeats: int = 20) -> None:
        self.repository, self.public_key, self.profile_repeats = repository, public_key, profile_repeats
        self._loaded: dict[tuple[str, int], tuple[SplitModel, list[float]]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: int) -> tuple[SplitModel, list[float]]:
        """The split model and its per-segment profile on this host (ms per input)."""
        key = (name, version)
        with self._lock:  # one load at a time; loading twice would only cost time
            if key not in self._loaded:
                self._loaded[key] = self._load(name, version)
            return self._loaded[key]

    def _load(self, name: str, version: int) -> tuple[SplitModel, list[float]]:
        repository = ModelRepository(self.repository)
        if version not in repository.versions(name):
            raise NotFoundError(f"model {name!r} has no version {version} in the repository")
        if self.public_key is None:
            raise IntegrityError(
                "this cloud has no public key to verify split models; start it with --public-key"
            )
        folder = repository.version_dir(name, version)
        verify_directory(folder, self.public_key)
        model = SplitModel(folder)
        return model, model.profile_ms(repeats=self.profile_repeats)

    def close(self) -> None:
        with self._lock:
            for model, _ in self._loaded.values():
                model.close()
            self._loaded.clear()


def _version(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise NotFoundError(f"model version {text!r} does not exist; versions are integers >= 1")
    return int(text)


def split_routes(app: FastAPI, tails: SplitTails, allowed: Any) -> None:
    """Add the split routes to ``app`` (an ``invoke`` on ``models`` token, scoped per model)."""
    invoke = allowed("invoke", "models")
    app.state.split_tails = tails

    @app.get("/v1/split/{name}/{version}/profile")
    def profile(name: str, version: str, who: Principal = invoke) -> dict[str, Any]:
        authorize(who, "invoke", "models", model=name)
        model, segment_ms = tails.get(name, _version(version))
        return {
            "segment_ms": segment_ms,
            "cut_bytes": [model.spec.cut_bytes(k) for k in range(len(model) + 1)],
        }

    @app.post("/v1/split/{name}/{version}/{partition}")
    async def tail(name: str, version: str, partition: int, request: Request, who: Principal = invoke) -> Any:
        authorize(who, "invoke", "models", model=name)
        activation = decode_activation(await request.body(), request.headers)
        model, _ = await run_in_threadpool(tails.get, name, _version(version))
        started = time.perf_counter()
        probs = await run_in_threadpool(model.tail, partition, activation)  # off the event loop
        return {
            "probs": probs.ravel().tolist(),
            "shape": list(probs.shape),
            "cloud_ms": (time.perf_counter() - started) * 1e3,
        }
