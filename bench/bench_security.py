"""Security benchmark: every HTTP API fuzzed (≥ 1,000 schemathesis requests each), the role × endpoint
matrix, abusive bodies, and what the cryptography costs (signing, envelope encryption, tokens, audit).

Records bench/results/security.json: per API the requests tried, refused (4xx) and server errors (5xx),
matrix cases and mismatches, abusive bodies accepted; and medians of the crypto timings. The machine is
shared by other jobs: timings are medians of interleaved repeats, counts are exact.
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

import httpx

from bench.record import record
from skyline.security.audit import AuditLog, verify_audit_log
from skyline.security.envelope import decrypt, encrypt
from skyline.security.rbac import authorize
from skyline.security.signing import generate_signing_keys, sign_directory, verify_directory
from skyline.security.tokens import TokenAuthority
from skyline.testing.api_fuzz import call_matrix_case, fuzz, matrix_cases, operations, send_abuse
from skyline.testing.api_targets import TARGETS, TargetUnavailableError

FUZZ_REQUESTS = int(os.environ.get("SKYLINE_BENCH_FUZZ_REQUESTS", "1000"))
REPEATS = 3


def _api(name: str, folder: Path) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        context = TARGETS[name](folder)
        target = context.__enter__()
    except TargetUnavailableError as exc:
        return {"skipped": str(exc)}
    try:
        ops = [op for op in operations(target) if f"{op[0]} {op[1]}" in target.rules]
        wrong = []
        cases = matrix_cases(target, ops)
        with httpx.Client(timeout=60) as client:
            for case in cases:
                status = call_matrix_case(client, target, case).status_code
                allowed = status not in (401, 403) and status < 500
                if not (allowed if case.expected == "allow" else str(status) == case.expected):
                    wrong.append(
                        f"{case.caller} {case.method} {case.path}: expected {case.expected}, got {status}"
                    )
        totals = fuzz(target, requests=FUZZ_REQUESTS, seed=7)
        abuse = send_abuse(target)
    finally:
        context.__exit__(None, None, None)
    return {
        **totals.to_json(),
        "matrix_cases": len(cases),
        "matrix_mismatches": wrong,
        "abusive_bodies_sent": len(abuse),
        "abusive_bodies_refused": sum(r.refused for r in abuse),
        "abusive_bodies_accepted": [
            f"{r.method} {r.path}: {r.label} → {r.status}" for r in abuse if not r.refused
        ],
        "abusive_bodies_5xx": sum(r.status >= 500 for r in abuse),
        "seconds": round(time.perf_counter() - started, 1),
    }


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
    size_mib = 64
    data = secrets.token_bytes(size_mib << 20)
    kek = secrets.token_bytes(32)
    blob = encrypt(data, kek)
    model = folder / "model"
    model.mkdir(parents=True)
    for i in range(8):  # 8 files of 8 MiB, like a sharded checkpoint
        (model / f"shard-{i}.bin").write_bytes(data[i << 23 : (i + 1) << 23])
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


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before any server imports numpy or onnxruntime
    with tempfile.TemporaryDirectory(prefix="bench-security-") as tmp:
        root = Path(tmp)
        apis = {}
        for name in sorted(TARGETS):
            print(f"  {name}: matrix, {FUZZ_REQUESTS} fuzz requests, abusive bodies ...", flush=True)
            apis[name] = _api(name, root / name)
            print(f"    {apis[name]}", flush=True)
        crypto = _crypto(root / "crypto")
    tested = [a for a in apis.values() if "skipped" not in a]
    results = {
        "note": (
            "machine shared with other jobs; counts are exact, timings are medians of 3 interleaved repeats; "
            "server errors are 5xx except 503, the deliberate 'not ready' answer (counted apart, with samples)"
        ),
        "fuzz_requests_per_api_target": FUZZ_REQUESTS,
        "totals": {
            "apis_tested": len(tested),
            "requests_tried": sum(a["requests_tried"] for a in tested),
            "refused_4xx": sum(a["refused_4xx"] for a in tested),
            "server_errors_5xx": sum(a["server_errors_5xx"] for a in tested),
            "unavailable_503": sum(a["unavailable_503"] for a in tested),
            "matrix_cases": sum(a["matrix_cases"] for a in tested),
            "matrix_mismatches": sum(len(a["matrix_mismatches"]) for a in tested),
            "abusive_bodies_sent": sum(a["abusive_bodies_sent"] for a in tested),
            "abusive_bodies_accepted": sum(len(a["abusive_bodies_accepted"]) for a in tested),
        },
        "apis": apis,
        "crypto": crypto,
    }
    path = record("security", results)
    print(f"recorded {path}: {results['totals']}")


if __name__ == "__main__":
    main()
    sys.exit(0)
