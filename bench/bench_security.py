"""Security benchmark: every HTTP API fuzzed (≥ 1,000 schemathesis requests each), the role × endpoint
matrix, abusive bodies, malformed HTTP, per-token rate limits, and what the cryptography costs (signing,
envelope encryption, tokens, audit).

The APIs are those of `skyline.testing.api_targets.TARGETS`: the control plane (jobs, nodes, tokens,
services), the web console, the services' gateway, the inference server, the LLM server, the edge cloud
and an edge agent. Records bench/results/security.json: per API the requests tried, refused (4xx) and
server errors (5xx), matrix cases and mismatches, abusive bodies and malformed requests accepted, the
rate limit seen; and medians of the crypto timings. ``--quick`` (or ``SKYLINE_BENCH_QUICK=1``) is a smoke
run: 50 fuzz requests per API, a small crypto payload, nothing recorded.
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.record import record
from skyline.security.audit import AuditLog, verify_audit_log
from skyline.security.envelope import decrypt, encrypt
from skyline.security.rbac import authorize
from skyline.security.signing import generate_signing_keys, sign_directory, verify_directory
from skyline.security.tokens import TokenAuthority
from skyline.testing.api_abuse import check_rate_limit, send_abuse, send_raw_abuse
from skyline.testing.api_fuzz import fuzz
from skyline.testing.api_matrix import run_matrix
from skyline.testing.api_target import ApiTarget
from skyline.testing.api_targets import TARGETS

QUICK = "--quick" in sys.argv or os.environ.get("SKYLINE_BENCH_QUICK", "") not in ("", "0")
FUZZ_REQUESTS = int(os.environ.get("SKYLINE_BENCH_FUZZ_REQUESTS", "50" if QUICK else "1000"))
REPEATS = 1 if QUICK else 3
PAYLOAD_MIB = 4 if QUICK else 64


def _checks(target: ApiTarget) -> dict[str, Any]:
    cases, wrong = run_matrix(target)
    totals = fuzz(target, requests=FUZZ_REQUESTS, seed=7)
    abuse = send_abuse(target)
    raw, alive = send_raw_abuse(target)
    return {
        **totals.to_json(),
        "matrix_cases": cases,
        "matrix_mismatches": wrong,
        "abusive_bodies_sent": len(abuse),
        "abusive_bodies_refused": sum(r.refused for r in abuse),
        "abusive_bodies_accepted": [
            f"{r.method} {r.path}: {r.label} → {r.status}" for r in abuse if not r.refused
        ],
        "abusive_bodies_5xx": sum(r.status >= 500 for r in abuse),
        "malformed_http_sent": len(raw),
        "malformed_http_answers": {r.label: r.status for r in raw},  # 0: connection closed unanswered
        "malformed_http_5xx": sum(r.status >= 500 for r in raw),
        "alive_after_malformed_http": alive,
        "rate_limit": None if target.rate_limit is None else check_rate_limit(target),
    }


def _api(name: str, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    context = TARGETS[name](folder)
    target = context.__enter__()
    try:
        results = _checks(target)
    finally:
        context.__exit__(None, None, None)
    return {**results, "seconds": round(time.perf_counter() - started, 1)}


def _interleaved_medians_s(actions: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each repeat runs every action once, in turn, so that load from other jobs hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(REPEATS):
        for name, action in actions.items():
            started = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def _crypto(folder: Path) -> dict[str, Any]:
    size_mib = PAYLOAD_MIB
    data = secrets.token_bytes(size_mib << 20)
    kek = secrets.token_bytes(32)
    blob = encrypt(data, kek)
    model = folder / "model"
    model.mkdir(parents=True)
    shard = len(data) // 8
    for i in range(8):  # 8 files, like a sharded checkpoint
        (model / f"shard-{i}.bin").write_bytes(data[i * shard : (i + 1) * shard])
    private, public = generate_signing_keys(folder / "k.key", folder / "k.pub")
    authority = TokenAuthority(folder / "tokens.json")
    token = authority.issue("bench", "invoker")
    principal = authority.verify(token)
    log = AuditLog(folder / "audit.jsonl")
    n_tokens, n_audit = 10_000, 1_000

    def audit_appends() -> None:
        for _ in range(n_audit):
            log.append(subject="bench", role="admin", action="POST /v1/jobs", resource="jobs", result="201")

    timings = _interleaved_medians_s(
        {
            "encrypt_s": lambda: encrypt(data, kek),
            "decrypt_s": lambda: decrypt(blob, kek),
            "sign_directory_s": lambda: sign_directory(model, private, version=1),
            "verify_directory_s": lambda: verify_directory(model, public),
            "token_verify_s": lambda: [authority.verify(token) for _ in range(n_tokens)],
            "authorize_s": lambda: [authorize(principal, "invoke", "models") for _ in range(n_tokens)],
            "audit_append_s": audit_appends,
        }
    )
    records = verify_audit_log(folder / "audit.jsonl").records
    audit_verify_s = _interleaved_medians_s({"v": lambda: verify_audit_log(folder / "audit.jsonl")})["v"]
    mib = float(size_mib)
    return {
        "payload_mib": size_mib,
        "envelope_encrypt_mib_per_s": round(mib / timings["encrypt_s"], 1),
        "envelope_decrypt_mib_per_s": round(mib / timings["decrypt_s"], 1),
        "sign_directory_mib_per_s": round(mib / timings["sign_directory_s"], 1),
        "verify_directory_mib_per_s": round(mib / timings["verify_directory_s"], 1),
        "token_verify_us": round(timings["token_verify_s"] / n_tokens * 1e6, 2),
        "authorize_us": round(timings["authorize_s"] / n_tokens * 1e6, 2),
        "audit_append_us": round(timings["audit_append_s"] / n_audit * 1e6, 1),
        "audit_verify_records_per_s": round(records / audit_verify_s),
        "audit_records_verified": records,
    }


def _totals(tested: list[dict[str, Any]]) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(a[key] if isinstance(a[key], int) else len(a[key]) for a in tested)

    keys = ["operations", "operations_fuzzed", "requests_tried", "refused_4xx", "server_errors_5xx"]
    keys += ["unavailable_503", "matrix_cases"]
    keys += ["matrix_mismatches", "abusive_bodies_sent", "abusive_bodies_accepted", "abusive_bodies_5xx"]
    keys += ["malformed_http_sent", "malformed_http_5xx"]
    limits = [a["rate_limit"] for a in tested if a["rate_limit"] is not None]
    return {
        "apis_tested": len(tested),
        **{key: total(key) for key in keys},
        "apis_dead_after_malformed_http": sum(not a["alive_after_malformed_http"] for a in tested),
        "rate_limits_checked": len(limits),
        "rate_limits_enforced": sum(bool(r["ok"]) for r in limits),
    }


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before any server imports numpy or onnxruntime
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        root = Path(tmp)
        apis = {}
        for name in sorted(TARGETS):
            print(
                f"  {name}: matrix, {FUZZ_REQUESTS} fuzz requests, abusive bodies, malformed HTTP ...",
                flush=True,
            )
            apis[name] = _api(name, root / name)
            print(f"    {apis[name]}", flush=True)
        crypto = _crypto(root / "crypto")
    results = {
        "note": (
            f"counts are exact, timings are medians of {REPEATS} interleaved repeats; server errors are 5xx "
            "except 503, the deliberate 'not ready' answer (counted apart, with samples)"
        ),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "fuzz_requests_per_api_target": FUZZ_REQUESTS,
        "totals": _totals(list(apis.values())),
        "apis": apis,
        "crypto": crypto,
    }
    if QUICK:  # a smoke run: too few requests to keep
        print(f"quick run, not recorded: {results['totals']}")
        return
    path = record("security", results)
    print(f"recorded {path}: {results['totals']}")


if __name__ == "__main__":
    main()
    sys.exit(0)
