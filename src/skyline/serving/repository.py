"""The model repository: ``<root>/<model>/<version>/`` holding the model file and ``manifest.json``.

The manifest says what the file is (format), what it takes and returns (OIP datatypes and shapes, batch
first), how it batches, and the sha256 of the file. Loading re-hashes the file and refuses a mismatch
(`IntegrityError`), so a model changed after packing is never served. Versions are positive integers; the
highest is the default.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError, IntegrityError, NotFoundError
from skyline.serving.batching import BatchingConfig
from skyline.serving.runtime import RUNTIMES, onnx_signature
from skyline.serving.split_artifact import write_split
from skyline.serving.tensors import TensorSpec

MANIFEST_NAME = "manifest.json"
MODEL_FILES = {"onnx": "model.onnx", "torch-export": "model.pt2"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_model_name(name: str) -> str:
    """A model name is 1–64 letters, digits, ``_ . -`` (it becomes a folder and a URL segment)."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"model name {name!r} is invalid; use 1–64 letters, digits, '_', '.' or '-'")
    return name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelManifest:
    """Everything the server needs to know about one model version, as written in manifest.json."""

    name: str
    version: int
    format: str
    file: str
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    batching: BatchingConfig = field(default_factory=BatchingConfig)

    def __post_init__(self) -> None:
        check_model_name(self.name)
        if self.version < 1:
            raise ConfigError(f"model version is {self.version}; versions are integers ≥ 1")
        if self.format not in RUNTIMES:
            raise ConfigError(f"model format {self.format!r} is unknown; formats are {sorted(RUNTIMES)}")
        if not self.inputs or not self.outputs:
            raise ConfigError(f"model {self.name!r} must declare at least one input and one output")
        if "/" in self.file or self.file.startswith("."):
            raise ConfigError(f"model file {self.file!r} must be a plain file name inside the version folder")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "file": self.file,
            "sha256": self.sha256,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
            "batching": self.batching.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelManifest:
        try:
            return cls(
                name=str(data["name"]),
                version=int(data["version"]),
                format=str(data["format"]),
                file=str(data["file"]),
                sha256=str(data["sha256"]),
                inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
                batching=BatchingConfig.from_json(data.get("batching", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"manifest is malformed ({exc!r}); see docs/serving.md for its fields") from exc


class ModelRepository:
    """A folder of models: list them, read and verify their manifests, add new versions."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise NotFoundError(
                f"model repository {self.root} does not exist; create it or pack a model into it"
            )

    def models(self) -> list[str]:
        """Names of the models that have at least one version folder."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and _NAME.fullmatch(p.name) and self.versions(p.name)
        )

    def versions(self, name: str) -> list[int]:
        folder = self.root / check_model_name(name)
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in folder.iterdir()
            if p.name.isascii() and p.name.isdigit() and (p / MANIFEST_NAME).is_file()
        )

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / check_model_name(name) / str(version)

    def manifest(self, name: str, version: int | None = None) -> ModelManifest:
        """The manifest of ``version`` (default: the highest), not yet verified."""
        versions = self.versions(name)
        if not versions:
            raise NotFoundError(f"model {name!r} is not in repository {self.root}; models: {self.models()}")
        chosen = versions[-1] if version is None else version
        if chosen not in versions:
            raise NotFoundError(f"model {name!r} has no version {chosen}; versions: {versions}")
        path = self.version_dir(name, chosen) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"manifest {path} cannot be read: {exc}") from exc
        manifest = ModelManifest.from_json(data)
        if manifest.name != name or manifest.version != chosen:
            raise IntegrityError(
                f"manifest {path} names {manifest.name!r} version {manifest.version}, not its folder"
            )
        return manifest

    def verified_file(self, manifest: ModelManifest) -> Path:
        """The model file, after checking its sha256 against the manifest (IntegrityError if it differs)."""
        path = self.version_dir(manifest.name, manifest.version) / manifest.file
        if not path.is_file():
            raise IntegrityError(f"model file {path} is missing; re-pack the model")
        actual = sha256_of(path)
        if actual != manifest.sha256:
            raise IntegrityError(
                f"model file {path} has sha256 {actual[:16]}…, the manifest says {manifest.sha256[:16]}…; "
                "it was changed after packing: re-pack it from a trusted source"
            )
        return path

    def add(
        self,
        source: Path,
        *,
        name: str,
        version: int,
        inputs: Sequence[TensorSpec] | None = None,
        outputs: Sequence[TensorSpec] | None = None,
        batching: BatchingConfig | None = None,
        dynamic_size: int | None = None,
        split: bool = False,
    ) -> ModelManifest:
        """Copy a model file in as ``name``/``version`` and write its manifest (ONNX specs are read from it).

        With ``split`` an ONNX model is also cut into segments for split inference
        (`skyline.serving.split_artifact`); a graph with no cut point is refused and nothing is added."""
        fmt = "onnx" if source.suffix == ".onnx" else "torch-export"
        if not source.is_file():
            raise NotFoundError(f"model file {source} does not exist")
        if split and fmt != "onnx":
            raise ConfigError(f"--split needs an ONNX model; {source} is not one")
        if fmt == "onnx" and (inputs is None or outputs is None):
            found_inputs, found_outputs = onnx_signature(source, dynamic_size=dynamic_size)
            inputs, outputs = inputs or found_inputs, outputs or found_outputs
        if not inputs or not outputs:
            raise ConfigError(
                f"{source} is not ONNX: give its inputs and outputs (--input/--output NAME:DATATYPE:D1xD2)"
            )
        target = self.version_dir(name, version)
        if target.exists():
            raise ConfigError(f"{name} version {version} already exists in {self.root}; pick a new version")
        target.mkdir(parents=True)
        file = MODEL_FILES[fmt]
        shutil.copyfile(source, target / file)
        if split:
            try:
                write_split(target / file, target)
            except ConfigError:
                shutil.rmtree(target)
                raise
        manifest = ModelManifest(
            name=name,
            version=version,
            format=fmt,
            file=file,
            sha256=sha256_of(target / file),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            batching=batching or BatchingConfig(),
        )
        (target / MANIFEST_NAME).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        return manifest
