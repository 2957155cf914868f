"""Security checks over a live `ApiTarget`: the role × endpoint matrix, schemathesis fuzzing, abusive bodies.

Every check returns plain counts so that the test suite (small budgets) and the benchmark (≥ 1,000
requests per API) share one implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from skyline.security.rbac import Principal, Role, is_allowed
from skyline.testing.api_targets import STATIC, ApiTarget, Rule

__all__ = [
    "FORGED_TOKEN",
    "AbuseResult",
    "FuzzTotals",
    "MatrixCase",
    "abusive_bodies",
    "expected_status",
    "fuzz",
    "json_body_operations",
    "matrix_cases",
    "operations",
    "oversized_body",
    "send_abuse",
]

FORGED_TOKEN = "sky_0123456789ab_forged-secret"
# Callers that are not a role: no header, a well-formed but unknown token, and garbage.
ANONYMOUS = {"none": None, "forged": FORGED_TOKEN, "malformed": "not a token at all"}


def operations(target: ApiTarget) -> list[tuple[str, str]]:
    """(METHOD, path template) of every operation in the target's OpenAPI document."""
    spec = httpx.get(f"{target.url}/openapi.json", timeout=30).json()
    methods = {"get", "post", "put", "patch", "delete"}
    return sorted((m.upper(), p) for p, ops in spec.get("paths", {}).items() for m in ops if m in methods)


def expected_status(rule: Rule | None, caller: str) -> str:
    """'allow' (anything but 401/403, never 5xx), '401' or '403' for this caller on this rule."""
    if rule is None:
        return "allow"
    if caller in ANONYMOUS:
        return "401"
    if rule is STATIC:
        return "allow"
    principal = Principal(subject=f"{caller}-1", role=Role(caller), token_id="matrix")
    return "allow" if is_allowed(principal, rule.action, rule.kind) else "403"


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
    """Send the case: sample path values, an empty JSON object as the body of writes."""
    path = case.path.format_map(dict(target.path_values))
    token = target.tokens.get(case.caller, ANONYMOUS.get(case.caller))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] | None = {} if case.method in {"POST", "PUT", "PATCH"} else None
    return client.request(case.method, f"{target.url}{path}", json=body, headers=headers)


@dataclass(slots=True)
class FuzzTotals:
    """What fuzzing one API did: requests, how they were answered, and every server error seen.

    A server error is any 5xx except 503: 503 is the deliberate "not ready / unavailable" answer (for
    example a readiness probe after a fuzzed admin call unloaded the model); those are counted apart,
    with samples, so that they can be checked by eye.
    """

    api: str
    tried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)  # "METHOD path → status: body" (first 20)
    unavailable: list[str] = field(default_factory=list)  # the same for 503 answers (first 5)
    errors_by_operation: Counter[str] = field(default_factory=Counter)  # "METHOD /path/{template}" → 5xx
    operations: int = 0

    @property
    def refused(self) -> int:
        return sum(n for code, n in self.statuses.items() if 400 <= code < 500)

    @property
    def server_error_count(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

    def record(self, case: Any, status: int, text: str) -> None:
        self.tried += 1
        self.statuses[status] += 1
        sample = f"{case.method} {case.formatted_path} → {status}: {text[:200]}"
        if status == 503 and len(self.unavailable) < 5:
            self.unavailable.append(sample)
        elif status >= 500 and status != 503:
            self.errors_by_operation[f"{case.method.upper()} {case.path}"] += 1
            if len(self.server_errors) < 20:
                self.server_errors.append(sample)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_tried": self.tried,
            "refused_4xx": self.refused,
            "server_errors_5xx": self.server_error_count,
            "unavailable_503": self.statuses.get(503, 0),
            "operations": self.operations,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "server_errors_by_operation": dict(self.errors_by_operation),
            "server_error_samples": self.server_errors[:20],
            "unavailable_samples": self.unavailable[:5],
        }


