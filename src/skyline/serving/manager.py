"""Loaded models: load (verify → runtime → warm-up → batcher), hot-reload and unload without dropping requests.

A new version becomes visible only after its warm-up inference succeeded; the versions it replaces are
then taken out of the routing table first and drained (every request already queued is answered) before
their runtime is released. One version per model is served at a time (the newest loaded).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skyline.errors import ConfigError, NotFoundError, SkylineError
from skyline.serving.batching import DynamicBatcher
from skyline.serving.metrics import ModelMetrics, ServingMetrics
from skyline.serving.repository import ModelManifest, ModelRepository
from skyline.serving.runtime import Runtime, load_runtime, plan_threads
from skyline.serving.tensors import check_inputs

Arrays = dict[str, np.ndarray[Any, Any]]
# Called with a version folder before anything in it is loaded; raises IntegrityError to refuse it.
DirectoryVerifier = Callable[[Path], object]


@dataclass(slots=True)
class LoadedModel:
    """One served model version: its manifest, its one runtime, its batcher and its metrics."""

    manifest: ModelManifest
    runtime: Runtime
    batcher: DynamicBatcher
    metrics: ModelMetrics

    async def infer(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> Arrays:
        """Validate ``inputs`` against the manifest, then batch and compute them."""
        check_inputs(self.manifest.inputs, inputs)
        started = time.perf_counter()
        try:
            outputs = await self.batcher.submit(dict(inputs))
        except BaseException:
            self.metrics.failure.inc()
            raise
        self.metrics.success.inc()
        self.metrics.request_s.observe(time.perf_counter() - started)
        return outputs

    async def close(self) -> None:
        await self.batcher.close(drain=True)
        self.runtime.close()


def _warm_up_inputs(manifest: ModelManifest, rows: int) -> Arrays:
    return {s.name: np.zeros((rows, *s.shape[1:]), dtype=s.dtype) for s in manifest.inputs}


class ModelManager:
    """The routing table of served models, and the only place that loads and unloads them."""

    def __init__(
        self,
        repository: ModelRepository,
        *,
        metrics: ServingMetrics,
        cores: int | None = None,
        verify_directory: DirectoryVerifier | None = None,
    ) -> None:
        self.repository, self.metrics = repository, metrics
        self.cores = cores or os.cpu_count() or 1
        self.verify_directory = verify_directory
        self._served: dict[str, LoadedModel] = {}
        self.failures: dict[tuple[str, int], str] = {}  # (model, version) → why it could not be loaded
        self._lock = asyncio.Lock()  # one load/unload at a time; inference never takes it

    def loaded(self) -> dict[str, LoadedModel]:
        return dict(self._served)

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The served model (and version, if given) or NotFoundError."""
        model = self._served.get(name)
        if model is None:
            raise NotFoundError(f"model {name!r} is not loaded; loaded: {sorted(self._served)}")
        if version is not None and model.manifest.version != version:
            raise NotFoundError(
                f"model {name!r} version {version} is not loaded; version {model.manifest.version} is served"
            )
        return model

    async def load(self, name: str, version: int | None = None) -> ModelManifest:
        """Load (or hot-reload to) ``version`` (default: newest), then retire the version it replaces."""
        async with self._lock:
            manifest = self.repository.manifest(name, version)
            try:
                model = await asyncio.to_thread(self._build, manifest)
            except SkylineError as exc:
                self.failures[(name, manifest.version)] = str(exc)
                raise
            self.failures.pop((name, manifest.version), None)
            model.batcher.start()
            previous = self._served.get(name)
            self._served[name] = model  # from here on new requests go to the new version
        if previous is not None:
            await previous.close()  # drains what it already queued
        return manifest

    async def unload(self, name: str) -> None:
        """Stop serving ``name``; requests already queued are still answered."""
        async with self._lock:
            model = self._served.pop(name, None)
        if model is None:
            raise NotFoundError(f"model {name!r} is not loaded; loaded: {sorted(self._served)}")
        await model.close()

    async def load_all(self) -> list[ModelManifest]:
        """Load the newest version of every model; one that fails (tampered, broken) is skipped and its
        reason kept in `failures`, so one bad model does not keep the others from being served."""
        loaded = []
        for name in self.repository.models():
            try:
                loaded.append(await self.load(name))
            except SkylineError as exc:
                self.failures[(name, self.repository.versions(name)[-1])] = str(exc)
        return loaded

    async def close(self) -> None:
        for name in list(self._served):
            await self.unload(name)

    def _build(self, manifest: ModelManifest) -> LoadedModel:
        """Verify, load and warm up (in a thread: it is slow); nothing is visible to requests yet."""
        folder = self.repository.version_dir(manifest.name, manifest.version)
        if self.verify_directory is not None:
            self.verify_directory(folder)
        path = self.repository.verified_file(manifest)
        threads = plan_threads(manifest.batching.instances, cores=self.cores)
        runtime = load_runtime(manifest.format, path, manifest.inputs, manifest.outputs, threads)
        try:
            for rows in sorted({1, manifest.batching.max_batch_size}):
                runtime.infer(_warm_up_inputs(manifest, rows))
        except Exception as exc:  # a runtime's own error type: the model does not fit its manifest
            runtime.close()
            raise ConfigError(
                f"warm-up inference of {manifest.name} version {manifest.version} failed ({exc}); "
                "check the manifest's inputs against the model"
            ) from exc
        metrics = self.metrics.for_model(manifest.name, manifest.version)
        batcher = DynamicBatcher(
            runtime.infer, manifest.batching, name=manifest.name, on_batch=metrics.observe_batch
        )
        return LoadedModel(manifest=manifest, runtime=runtime, batcher=batcher, metrics=metrics)
