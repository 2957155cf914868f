"""Schemathesis fuzzing of a live `ApiTarget`: valid and invalid requests for every operation of its
OpenAPI document, until a request budget is spent; every answer counted, every server error kept.

It returns plain counts so that the test suite (small budgets) and the benchmark (≥ 1,000 requests per
API) share one implementation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from skyline.testing.api_matrix import ANONYMOUS, openapi
from skyline.testing.api_target import ApiTarget

__all__ = ["FuzzTotals", "fuzz"]


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
    fuzzed: set[str] = field(default_factory=set)  # the operations at least one request went to

    @property
    def refused(self) -> int:
        return sum(n for code, n in self.statuses.items() if 400 <= code < 500)

    @property
    def server_error_count(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

    def record(self, case: Any, status: int, text: str) -> None:
        self.tried += 1
        self.statuses[status] += 1
        self.fuzzed.add(f"{case.method.upper()} {case.path}")
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
            "operations_fuzzed": len(self.fuzzed),
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


def _pins(target: ApiTarget, document: dict[str, Any], op: Any) -> tuple[dict[str, str], bool]:
    """The path values to pin for ``op``, and whether its JSON bodies get the target's body values."""
    path = {k: v for k, v in target.path_values.items() if "{" + k + "}" in op.path}
    declared = document["paths"][op.path][op.method.lower()].get("requestBody", {}).get("content", {})
    return path, bool(target.body_values) and "application/json" in declared


def _send_cases(target: ApiTarget, totals: FuzzTotals, strategy: Any, *, pin_body: bool, seed: int,
                examples: int) -> None:  # fmt: skip
    """Draw up to ``examples`` cases from ``strategy`` and send each with the next caller's credentials."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    @hypothesis_seed(seed)
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],
    )
    @given(case=strategy)
    def send(case: Any) -> None:
        if pin_body and isinstance(case.body, dict):
            case.body.update(target.body_values)
        headers = target.credentials(_caller(target, totals.tried))
        response = case.call(base_url=target.url, headers=headers, timeout=60)
        # Binary answers (OIP's binary tensors) are not UTF-8: a sample only needs to be readable.
        totals.record(case, response.status_code, response.content.decode("utf-8", "replace"))

    send()


def fuzz(
    target: ApiTarget, *, requests: int, seed: int = 0, negative: bool = True, examples_per_run: int = 25
) -> FuzzTotals:
    """Schemathesis cases for every operation, round-robin, until ``requests`` requests were sent.

    A round draws up to ``examples_per_run`` cases (fewer when the budget is small, so that a round
    reaches every operation) per operation and variant: valid cases for every operation first, then
    invalid ones (``negative``), each with its path values and body fields pinned to real ones and free.
    Statuses are counted and 5xx answers kept as samples. Generation, not the server, dominates the time.
    """
    import schemathesis
    from hypothesis.errors import Unsatisfiable

    document = openapi(target)
    ops = [result.ok() for result in schemathesis.openapi.from_dict(document).get_all_operations()]  # type: ignore[union-attr]
    totals = FuzzTotals(api=target.name, operations=len(ops))
    modes = [schemathesis.GenerationMode.POSITIVE]
    if negative:
        modes.append(schemathesis.GenerationMode.NEGATIVE)
    # Free path parameters mostly hit 404s; pinning them to real names (a served model, an existing
    # job) — and a body's fields to the served model's — drives the generated bodies and queries into
    # the handlers themselves.
    pins = [_pins(target, document, op) for op in ops]
    runs = [
        (index, mode, pinned)
        for mode in modes
        for pinned in (True, False)
        for index in range(len(ops))
        if not pinned or any(pins[index])
    ]
    per_run = max(1, min(examples_per_run, requests // len(runs)))
    impossible: set[tuple[int, str, bool]] = set()  # (operation, mode, pinned) with nothing to generate
    round_no = 0
    while totals.tried < requests:
        before = totals.tried
        for index, mode, pinned in runs:
            if (index, mode.value, pinned) in impossible or totals.tried >= requests:
                continue
            path_pins, pin_body = pins[index]
            strategy = ops[index].as_strategy(
                generation_mode=mode, path_parameters=path_pins if pinned else None
            )
            try:
                _send_cases(
                    target, totals, strategy, pin_body=pinned and pin_body, examples=per_run,
                    seed=seed * 1_000_003 + round_no * 1_009 + index,
                )  # fmt: skip
            except Unsatisfiable:
                impossible.add((index, mode.value, pinned))
        round_no += 1
        if totals.tried == before:
            break  # nothing left to generate: report what was tried
    return totals
