"""`skyline keys ...`: make keys, encrypt and decrypt files, rotate the key-encryption key, sign and verify
model directories, make a self-signed TLS pair. Exit 0 on success; exit 2 with one line saying why not."""

from __future__ import annotations

from pathlib import Path

import typer

from skyline.cli.output import write_json
from skyline.errors import ConfigError

keys_app = typer.Typer(
    help="Keys, encryption at rest, signed model artifacts, TLS pairs.", no_args_is_help=True
)

_KEY_HELP = "Key-encryption key file (64 hex digits, mode 0600); default: the SKYLINE_KEK variable."


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; pass an existing file") from exc


def _fresh(paths: list[Path], force: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise ConfigError(
            f"{', '.join(existing)} already exist(s); pass --force to overwrite (old keys are lost)"
        )


@keys_app.command("gen")
def gen(
    out: Path = typer.Option(Path(".skyline/keys"), help="Folder for data.kek, signing.key and signing.pub."),
    force: bool = typer.Option(False, help="Overwrite existing keys."),
    json_path: Path | None = typer.Option(None, "--json", help="Write a summary here."),
) -> None:
    """Make a key-encryption key (data.kek) and an Ed25519 signing pair (signing.key, signing.pub)."""
    from skyline.security.envelope import generate_kek, kek_id
    from skyline.security.signing import generate_signing_keys, key_id, load_public_key

    kek_path, private, public = out / "data.kek", out / "signing.key", out / "signing.pub"
    _fresh([kek_path, private, public], force)
    kek = generate_kek(kek_path)
    generate_signing_keys(private, public)
    summary = {
        "kek": str(kek_path),
        "kek_id": kek_id(kek).hex(),
        "signing_key": str(private),
        "public_key": str(public),
        "key_id": key_id(load_public_key(public)),
    }
    if json_path:
        write_json(json_path, summary)
    else:
        typer.echo(f"key-encryption key {kek_path} (id {summary['kek_id']}), mode 0600")
        typer.echo(f"signing key {private} (mode 0600), public key {public} (id {summary['key_id']})")


@keys_app.command("encrypt")
def encrypt_cmd(
    path: Path = typer.Argument(..., help="File or directory (a model, a dataset) to encrypt."),
    out: Path | None = typer.Option(None, help="Where the blob or blob folder goes (default: PATH.enc)."),
    key: Path | None = typer.Option(None, help=_KEY_HELP),
) -> None:
    """Encrypt with a fresh AES-256-GCM data key per file, wrapped by the key-encryption key."""
    from skyline.security.envelope import encrypt_file, encrypt_tree, load_kek

    target = out or path.with_name(path.name + ".enc")
    kek = load_kek(key)
    count = len(encrypt_tree(path, target, kek)) if path.is_dir() else len([encrypt_file(path, target, kek)])
    typer.echo(f"encrypted {path} → {target} ({count} file(s))")


@keys_app.command("decrypt")
def decrypt_cmd(
    path: Path = typer.Argument(..., help="Blob or blob folder to decrypt (from 'skyline keys encrypt')."),
    out: Path | None = typer.Option(None, help="Where the plaintext goes (default: PATH without .enc)."),
    key: Path | None = typer.Option(None, help=_KEY_HELP),
) -> None:
    """Decrypt a blob; refuses (exit 2) a wrong key or any tampering."""
    from skyline.security.envelope import decrypt_file, decrypt_tree, load_kek

    if out is None:
        if path.suffix != ".enc":
            raise ConfigError(f"{path} does not end in .enc; pass --out for the plaintext")
        out = path.with_suffix("")
    kek = load_kek(key)
    count = len(decrypt_tree(path, out, kek)) if path.is_dir() else len([decrypt_file(path, out, kek)])
    typer.echo(f"decrypted {path} → {out} ({count} file(s))")


@keys_app.command("rotate")
def rotate(
    paths: list[Path] = typer.Argument(..., help="Encrypted blobs or blob folders to re-wrap in place."),
    key: Path | None = typer.Option(None, help="The current key-encryption key (" + _KEY_HELP + ")"),
    new_key: Path = typer.Option(..., help="The new key-encryption key file; created (0600) when absent."),
    json_path: Path | None = typer.Option(None, "--json", help="Write a summary here."),
) -> None:
    """Key rotation: re-wrap each blob's data key under a new key-encryption key (data is not re-encrypted)."""
    from skyline.security.envelope import generate_kek, kek_id, load_kek, rewrap, tree_files
    from skyline.security.keyfile import write_private

    old = load_kek(key)
    new = load_kek(new_key) if new_key.exists() else generate_kek(new_key)
    files = [f for p in paths for f in (tree_files(p) if p.is_dir() else [p])]
    blobs = [(p, rewrap(_read(p), old, new)) for p in files]  # all verified before any is written
    for blob_path, blob in blobs:
        write_private(blob_path, blob)
    summary = {
        "rewrapped": [str(p) for p in files],
        "old_kek_id": kek_id(old).hex(),
        "new_kek_id": kek_id(new).hex(),
    }
    if json_path:
        write_json(json_path, summary)
    else:
        typer.echo(f"re-wrapped {len(files)} blob(s) under key {summary['new_kek_id']}; retire the old key")


@keys_app.command("sign")
def sign(
    directory: Path = typer.Argument(..., help="Model directory to sign."),
    key: Path = typer.Option(..., help="Ed25519 private key (signing.key from 'skyline keys gen')."),
    version: int = typer.Option(..., min=0, help="Version number; verifiers refuse anything older."),
) -> None:
    """Write DIR/skyline-manifest.json: every file's sha256 and the version, signed with Ed25519."""
    from skyline.security.signing import sign_directory

    manifest = sign_directory(directory, key, version=version)
    typer.echo(f"signed {directory} as version {version}: {manifest}")


@keys_app.command("verify")
def verify(
    directory: Path = typer.Argument(..., help="Signed model directory."),
    pub: Path = typer.Option(..., help="Ed25519 public key (signing.pub)."),
    min_version: int | None = typer.Option(None, min=0, help="Refuse versions older than this (rollback)."),
    json_path: Path | None = typer.Option(None, "--json", help="Write a summary here."),
) -> None:
    """Exit 0 when DIR matches its signed manifest; exit 2 naming the file and the mismatch when not."""
    from skyline.security.signing import verify_directory

    manifest = verify_directory(directory, pub, min_version=min_version)
    summary = {
        "valid": True,
        "version": manifest.version,
        "files": len(manifest.files),
        "key_id": manifest.key_id,
    }
    if json_path:
        write_json(json_path, summary)
    else:
        typer.echo(
            f"valid: {directory} version {manifest.version}, {len(manifest.files)} files, key {manifest.key_id}"
        )


@keys_app.command("tls")
def tls(
    out: Path = typer.Option(Path(".skyline/tls"), help="Folder for server.crt and server.key."),
    host: list[str] = typer.Option(["127.0.0.1", "localhost"], help="IP or DNS name (repeat the option)."),
    days: int = typer.Option(30, min=1, help="Validity in days."),
    force: bool = typer.Option(False, help="Overwrite an existing pair."),
) -> None:
    """Make a self-signed TLS pair for tests (pass server.crt to clients as their CA)."""
    from skyline.security.tls import generate_self_signed

    cert, key = out / "server.crt", out / "server.key"
    _fresh([cert, key], force)
    generate_self_signed(cert, key, hosts=host, days=days)
    typer.echo(f"certificate {cert} for {', '.join(host)} ({days} days), key {key} (mode 0600)")
