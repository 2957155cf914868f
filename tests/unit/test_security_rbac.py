"""The one permission table: deny by default, ownership and model scopes, typos fail loudly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyline.errors import ConfigError, PermissionDeniedError
from skyline.security.rbac import (
    ACTIONS,
    PERMISSIONS,
    RESOURCE_KINDS,
    Principal,
    Role,
    authorize,
    is_allowed,
    owner_scope,
    owns,
)

pytestmark = pytest.mark.unit


def who(role: Role, subject: str = "alice", models: frozenset[str] = frozenset()) -> Principal:
    return Principal(subject=subject, role=role, token_id="0123456789ab", models=models)


# Hand-written expectations (not derived from the table): a change to the table must change this too.
EXPECTED_ALLOWED = {
    Role.VIEWER: {(a, k) for a in ["read"] for k in ["jobs", "nodes", "metrics", "models", "repository"]},
    Role.INVOKER: {("read", "models"), ("invoke", "models")},
    Role.EDGE: {
        ("read", "uplink"),
        ("create", "uplink"),
        ("read", "models"),
        ("invoke", "models"),
        ("read", "repository"),
        ("create", "metrics"),
    },
    Role.AGENT: {
        ("read", "nodes"),
        ("create", "nodes"),
        ("update", "nodes"),
        ("read", "jobs"),  # not update: it would rewrite services (their command runs on other nodes)
        ("read", "metrics"),
        ("create", "metrics"),
    },
    Role.OPERATOR: {("read", "jobs"), ("create", "jobs"), ("update", "jobs"), ("delete", "jobs")}
    | {("read", k) for k in ["nodes", "metrics", "models", "repository"]}
    | {("invoke", "models")},
    Role.ADMIN: {(a, k) for a in ACTIONS for k in RESOURCE_KINDS},
}


@pytest.mark.parametrize("role", list(Role))
def test_every_role_gets_exactly_the_documented_grants(role: Role) -> None:
    for action in ACTIONS:
        for kind in RESOURCE_KINDS:
            expected = (action, kind) in EXPECTED_ALLOWED[role]
            assert is_allowed(who(role), action, kind) is expected, (role, action, kind)
            if not expected:
                with pytest.raises(PermissionDeniedError, match=f"may not {action} {kind}"):
                    authorize(who(role), action, kind)


def test_only_admin_touches_tokens_and_the_audit_log() -> None:
    for role in Role:
        for kind in ("tokens", "audit"):
            assert is_allowed(who(role), "read", kind) is (role is Role.ADMIN)


def test_an_operator_acts_only_on_its_own_jobs_but_admin_on_any() -> None:
    authorize(who(Role.OPERATOR, "alice"), "delete", "jobs", owner="alice")
    with pytest.raises(PermissionDeniedError, match="only its own jobs"):
        authorize(who(Role.OPERATOR, "alice"), "delete", "jobs", owner="bob")
    authorize(who(Role.ADMIN, "root"), "delete", "jobs", owner="bob")
    assert owns(who(Role.OPERATOR, "alice"), "alice") and not owns(who(Role.OPERATOR, "alice"), None)
    # Listings follow the same table: an operator lists its own jobs, admins and viewers everyone's.
    assert owner_scope(who(Role.OPERATOR, "alice"), "jobs") == "alice"
    assert (
        owner_scope(who(Role.VIEWER, "v"), "jobs") is None
        and owner_scope(who(Role.ADMIN, "r"), "jobs") is None
    )


def test_a_model_scoped_token_reaches_only_its_models() -> None:
    scoped = who(Role.INVOKER, models=frozenset({"mnist"}))
    authorize(scoped, "invoke", "models", model="mnist")
    authorize(scoped, "read", "models")  # listing: the endpoint filters
    with pytest.raises(PermissionDeniedError, match="scoped to models"):
        authorize(scoped, "invoke", "models", model="resnet")
    authorize(who(Role.INVOKER), "invoke", "models", model="resnet")  # empty scope = all models


def test_unknown_action_kind_or_role_is_a_config_error_not_a_silent_deny() -> None:
    with pytest.raises(ConfigError, match="unknown action"):
        authorize(who(Role.ADMIN), "write", "jobs")
    with pytest.raises(ConfigError, match="unknown resource kind"):
        authorize(who(Role.ADMIN), "read", "job")
    with pytest.raises(ConfigError, match="unknown role"):
        Principal(subject="x", role="root", token_id="t")  # type: ignore[arg-type]
    assert Principal(subject="x", role="viewer", token_id="t").role is Role.VIEWER  # type: ignore[arg-type]


def test_the_table_is_read_only() -> None:
    with pytest.raises(TypeError):
        PERMISSIONS["viewer"]["jobs"] = frozenset({"delete"})  # type: ignore[index]


@given(
    role=st.sampled_from(list(Role)),
    action=st.sampled_from(sorted(ACTIONS)),
    kind=st.sampled_from(sorted(RESOURCE_KINDS)),
    owner=st.none() | st.sampled_from(["alice", "bob"]),
)
def test_scopes_only_ever_narrow_a_grant(role: Role, action: str, kind: str, owner: str | None) -> None:
    # Passing an owner or a model can turn an allow into a deny, never a deny into an allow.
    if not is_allowed(who(role), action, kind):
        assert not is_allowed(who(role), action, kind, owner=owner, model="m")
