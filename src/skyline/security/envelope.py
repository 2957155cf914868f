"""Envelope encryption at rest: each blob gets a fresh AES-256-GCM data key, wrapped by a key-encryption key.

Why envelopes: rotating the key-encryption key (KEK) re-wraps 48 bytes per blob instead of re-encrypting
the data, and one leaked data key exposes one blob only.

Blob layout (all lengths in bytes)::

    magic "SKE1" (4) | KEK id (8) | wrap nonce (12) | wrapped data key (32 + 16 tag) | data nonce (12) | ciphertext + tag (16)

The data key is wrapped with AES-256-GCM under the KEK (associated data: magic + KEK id); the data is
encrypted with AES-256-GCM under the data key (associated data: magic). Any flipped bit fails the tag.
The KEK id (first 8 bytes of sha256(KEK)) names which KEK a blob needs, so a wrong key is reported as such.

KEKs are 32 random bytes, kept as 64 hex digits in an owner-only file (`generate_kek`, `load_kek`) or in
the environment variable ``SKYLINE_KEK``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from skyline.errors import ConfigError, IntegrityError
from skyline.security.keyfile import read_private, write_private

__all__ = [
    "KEK_BYTES",
    "KEK_ENV",
    "decrypt",
    "decrypt_file",
    "decrypt_tree",
    "encrypt",
    "encrypt_file",
    "encrypt_tree",
    "generate_kek",
    "kek_id",
    "load_kek",
    "rewrap",
    "tree_files",
]

MAGIC = b"SKE1"
KEK_BYTES = 32
KEK_ENV = "SKYLINE_KEK"
_ID, _NONCE, _WRAPPED = 8, 12, KEK_BYTES + 16
_HEADER = len(MAGIC) + _ID + _NONCE + _WRAPPED + _NONCE


def _check_kek(kek: bytes) -> None:
    if not isinstance(kek, bytes | bytearray) or len(kek) != KEK_BYTES:
        raise ConfigError(f"a key-encryption key is {KEK_BYTES} bytes; make one with 'skyline keys gen'")


def kek_id(kek: bytes) -> bytes:
    """The 8-byte id of a KEK written into every blob it wraps (not secret: a hash prefix)."""
    _check_kek(kek)
    return hashlib.sha256(bytes(kek)).digest()[:_ID]


def _wrap(data_key: bytes, kek: bytes) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    ident = kek_id(kek)
    return ident + nonce + AESGCM(bytes(kek)).encrypt(nonce, data_key, MAGIC + ident)


def _unwrap(blob: bytes, kek: bytes) -> bytes:
    if len(blob) < _HEADER + 16 or blob[: len(MAGIC)] != MAGIC:
        raise IntegrityError(
            "not a skyline encrypted blob (bad magic or too short); was it encrypted with 'skyline keys encrypt'?"
        )
    ident = blob[4 : 4 + _ID]
    if ident != kek_id(kek):
        raise IntegrityError(
            f"this blob was encrypted under key id {ident.hex()}, not the given key {kek_id(kek).hex()}: wrong key"
        )
    nonce = blob[4 + _ID : 4 + _ID + _NONCE]
    wrapped = blob[4 + _ID + _NONCE : 4 + _ID + _NONCE + _WRAPPED]
    try:
        return AESGCM(bytes(kek)).decrypt(nonce, wrapped, MAGIC + ident)
    except InvalidTag:
        raise IntegrityError(
            "the wrapped data key does not authenticate: the blob header was tampered with"
        ) from None


def encrypt(data: bytes, kek: bytes) -> bytes:
    """Encrypt ``data`` under a fresh data key wrapped by ``kek``; returns the self-describing blob."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = secrets.token_bytes(_NONCE)
    return MAGIC + _wrap(data_key, kek) + nonce + AESGCM(data_key).encrypt(nonce, bytes(data), MAGIC)


def decrypt(blob: bytes, kek: bytes) -> bytes:
    """The plaintext of a blob from `encrypt`; `IntegrityError` on a wrong key or any tampering."""
    data_key = _unwrap(blob, kek)
    nonce = blob[_HEADER - _NONCE : _HEADER]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[_HEADER:], MAGIC)
    except InvalidTag:
        raise IntegrityError(
            "the ciphertext does not authenticate: the blob was tampered with or truncated"
        ) from None


def rewrap(blob: bytes, old_kek: bytes, new_kek: bytes) -> bytes:
    """Key rotation: the same ciphertext with its data key re-wrapped under ``new_kek``."""
    data_key = _unwrap(blob, old_kek)
    body = blob[_HEADER - _NONCE :]  # data nonce + ciphertext, unchanged
    return MAGIC + _wrap(data_key, new_kek) + body


def generate_kek(path: Path) -> bytes:
    """A new random KEK, written as hex to ``path`` with mode 0600; returns the key."""
    kek = secrets.token_bytes(KEK_BYTES)
    write_private(Path(path), kek.hex().encode("ascii") + b"\n")
    return kek


def _parse_hex(text: str, origin: str) -> bytes:
    try:
        kek = bytes.fromhex(text.strip())
    except ValueError:
        kek = b""
    if len(kek) != KEK_BYTES:
        raise ConfigError(
            f"{origin} must hold {KEK_BYTES * 2} hex digits (a 256-bit key); make one with 'skyline keys gen'"
        )
    return kek


def load_kek(path: Path | None = None, *, env: str = KEK_ENV) -> bytes:
    """The KEK from ``path`` (an owner-only file) or, when ``path`` is None, from the variable ``env``."""
    if path is not None:
        return _parse_hex(read_private(Path(path)).decode("ascii", errors="replace"), f"key file {path}")
    value = os.environ.get(env)
    if not value:
        raise ConfigError(f"no key-encryption key: pass --key PATH or set {env} to 64 hex digits")
    return _parse_hex(value, f"environment variable {env}")


def encrypt_file(source: Path, target: Path, kek: bytes) -> Path:
    """Encrypt the file ``source`` into ``target`` (written 0600)."""
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    return write_private(Path(target), encrypt(data, kek))


def decrypt_file(source: Path, target: Path, kek: bytes) -> Path:
    """Decrypt the blob file ``source`` into ``target`` (written 0600)."""
    try:
        blob = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    return write_private(Path(target), decrypt(blob, kek))


def tree_files(root: Path) -> list[Path]:
    """Every regular file under ``root`` (sorted); symbolic links are refused, not followed."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a directory")
    files = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            raise ConfigError(f"{path} is a symbolic link; encrypt the files it points to instead")
        if path.is_file():
            files.append(path)
    return files


def encrypt_tree(source: Path, target: Path, kek: bytes) -> list[Path]:
    """Encrypt every file under ``source`` into the same relative path under ``target`` (a model
    directory, a dataset folder); each file gets its own data key. Returns the blobs written."""
    return [encrypt_file(f, Path(target) / f.relative_to(source), kek) for f in tree_files(Path(source))]


def decrypt_tree(source: Path, target: Path, kek: bytes) -> list[Path]:
    """The inverse of `encrypt_tree`; every blob is authenticated (a tampered one stops it)."""
    return [decrypt_file(f, Path(target) / f.relative_to(source), kek) for f in tree_files(Path(source))]
