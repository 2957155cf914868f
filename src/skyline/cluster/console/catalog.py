"""What the Models and Audit views read from disk: the model repository (each version's size, integrity
and signature, verified against the trusted public keys) and the audit log (its records and whether the
hash chain holds). Verifying hashes every file, so results are kept until a file changes."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.errors import IntegrityError, SkylineError
from skyline.security.audit import verify_audit_log
from skyline.security.signing import MANIFEST_NAME, load_public_key, verify_directory
from skyline.security.signing import key_id as public_key_id
from skyline.serving.repository import ModelRepository


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """``verified`` (by ``key_id``, the key file ``key``), ``unsigned``, or ``invalid`` (``detail`` says why)."""

    state: str
    key_id: str = ""
    key: str = ""
    detail: str = ""


def _stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of a folder's files: changes whenever a file does."""
    return tuple(
        (str(p.relative_to(folder)), (st := p.stat()).st_size, st.st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    )


class Catalog:
    """The model repository and the audit log as the console shows them (thread-safe, cached)."""

    def __init__(self, repository: Path | None, trusted_keys: Sequence[Path], audit_log: Path | None) -> None:
        self.repository = repository
        self.trusted_keys = tuple(trusted_keys)
        self.audit_log = audit_log
        self._lock = threading.Lock()
        self._signatures: dict[Path, tuple[Any, Signature]] = {}
        self._audit: tuple[Any, str, str] | None = None

    # ------------------------------------------------------------------ models
    def models(self) -> list[dict[str, Any]]:
        """Every model with its versions, newest first: format, size, sha256 check and signature."""
        if self.repository is None or not self.repository.is_dir():
            return []
        repo = ModelRepository(self.repository)
        out = []
        for name in repo.models():
            versions = [self._version(repo, name, v) for v in reversed(repo.versions(name))]
            out.append({"name": name, "versions": versions})
        return out

    def _version(self, repo: ModelRepository, name: str, version: int) -> dict[str, Any]:
        folder = repo.version_dir(name, version)
        stamp = _stamp(folder)
        row: dict[str, Any] = {"version": version, "size_bytes": sum(s for _, s, _ in stamp)}
        try:
            manifest = repo.manifest(name, version)
            row["format"] = manifest.format
            repo.verified_file(manifest)
            row["integrity"] = "ok"
        except SkylineError as exc:
            row.setdefault("format", "?")
            row["integrity"] = str(exc)
        row["signature"] = self._signature(folder, stamp)
        return row

    def _signature(self, folder: Path, stamp: Any) -> Signature:
        with self._lock:
            cached = self._signatures.get(folder)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        found = self._verify(folder)
        with self._lock:
            self._signatures[folder] = (stamp, found)
        return found

    def _verify(self, folder: Path) -> Signature:
        if not (folder / MANIFEST_NAME).is_file():
            return Signature(state="unsigned", detail=f"no {MANIFEST_NAME}")
        if not self.trusted_keys:
            return Signature(state="invalid", detail="signed, but the console trusts no public key")
        problems = []
        for key in self.trusted_keys:
            try:
                manifest = verify_directory(folder, key)
            except IntegrityError as exc:
                problems.append(str(exc))
                continue
            return Signature(state="verified", key_id=manifest.key_id, key=key.name)
        return Signature(state="invalid", detail=problems[-1])

    def key_ids(self) -> list[tuple[str, str]]:
        """(file name, key id) of each trusted public key."""
        return [(k.name, public_key_id(load_public_key(k))) for k in self.trusted_keys]

    # ------------------------------------------------------------------ audit
    def audit(self, *, before: int | None, limit: int) -> dict[str, Any]:
        """The chain's verification result and one page of records, newest first."""
        if self.audit_log is None:
            return {"configured": False}
        if not self.audit_log.exists():
            return {
                "configured": True,
                "state": "empty",
                "detail": "no record yet",
                "records": [],
                "total": 0,
            }
        state, detail = self._audit_check()
        lines = self.audit_log.read_text(encoding="utf-8").splitlines()
        end = len(lines) if before is None else max(0, min(before, len(lines)))
        page = [_record(line) for line in reversed(lines[max(0, end - limit) : end])]
        return {
            "configured": True, "state": state, "detail": detail, "records": page, "total": len(lines),
            "older": end - limit if end - limit > 0 else None,
        }  # fmt: skip

    def _audit_check(self) -> tuple[str, str]:
        assert self.audit_log is not None
        head = self.audit_log.with_name(self.audit_log.name + ".head")
        stamp = tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in (self.audit_log, head) if p.exists())
        with self._lock:
            if self._audit is not None and self._audit[0] == stamp:
                return self._audit[1], self._audit[2]
        try:
            report = verify_audit_log(self.audit_log)
            state = "verified"
            detail = f"{report.records} records chain to {report.last_hash[:16]}…" + (
                ", head file matches" if report.head_checked else ""
            )
        except SkylineError as exc:
            state, detail = "broken", str(exc)
        with self._lock:
            self._audit = (stamp, state, detail)
        return state, detail


def _record(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
        return record if isinstance(record, dict) else {"malformed": line[:200]}
    except ValueError:
        return {"malformed": line[:200]}
