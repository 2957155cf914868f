"""Pull model versions from the cloud's repository; verify before an atomic swap.

A new version is downloaded into a private staging folder, its Ed25519-signed manifest is verified
(signature, every file's sha256, version newer than the one in use: no rollback), and only then is the
folder renamed into place and the ``current`` pointer replaced with ``os.replace`` — atomic on POSIX. A
failed or tampered download is deleted and counted; the model in use is never touched by it.

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

    def __init__(self, *, store: Path, model: str, http: httpx.Client, public_key: Path | None) -> None:
        """``public_key`` None (a split agent, whose network is built in) refuses every download."""
        self.store, self.model, self.http, self.public_key = Path(store), model, http, public_key
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

    def check(self) -> int | None:
        """Install the newest version if it is newer than the current one; returns the installed version or None.

        Raises `IntegrityError` (download refused, current model kept) or `UnavailableError` (cloud away).
        """
        self.counts.checks += 1
        try:
            versions: list[int] = self._get(f"/v1/repository/{self.model}").json()["versions"]
        except UnavailableError as exc:
            self.counts.unreachable += 1
            self.counts.last_error = str(exc)
            raise
        current = self.current_version()
        newer = [v for v in versions if current is None or v > current]
        if not newer:
            return None
        return self._install(max(newer), current)

    def _install(self, version: int, current: int | None) -> int:
        if self.public_key is None:
            raise IntegrityError(
                f"no public key to verify version {version} of {self.model!r}; pass --public-key"
            )
        staging = Path(tempfile.mkdtemp(prefix=f"{self.model}-{version}-", dir=self.store / "staging"))
        try:
            for name in self._get(f"/v1/repository/{self.model}/{version}").json()["files"]:
                (staging / name).write_bytes(
                    self._get(f"/v1/repository/{self.model}/{version}/{name}").content
                )
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