def _caller(target: ApiTarget, k: int) -> str | None:
    """The token of the k-th fuzz request: 7 in 10 carry the most privileged token (so that cases reach
    the handlers); the other 3 in 10 cycle through every other role and the anonymous callers."""
    if k % 10 < 7:
        return target.tokens[target.fuzz_token]
    others = [t for name, t in target.tokens.items() if name != target.fuzz_token] + list(ANONYMOUS.values())
    return others[(k // 10 * 3 + k % 10 - 7) % len(others)]


def fuzz(
    target: ApiTarget, *, requests: int, seed: int = 0, negative: bool = True, examples_per_run: int = 25
) -> FuzzTotals:
    """Schemathesis cases for every operation, round-robin, until ``requests`` requests were sent.

    Cases alternate between valid (by the schema) and invalid ones (``negative``); statuses are counted
    and 5xx answers kept as samples. Generation, not the server, dominates the time.
    """
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(f"{target.url}/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    totals = FuzzTotals(api=target.name, operations=len(ops))
    modes = [schemathesis.GenerationMode.POSITIVE]
    if negative:
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    impossible: set[tuple[int, str, bool]] = set()  # (operation, mode, pinned) with nothing to generate
    round_no = 0
    while totals.tried < requests:
        before = totals.tried
        for index, op in enumerate(ops):
            # Free path parameters mostly hit 404s; pinning them to real names (a served model, an
            # existing job) drives the generated bodies and queries into the handlers themselves.
            pins = {k: v for k, v in target.path_values.items() if "{" + k + "}" in op.path}
            for mode, pinned in [(m, p) for m in modes for p in ([False, True] if pins else [False])]:
                if (index, mode.value, pinned) in impossible or totals.tried >= requests:
                    continue

                @hypothesis_seed(seed * 1_000_003 + round_no * 1_009 + index)
                @settings(
                    max_examples=examples_per_run,
                    deadline=None,
                    suppress_health_check=list(HealthCheck),
                    database=None,
                    phases=[Phase.generate],
                )
                @given(case=op.as_strategy(generation_mode=mode, path_parameters=pins if pinned else None))
                def send(case: Any) -> None:
                    token = _caller(target, totals.tried)
                    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
                    response = case.call(base_url=target.url, headers=headers, timeout=60)
                    totals.record(case, response.status_code, response.text)

                try:
                    send()
                except Unsatisfiable:
                    impossible.add((index, mode.value, pinned))
        round_no += 1
        if totals.tried == before:
            break  # nothing left to generate: report what was tried
    return totals


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


UNDOCUMENTED_LIMIT_BYTES = 16 * 1024 * 1024  # what "oversized" means for a server that documents no cap


def json_body_operations(target: ApiTarget) -> list[tuple[str, str]]:
    """(METHOD, path) of the operations whose OpenAPI document declares a JSON request body."""
    spec = httpx.get(f"{target.url}/openapi.json", timeout=30).json()
    found = []
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                found.append((method.upper(), path))
    return sorted(found)


def abusive_bodies(target: ApiTarget) -> Iterator[tuple[str, bytes, dict[str, str]]]:
    """(label, body, headers) of requests a server must refuse with 4xx — never accept, never 5xx."""
    json_type = {"content-type": "application/json"}
    yield "not json", b"{not json", json_type
    yield "binary garbage", bytes(range(256)) * 4, json_type
    yield "json array instead of object", b"[1, 2, 3]", json_type
    yield "deeply nested json", _nested(50_000), json_type
    yield "wrong content type", b"a=1&b=2", {"content-type": "application/x-www-form-urlencoded"}


def oversized_body(target: ApiTarget) -> bytes:
    """A syntactically valid JSON body one byte over the server's cap (or 16 MiB when it has none)."""
    limit = target.body_limit_bytes or UNDOCUMENTED_LIMIT_BYTES
    return b"{" + b" " * (limit - 1) + b"}"


@dataclass(frozen=True, slots=True)
class AbuseResult:
    method: str
    path: str
    label: str
    status: int

    @property
    def refused(self) -> bool:
        return 400 <= self.status < 500


def send_abuse(target: ApiTarget, *, oversized_ops: int | None = None) -> list[AbuseResult]:
    """Every abusive body to every JSON-body operation, and an oversized body to every POST/PUT/PATCH
    operation (or the first ``oversized_ops`` of them), all with the most privileged token so that only
    the body is at fault."""
    spec_ops = operations(target)
    token = {"Authorization": f"Bearer {target.tokens[target.fuzz_token]}"}
    results = []
    with httpx.Client(timeout=120) as client:
        for method, path in json_body_operations(target):
            url = target.url + path.format_map(dict(target.path_values))
            for label, body, headers in abusive_bodies(target):
                response = client.request(method, url, content=body, headers={**token, **headers})
                results.append(AbuseResult(method, path, label, response.status_code))
        big = oversized_body(target)
        writes = [(m, p) for m, p in spec_ops if m in {"POST", "PUT", "PATCH"}]
        for method, path in writes[:oversized_ops]:
            url = target.url + path.format_map(dict(target.path_values))
            headers = {**token, "content-type": "application/json"}
            response = client.request(method, url, content=big, headers=headers)
            results.append(AbuseResult(method, path, f"oversized ({len(big)} bytes)", response.status_code))
    return results
