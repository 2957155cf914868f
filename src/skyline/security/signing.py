"""Signed model artifacts: an Ed25519 signature over a manifest of per-file sha256 hashes and a version.

Anchored on OpenSSF model signing (sign a manifest of every file, not an archive) and TUF (a client keeps
the highest version it accepted and refuses anything older: no rollback, no mix-and-match, because every
file of one version is pinned by one signed manifest).

The manifest lives in the signed directory as ``skyline-manifest.json``::

    {"format": "skyline-signed-manifest/1",
     "manifest": {"version": 3, "files": {"model.onnx": {"sha256": "<64 hex>", "size": 1234}, ...}},
     "key_id": "<first 16 hex of sha256(raw public key)>",
     "signature": "<base64 Ed25519 signature of the canonical JSON of 'manifest'>"}

Canonical JSON = ``json.dumps(manifest, sort_keys=True, separators=(",", ":"))`` in UTF-8. Paths are
relative, POSIX-style; every regular file under the directory except the manifest is listed; symbolic
links and other special files are refused (they could point outside the signed tree).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from skyline.errors import ConfigError, IntegrityError
from skyline.security.keyfile import read_private, write_private

__all__ = [
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "FileEntry",
    "Manifest",
    "generate_signing_keys",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_directory",
    "verify_directory",
]

MANIFEST_NAME = "skyline-manifest.json"
MANIFEST_FORMAT = "skyline-signed-manifest/1"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """A verified manifest: the version, every file's hash and size, and the signing key's id."""

    version: int
    files: Mapping[str, FileEntry]
    key_id: str


# ---------------------------------------------------------------------- keys
def generate_signing_keys(private_path: Path, public_path: Path) -> tuple[Path, Path]:
    """A new Ed25519 pair: the private key as PKCS#8 PEM (mode 0600), the public key as PEM."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private(Path(private_path), pem)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    Path(public_path).parent.mkdir(parents=True, exist_ok=True)
    Path(public_path).write_bytes(public_pem)
    return Path(private_path), Path(public_path)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key (PEM) from an owner-only file."""
    try:
        key = serialization.load_pem_private_key(read_private(Path(path)), password=None)
    except ValueError as exc:
        raise ConfigError(
            f"{path} is not a PEM private key ({exc}); make one with 'skyline keys gen'"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{path} holds a {type(key).__name__}, not an Ed25519 key; make one with 'skyline keys gen'"
        )
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read an Ed25519 public key (PEM)."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read public key {path} ({exc}); pass the .pub file from 'skyline keys gen'"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 public key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 hex digits of sha256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


# ---------------------------------------------------------------------- hashing
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _scan(root: Path) -> dict[str, FileEntry]:
    """Every regular file under ``root`` except the manifest, keyed by relative POSIX path."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory; pass the model directory to sign or verify")
    files: dict[str, FileEntry] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise IntegrityError(
                f"{rel!r} in {root} is a symbolic link or special file; only regular files can be signed"
            )
        if path.is_file() and rel != MANIFEST_NAME:
            files[rel] = FileEntry(sha256=_sha256(path), size=path.stat().st_size)
    return files


def _canonical(manifest: Mapping[str, Any]) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------- sign / verify
def sign_directory(path: Path, private_key_path: Path, *, version: int) -> Path:
    """Hash every file under ``path``, sign the manifest with the key, write ``path/skyline-manifest.json``."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise ConfigError(f"version must be a non-negative integer, got {version!r}; pass e.g. --version 1")
    root = Path(path)
    private = load_private_key(Path(private_key_path))
    files = _scan(root)
    manifest = {
        "version": version,
        "files": {n: {"sha256": e.sha256, "size": e.size} for n, e in files.items()},
    }
    signed = {
        "format": MANIFEST_FORMAT,
        "manifest": manifest,
        "key_id": key_id(private.public_key()),
        "signature": base64.b64encode(private.sign(_canonical(manifest))).decode("ascii"),
    }
    target = root / MANIFEST_NAME
    target.write_text(json.dumps(signed, indent=1, sort_keys=True) + "\n")
    return target


def _read_signed(root: Path) -> tuple[dict[str, Any], str, bytes]:
    target = root / MANIFEST_NAME
    if not target.is_file() or target.is_symlink():
        raise IntegrityError(
            f"{root} has no signed manifest {MANIFEST_NAME}; sign it with 'skyline keys sign'"
        )
    try:
        signed = json.loads(target.read_text())
        manifest, signer, signature = (
            signed["manifest"],
            str(signed["key_id"]),
            base64.b64decode(signed["signature"]),
        )
        if signed.get("format") != MANIFEST_FORMAT or not isinstance(manifest, dict):
            raise ValueError(f"format {signed.get('format')!r}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(
            f"{target} is not a valid signed manifest ({exc}); re-sign the directory"
        ) from exc
    return manifest, signer, signature


def _entries(manifest: Mapping[str, Any], target: Path) -> tuple[int, dict[str, FileEntry]]:
    try:
        version = manifest["version"]
        files = {
            str(n): FileEntry(sha256=str(e["sha256"]), size=int(e["size"]))
            for n, e in manifest["files"].items()
        }
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"version {version!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise IntegrityError(f"{target} has a malformed manifest ({exc}); re-sign the directory") from exc
    for name in files:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise IntegrityError(f"{target} lists {name!r}, a path outside the directory: refused")
    return version, files


def _differences(expected: Mapping[str, FileEntry], actual: Mapping[str, FileEntry]) -> list[str]:
    problems = [
        f"file {n!r} was removed (listed in the manifest, missing on disk)"
        for n in sorted(set(expected) - set(actual))
    ]
    problems += [
        f"file {n!r} was added (on disk, not in the manifest)" for n in sorted(set(actual) - set(expected))
    ]
    for name in sorted(set(expected) & set(actual)):
        want, got = expected[name], actual[name]
        if want != got:
            problems.append(
                f"file {name!r} was modified: sha256 {got.sha256[:16]}… ({got.size} bytes), "
                f"manifest says {want.sha256[:16]}… ({want.size} bytes)"
            )
    return problems


def verify_directory(path: Path, public_key_path: Path, *, min_version: int | None = None) -> Manifest:
    """Check the signature, the version (≥ ``min_version``) and every file; return the verified manifest.

    Raises `IntegrityError` naming what failed: wrong key or edited manifest, a rollback below
    ``min_version``, or each file that was modified, added or removed.
    """
    root = Path(path)
    public = load_public_key(Path(public_key_path))
    manifest, signer, signature = _read_signed(root)
    target = root / MANIFEST_NAME
    expected_id = key_id(public)
    try:
        public.verify(signature, _canonical(manifest))
    except InvalidSignature:
        raise IntegrityError(
            f"signature of {target} does not verify with public key {public_key_path} (key id {expected_id}; "
            f"the manifest says it was signed by key id {signer}): wrong key, or the manifest was edited"
        ) from None
    version, expected = _entries(manifest, target)
    if min_version is not None and version < min_version:
        raise IntegrityError(
            f"{root} is version {version}, older than version {min_version} already accepted: rollback refused"
        )
    problems = _differences(expected, _scan(root))
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise IntegrityError(f"{root} does not match its signed manifest: " + "; ".join(problems[:3]) + more)
    return Manifest(version=version, files=expected, key_id=expected_id)
