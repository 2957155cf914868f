"""Signed manifests: a flipped byte, an added or removed file, a rollback and a wrong key are all refused."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from skyline.errors import ConfigError, IntegrityError
from skyline.security.signing import MANIFEST_NAME, generate_signing_keys, sign_directory, verify_directory

pytestmark = pytest.mark.unit


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_signing_keys(tmp_path / "keys" / "signing.key", tmp_path / "keys" / "signing.pub")


@pytest.fixture
def model(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    root = tmp_path / "model"
    (root / "1").mkdir(parents=True)
    (root / "1" / "model.onnx").write_bytes(bytes(range(256)) * 4)
    (root / "config.json").write_text('{"name": "mnist"}')
    sign_directory(root, keys[0], version=3)
    return root


def test_a_signed_directory_verifies_and_lists_every_file(model: Path, keys: tuple[Path, Path]) -> None:
    manifest = verify_directory(model, keys[1], min_version=3)
    assert manifest.version == 3
    assert set(manifest.files) == {"1/model.onnx", "config.json"}
    assert manifest.files["1/model.onnx"].size == 1024
    assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600


def test_a_flipped_byte_is_refused_naming_the_file(model: Path, keys: tuple[Path, Path]) -> None:
    target = model / "1" / "model.onnx"
    data = bytearray(target.read_bytes())
    data[100] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"file '1/model.onnx' was modified: sha256"):
        verify_directory(model, keys[1])


def test_an_added_file_is_refused(model: Path, keys: tuple[Path, Path]) -> None:
    (model / "1" / "backdoor.py").write_text("import os")
    with pytest.raises(IntegrityError, match=r"file '1/backdoor.py' was added"):
        verify_directory(model, keys[1])


def test_a_removed_file_is_refused(model: Path, keys: tuple[Path, Path]) -> None:
    (model / "config.json").unlink()
    with pytest.raises(IntegrityError, match=r"file 'config.json' was removed"):
        verify_directory(model, keys[1])


def test_an_old_version_replayed_is_refused_as_a_rollback(model: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(
        IntegrityError, match="version 3, older than version 4 already accepted: rollback refused"
    ):
        verify_directory(model, keys[1], min_version=4)


def test_a_wrong_key_is_refused(model: Path, tmp_path: Path) -> None:
    _, other_pub = generate_signing_keys(tmp_path / "other.key", tmp_path / "other.pub")
    with pytest.raises(IntegrityError, match="does not verify with public key"):
        verify_directory(model, other_pub)


def test_editing_the_manifest_itself_breaks_the_signature(model: Path, keys: tuple[Path, Path]) -> None:
    # An attacker who bumps the version (to beat min_version) or re-hashes a swapped file must fail.
    path = model / MANIFEST_NAME
    signed = json.loads(path.read_text())
    signed["manifest"]["version"] = 99
    path.write_text(json.dumps(signed))
    with pytest.raises(IntegrityError, match="wrong key, or the manifest was edited"):
        verify_directory(model, keys[1])


def test_a_missing_or_garbled_manifest_and_symlinks_are_refused(model: Path, keys: tuple[Path, Path]) -> None:
    (model / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(IntegrityError, match="not a valid signed manifest"):
        verify_directory(model, keys[1])
    (model / MANIFEST_NAME).unlink()
    with pytest.raises(IntegrityError, match="no signed manifest"):
        verify_directory(model, keys[1])
    (model / "link").symlink_to(model / "config.json")
    with pytest.raises(IntegrityError, match="symbolic link"):
        sign_directory(model, keys[0], version=1)


def test_bad_versions_and_loose_private_keys_are_config_errors(model: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        sign_directory(model, keys[0], version=-1)
    keys[0].chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        sign_directory(model, keys[0], version=4)
