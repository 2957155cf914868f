"""Keep the agent on the version of its model the fleet wants; verify before an atomic swap.

The agent asks the cloud which version it should run (`skyline.edge.fleet`: a rollout wave's, the
fleet's pinned one, or the newest). A version it has not installed yet is downloaded into a private
staging folder, its Ed25519-signed manifest is verified (signature, every file's sha256, and — TUF's
rule — a version above every one accepted before), and only then is the folder renamed into place and the
``current`` pointer replaced with ``os.replace`` — atomic on POSIX. A failed or tampered download is
deleted and counted; the model in use is never touched by it. Going back to an older version (a rollout
rolled back) is allowed only to a version this agent verified and ran before, and it is verified again
from disk first; an older version it never had is refused.

Layout under the agent's store::

    models/<model>/<version>/...     verified versions
    models/<model>/current           the version in use (a small text file)
    staging/                         downloads in progress
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from skyline.errors import IntegrityError, UnavailableError
from skyline.security.signing import verify_directory


@dataclass(slots=True)
class SyncCounts:
    checks: int = 0
    installed: int = 0
    refused: int = 0
    unreachable: int = 0
    last_error: str = ""


class ModelSync:
    """Keeps ``store/models/<model>`` at the newest verified version the cloud offers."""

    def __init__(self, *, store: Path, model: str, http: httpx.Client, public_key: Path, agent: str) -> None:
        self.store, self.model, self.http, self.public_key = Path(store), model, http, public_key
        self.agent = agent
        self.counts = SyncCounts()
        self.model_root.mkdir(parents=True, exist_ok=True)
        (self.store / "staging").mkdir(parents=True, exist_ok=True)

    @property
    def model_root(self) -> Path:
        return self.store / "models" / self.model

    def current_version(self) -> int | None:
        try:
            return int((self.model_root / "current").read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def current_dir(self) -> Path | None:
        version = self.current_version()
        return None if version is None else self.model_root / str(version)

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self.http.get(path)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"cloud repository unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            raise UnavailableError(
                f"cloud repository answered {response.status_code} for {path}: {response.text[:200]}"
            )
        return response

    def installed(self) -> list[int]:
        """Versions verified and installed here before, oldest first."""
        return sorted(int(p.name) for p in self.model_root.iterdir() if p.is_dir() and p.name.isdigit())

    def desired(self) -> int | None:
        """The version the fleet wants this agent to run (None: nothing published yet)."""
        try:
            answer = self._get(f"/v1/fleet/agents/{self.agent}/models/{self.model}").json()
            return None if answer["version"] is None else int(answer["version"])
        except UnavailableError as exc:
            self.counts.unreachable += 1
            self.counts.last_error = str(exc)
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise UnavailableError(f"the cloud sent a malformed desired version: {exc}") from exc

    def check(self) -> int | None:
        """Switch to the desired version if it is not the current one; returns it, or None when nothing changed.

        Raises `IntegrityError` (refused: the current model is kept) or `UnavailableError` (cloud away).
        """
        self.counts.checks += 1
        version = self.desired()
        current = self.current_version()
        if version is None or version == current:
            return None
        installed = self.installed()
        if version in installed:
            try:
                verify_directory(self.model_root / str(version), self.public_key)
            except IntegrityError as exc:
                self.counts.refused += 1
                self.counts.last_error = str(exc)
                raise
            self._point_to(version)
            self.counts.installed += 1
            return version
        if installed and version < max(installed):
            self.counts.refused += 1
            raise IntegrityError(
                f"the cloud asks for version {version} of {self.model!r}, older than version {max(installed)} "
                "accepted here and never installed: rollback refused"
            )
        return self._install(version, max(installed) if installed else None)

    def _install(self, version: int, current: int | None) -> int:
        staging = Path(tempfile.mkdtemp(prefix=f"{self.model}-{version}-", dir=self.store / "staging"))
        try:
            for name in self._get(f"/v1/repository/{self.model}/{version}").json()["files"]:
                target = (staging / name).resolve()
                if staging.resolve() not in target.parents:
                    raise IntegrityError(
                        f"the repository lists {name!r}, a path outside the version: refused"
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self._get(f"/v1/repository/{self.model}/{version}/{name}").content)
            manifest = verify_directory(
                staging, self.public_key, min_version=None if current is None else current + 1
            )
            if manifest.version != version:
                raise IntegrityError(
                    f"the repository calls it version {version} but its signed manifest says {manifest.version}"
                )
            final = self.model_root / str(version)
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
            self._point_to(version)
        except (IntegrityError, UnavailableError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if isinstance(exc, IntegrityError):
                self.counts.refused += 1
            self.counts.last_error = str(exc)
            raise
        self.counts.installed += 1
        return version

    def _point_to(self, version: int) -> None:
        pointer = self.model_root / "current"
        temporary = pointer.with_name(f".current-{os.getpid()}")
        with open(temporary, "w") as handle:
            handle.write(f"{version}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, pointer)
