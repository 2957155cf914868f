"""The role × endpoint matrix over a live `ApiTarget`: every operation, called by a token of every role and
by callers without a valid one, must answer what the ONE permission table says.

"allow" means anything but 401/403 (and never a 5xx); "401" a 401 (or, for the console's pages, the
redirect to its sign-in form); "403" a 403. Calls use sample path values and an empty JSON object as
the body of writes, so that an allowed call is judged by its guard, not by what it would change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from skyline.security.rbac import Principal, Role, is_allowed
from skyline.testing.api_target import SIGN_IN, STATIC, ApiTarget, Guard

__all__ = [
    "ANONYMOUS",
    "FORGED_TOKEN",
    "MatrixCase",
    "call_matrix_case",
    "expected_status",
    "matrix_cases",
    "matrix_mismatch",
    "openapi",
    "operations",
    "run_matrix",
]

FORGED_TOKEN = "sky_0123456789ab_forged-secret"
# Callers that are not a role: no credential, a well-formed but unknown token, and garbage.
ANONYMOUS: dict[str, str | None] = {"none": None, "forged": FORGED_TOKEN, "malformed": "not a token at all"}


def openapi(target: ApiTarget) -> dict[str, Any]:
    """The target's OpenAPI document: the one it was given, else the server's (fetched with the most
    privileged token: behind the gateway even the document needs one)."""
    if target.document is not None:
        return dict(target.document)
    headers = target.credentials(target.tokens[target.fuzz_token])
    response = httpx.get(f"{target.url}/openapi.json", headers=headers, timeout=30)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


def operations(target: ApiTarget) -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation in the target's OpenAPI document."""
    methods = {"get", "post", "put", "patch", "delete"}
    paths = openapi(target).get("paths", {})
    return sorted((m.upper(), p) for p, ops in paths.items() for m in ops if m in methods)


def expected_status(guard: Guard, caller: str) -> str:
    """'allow' (anything but 401/403, never 5xx), '401' or '403' for this caller on this guard."""
    if guard is None:
        return "allow"
    if caller in ANONYMOUS:
        return "401"
    rules = guard if isinstance(guard, tuple) else (guard,)
    if any(rule in (STATIC, SIGN_IN) for rule in rules):
        return "allow"
    principal = Principal(subject=f"{caller}-1", role=Role(caller), token_id="matrix")
    return "allow" if all(is_allowed(principal, r.action, r.kind) for r in rules) else "403"


@dataclass(frozen=True, slots=True)
class MatrixCase:
    method: str
    path: str
    caller: str
    expected: str  # "allow" | "401" | "403"


def matrix_cases(target: ApiTarget, ops: list[tuple[str, str]]) -> list[MatrixCase]:
    callers = [*target.tokens, *ANONYMOUS]
    return [
        MatrixCase(method, path, caller, expected_status(target.rules[f"{method} {path}"], caller))
        for method, path in ops
        for caller in callers
    ]


def call_matrix_case(client: httpx.Client, target: ApiTarget, case: MatrixCase) -> httpx.Response:
    """Send the case (a sign-in form carries the caller's token as its body). Only the status and the
    headers are read: a live stream (server-sent events) answers them at once."""
    url = target.url + case.path.format_map(dict(target.path_values))
    token = target.tokens.get(case.caller, ANONYMOUS.get(case.caller))
    if target.rules[f"{case.method} {case.path}"] is SIGN_IN:
        request = client.build_request(case.method, url, data={"token": token or ""})
    else:
        body: dict[str, Any] | None = {} if case.method in {"POST", "PUT", "PATCH"} else None
        request = client.build_request(case.method, url, json=body, headers=target.credentials(token))
    response = client.send(request, stream=True)
    response.close()
    return response


def matrix_mismatch(target: ApiTarget, case: MatrixCase, response: httpx.Response) -> str | None:
    """What is wrong with this answer to this case (None: it is what the table says)."""
    status = response.status_code
    # The console's pages send a browser without a session to sign in instead of answering 401.
    signed_out = (
        target.sign_in is not None
        and case.method == "GET"
        and status in (302, 303, 307)
        and response.headers.get("location", "").startswith(target.sign_in)
    )
    if case.expected == "allow":
        ok = status not in (401, 403) and status < 500 and not signed_out
    elif case.expected == "401":
        ok = status == 401 or signed_out
    else:
        ok = str(status) == case.expected
    return None if ok else f"{case.caller} {case.method} {case.path}: expected {case.expected}, got {status}"


def run_matrix(target: ApiTarget) -> tuple[int, list[str]]:
    """Every classified operation × every caller: (cases sent, what did not match the table)."""
    ops = [op for op in operations(target) if f"{op[0]} {op[1]}" in target.rules]
    cases = matrix_cases(target, ops)
    wrong = []
    with httpx.Client(timeout=60) as client:
        for case in cases:
            problem = matrix_mismatch(target, case, call_matrix_case(client, target, case))
            if problem is not None:
                wrong.append(problem)
    return len(cases), wrong
