"""`skyline keys|token|audit` in-process: exit codes, one-line errors, files and their permissions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from skyline.cli.app import main
from skyline.cli.tokens import parse_ttl
from skyline.errors import ConfigError
from skyline.security.audit import AuditLog

pytestmark = pytest.mark.unit


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_gen_sign_verify_tamper_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys, model = tmp_path / "keys", tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x01" * 64)
    assert run(capsys, "keys", "gen", "--out", str(keys))[0] == 0
    assert stat.S_IMODE((keys / "signing.key").stat().st_mode) == 0o600
    assert run(capsys, "keys", "gen", "--out", str(keys))[0] == 2  # never silently overwrites keys
    assert (
        run(capsys, "keys", "sign", str(model), "--key", str(keys / "signing.key"), "--version", "5")[0] == 0
    )
    code, out, _ = run(
        capsys,
        "keys",
        "verify",
        str(model),
        "--pub",
        str(keys / "signing.pub"),
        "--json",
        str(tmp_path / "v.json"),
    )
    assert code == 0 and out == ""
    assert json.loads((tmp_path / "v.json").read_text())["version"] == 5
    code, _, err = run(
        capsys, "keys", "verify", str(model), "--pub", str(keys / "signing.pub"), "--min-version", "6"
    )
    assert code == 2 and "rollback refused" in err and err.count("\n") == 1
    (model / "extra.txt").write_text("x")
    code, _, err = run(capsys, "keys", "verify", str(model), "--pub", str(keys / "signing.pub"))
    assert code == 2 and err.startswith("error: ") and "'extra.txt' was added" in err


def test_encrypt_rotate_decrypt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = tmp_path / "keys"
    run(capsys, "keys", "gen", "--out", str(keys))
    plain = tmp_path / "rows.csv"
    plain.write_text("a,b\n1,2\n")
    monkeypatch.setenv("SKYLINE_KEK", (keys / "data.kek").read_text().strip())
    assert run(capsys, "keys", "encrypt", str(plain))[0] == 0  # key from the environment
    blob = tmp_path / "rows.csv.enc"
    assert b"a,b" not in blob.read_bytes()
    code, _, _ = run(
        capsys,
        "keys",
        "rotate",
        str(blob),
        "--key",
        str(keys / "data.kek"),
        "--new-key",
        str(keys / "new.kek"),
    )
    assert code == 0
    code, _, err = run(
        capsys, "keys", "decrypt", str(blob), "--out", str(tmp_path / "x"), "--key", str(keys / "data.kek")
    )
    assert code == 2 and "wrong key" in err
    assert run(capsys, "keys", "decrypt", str(blob), "--key", str(keys / "new.kek"))[0] == 0
    assert plain.read_text() == "a,b\n1,2\n"
    folder = tmp_path / "dataset"
    (folder / "part").mkdir(parents=True)
    (folder / "part" / "rows.csv").write_text("x\n")
    assert run(capsys, "keys", "encrypt", str(folder), "--key", str(keys / "new.kek"))[0] == 0
    code, out, _ = run(
        capsys,
        "keys",
        "rotate",
        str(tmp_path / "dataset.enc"),
        "--key",
        str(keys / "new.kek"),
        "--new-key",
        str(keys / "third.kek"),
    )
    assert code == 0 and "1 blob(s)" in out
    decrypted = tmp_path / "dataset-back"
    code, _, _ = run(
        capsys,
        "keys",
        "decrypt",
        str(tmp_path / "dataset.enc"),
        "--out",
        str(decrypted),
        "--key",
        str(keys / "third.kek"),
    )
    assert code == 0 and (decrypted / "part" / "rows.csv").read_text() == "x\n"


def test_tokens_bootstrap_once_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = str(tmp_path / "tokens.json")
    code, out, _ = run(capsys, "token", "bootstrap", "--tokens", tokens)
    assert code == 0 and "sky_" in out
    assert run(capsys, "token", "bootstrap", "--tokens", tokens)[0] == 2
    code, out, _ = run(
        capsys,
        "token",
        "create",
        "--role",
        "invoker",
        "--subject",
        "app",
        "--ttl",
        "2h",
        "--model",
        "mnist",
        "--tokens",
        tokens,
    )
    token = out.strip()
    assert code == 0 and token.startswith("sky_")
    run(capsys, "token", "list", "--tokens", tokens, "--json", str(tmp_path / "list.json"))
    listed = json.loads((tmp_path / "list.json").read_text())["tokens"]
    assert [(t["role"], t["models"]) for t in listed] == [("admin", []), ("invoker", ["mnist"])]
    assert token not in (tmp_path / "list.json").read_text()
    assert run(capsys, "token", "revoke", listed[1]["token_id"], "--tokens", tokens)[0] == 0
    assert "revoked" in run(capsys, "token", "list", "--tokens", tokens)[1]
    assert run(capsys, "token", "revoke", "ffffffffffff", "--tokens", tokens)[0] == 2


def test_audit_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    for who in ("a", "b", "c"):
        log.append(subject=who, role="admin", action="DELETE /v1/jobs/1", resource="jobs", result="200")
    code, out, _ = run(capsys, "audit", "verify", str(tmp_path / "audit.jsonl"))
    assert code == 0 and "3 records" in out
    lines = (tmp_path / "audit.jsonl").read_text().splitlines()
    (tmp_path / "audit.jsonl").write_text(lines[0] + "\n" + lines[2] + "\n")
    code, _, err = run(capsys, "audit", "verify", str(tmp_path / "audit.jsonl"))
    assert code == 2 and "line 2" in err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_ttl_parsing(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5", "1w", "soon"])
def test_bad_ttls_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_ttl(text)
