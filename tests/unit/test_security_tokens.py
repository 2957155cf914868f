"""Tokens: hashed at rest in a 0600 file, expiry, revocation, the one-time admin bootstrap."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from skyline.errors import AuthError, ConfigError, NotFoundError
from skyline.security.rbac import Role
from skyline.security.tokens import TokenAuthority

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_issued_token_verifies_to_its_principal_and_the_file_keeps_only_a_hash(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    token = authority.issue("alice", Role.OPERATOR, models=["b", "a"])
    principal = authority.verify(token)
    assert (principal.subject, principal.role, principal.models) == ("alice", Role.OPERATOR, {"a", "b"})
    text = (tmp_path / "tokens.json").read_text()
    secret = token.split("_", 2)[2]
    assert secret not in text and token not in text
    assert stat.S_IMODE((tmp_path / "tokens.json").stat().st_mode) == 0o600


def test_bootstrap_returns_the_first_admin_token_once(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "tokens.json")
    first = authority.bootstrap_admin()
    assert first is not None and authority.verify(first).role is Role.ADMIN
    assert authority.bootstrap_admin() is None
    authority.revoke(authority.verify(first).token_id)
    assert TokenAuthority(tmp_path / "tokens.json").bootstrap_admin() is None  # revoking does not reopen it


def test_expired_revoked_unknown_and_malformed_tokens_are_refused_without_echoing_them(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    authority = TokenAuthority(tmp_path / "tokens.json", clock=clock)
    short = authority.issue("bob", "viewer", ttl_s=60)
    authority.verify(short)
    clock.now += 60
    with pytest.raises(AuthError, match="expired"):
        authority.verify(short)
    keep = authority.issue("carol", "invoker")
    token_id = authority.verify(keep).token_id
    authority.revoke(token_id)
    authority.revoke(token_id)  # idempotent
    with pytest.raises(AuthError, match="revoked") as revoked:
        authority.verify(keep)
    assert keep not in str(revoked.value)
    forged = keep[:-4] + "AAAA"
    with pytest.raises(AuthError, match="unknown") as unknown:
        authority.verify(forged)
    assert forged not in str(unknown.value)
    for bad in ("", "Bearer x", "sky_short_x", "sky_0123456789ab_"):
        with pytest.raises(AuthError, match="malformed"):
            authority.verify(bad)
    with pytest.raises(NotFoundError):
        authority.revoke("ffffffffffff")


def test_a_second_authority_on_the_same_file_sees_issues_and_revocations(tmp_path: Path) -> None:
    # The CLI and a running server are different processes sharing one file.
    server, cli = TokenAuthority(tmp_path / "t.json"), TokenAuthority(tmp_path / "t.json")
    token = cli.issue("dave", "edge")
    assert server.verify(token).subject == "dave"
    cli.revoke(server.verify(token).token_id)
    with pytest.raises(AuthError, match="revoked"):
        server.verify(token)
    assert [r.subject for r in server.records()] == ["dave"]
    assert "sha256" not in server.records()[0].public()


def test_bad_inputs_and_an_open_file_are_config_errors(tmp_path: Path) -> None:
    authority = TokenAuthority(tmp_path / "t.json")
    with pytest.raises(ConfigError, match="unknown role"):
        authority.issue("x", "root")
    with pytest.raises(ConfigError, match="ttl_s"):
        authority.issue("x", "viewer", ttl_s=0)
    with pytest.raises(ConfigError, match="subject"):
        authority.issue(" ", "viewer")
    token = authority.issue("x", "viewer")
    (tmp_path / "t.json").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        TokenAuthority(tmp_path / "t.json").verify(token)


def test_a_corrupt_file_is_reported_as_data(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    authority = TokenAuthority(path)
    authority.issue("x", "viewer")
    path.write_text(json.dumps({"tokens": [{"nope": 1}]}))
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="malformed"):
        TokenAuthority(path).records()
