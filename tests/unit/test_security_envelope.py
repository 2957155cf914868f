"""Envelope encryption: round trips, wrong keys and tampering refused, rotation by re-wrapping."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skyline.errors import ConfigError, IntegrityError
from skyline.security.envelope import (
    KEK_ENV,
    decrypt,
    decrypt_file,
    decrypt_tree,
    encrypt,
    encrypt_file,
    encrypt_tree,
    generate_kek,
    load_kek,
    rewrap,
)

pytestmark = pytest.mark.unit

KEK_A = bytes(range(32))
KEK_B = bytes(range(1, 33))


@given(data=st.binary(max_size=4096))
@settings(max_examples=50)
def test_round_trip_and_fresh_randomness(data: bytes) -> None:
    blob = encrypt(data, KEK_A)
    assert decrypt(blob, KEK_A) == data
    assert encrypt(data, KEK_A) != blob  # a fresh data key and nonces every time
    if len(data) >= 16:
        assert data not in blob


@given(data=st.binary(min_size=1, max_size=256), position=st.integers(min_value=0), bit=st.integers(0, 7))
@settings(max_examples=100)
def test_any_flipped_bit_is_refused(data: bytes, position: int, bit: int) -> None:
    blob = bytearray(encrypt(data, KEK_A))
    blob[position % len(blob)] ^= 1 << bit
    with pytest.raises(IntegrityError):
        decrypt(bytes(blob), KEK_A)


def test_wrong_key_and_truncation_are_refused() -> None:
    blob = encrypt(b"weights", KEK_A)
    with pytest.raises(IntegrityError, match="wrong key"):
        decrypt(blob, KEK_B)
    with pytest.raises(IntegrityError):
        decrypt(blob[:-1], KEK_A)
    with pytest.raises(IntegrityError, match="bad magic"):
        decrypt(b"plain text, not a blob at all, long enough to pass the length check........", KEK_A)


def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext() -> None:
    blob = encrypt(b"dataset rows", KEK_A)
    rotated = rewrap(blob, KEK_A, KEK_B)
    assert decrypt(rotated, KEK_B) == b"dataset rows"
    assert rotated[-len(b"dataset rows") - 16 :] == blob[-len(b"dataset rows") - 16 :]
    with pytest.raises(IntegrityError, match="wrong key"):
        decrypt(rotated, KEK_A)


def test_keys_come_from_an_owner_only_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kek = generate_kek(tmp_path / "kek")
    assert stat.S_IMODE((tmp_path / "kek").stat().st_mode) == 0o600
    assert load_kek(tmp_path / "kek") == kek
    (tmp_path / "kek").chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_kek(tmp_path / "kek")
    monkeypatch.setenv(KEK_ENV, KEK_B.hex())
    assert load_kek() == KEK_B
    monkeypatch.setenv(KEK_ENV, "abcd")
    with pytest.raises(ConfigError, match="64 hex digits"):
        load_kek()
    monkeypatch.delenv(KEK_ENV)
    with pytest.raises(ConfigError, match="--key PATH"):
        load_kek()
    with pytest.raises(ConfigError, match="32 bytes"):
        encrypt(b"x", b"short")


def test_file_helpers_round_trip(tmp_path: Path) -> None:
    (tmp_path / "plain.bin").write_bytes(b"\x00\x01" * 1000)
    encrypt_file(tmp_path / "plain.bin", tmp_path / "plain.bin.enc", KEK_A)
    decrypt_file(tmp_path / "plain.bin.enc", tmp_path / "back.bin", KEK_A)
    assert (tmp_path / "back.bin").read_bytes() == b"\x00\x01" * 1000
    with pytest.raises(ConfigError, match="cannot read"):
        encrypt_file(tmp_path / "missing", tmp_path / "x", KEK_A)


def test_directory_round_trip_refuses_symlinks_and_tampering(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"weights" * 100)
    (model / "config.json").write_text("{}")
    blobs = encrypt_tree(model, tmp_path / "model.enc", KEK_A)
    assert sorted(b.relative_to(tmp_path / "model.enc").as_posix() for b in blobs) == [
        "1/model.onnx",
        "config.json",
    ]
    decrypt_tree(tmp_path / "model.enc", tmp_path / "back", KEK_A)
    assert (tmp_path / "back" / "1" / "model.onnx").read_bytes() == b"weights" * 100
    blob = tmp_path / "model.enc" / "config.json"
    blob.write_bytes(blob.read_bytes()[:-1] + bytes([blob.read_bytes()[-1] ^ 1]))
    with pytest.raises(IntegrityError):
        decrypt_tree(tmp_path / "model.enc", tmp_path / "back2", KEK_A)
    (model / "link").symlink_to(model / "config.json")
    with pytest.raises(ConfigError, match="symbolic link"):
        encrypt_tree(model, tmp_path / "again", KEK_A)
