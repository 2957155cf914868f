"""Demo step: sign a model directory and watch tampering get refused; envelope encryption with key
rotation; tokens and roles; an audit chain that detects an edited record."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from skyline.cli.demo import DemoContext, StepReport
from skyline.errors import AuthError, IntegrityError, PermissionDeniedError
from skyline.security.audit import AuditLog, verify_audit_log
from skyline.security.envelope import decrypt, encrypt, generate_kek, rewrap
from skyline.security.rbac import PERMISSIONS, ResourceKind, Role, authorize
from skyline.security.signing import generate_signing_keys, sign_directory, verify_directory
from skyline.security.tokens import TokenAuthority


def _refused(action: Callable[[], object]) -> str:
    """Run a zero-argument callable that must fail with IntegrityError; return its message."""
    try:
        action()
    except IntegrityError as exc:
        return str(exc)
    raise AssertionError("tampering was NOT detected")


def _model_dir(root: Path) -> Path:
    model = root / "model"
    (model / "1").mkdir(parents=True, exist_ok=True)
    (model / "1" / "model.onnx").write_bytes(secrets.token_bytes(256 * 1024))
    (model / "config.json").write_text(json.dumps({"name": "demo", "max_batch_size": 8}))
    return model


def _signing(root: Path) -> dict[str, str]:
    private, public = generate_signing_keys(root / "keys" / "signing.key", root / "keys" / "signing.pub")
    model = _model_dir(root)
    sign_directory(model, private, version=2)
    verify_directory(model, public, min_version=2)
    weights = model / "1" / "model.onnx"
    original = weights.read_bytes()
    weights.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    flipped = _refused(lambda: verify_directory(model, public))
    weights.write_bytes(original)
    (model / "1" / "extra.py").write_text("print('hi')")
    added = _refused(lambda: verify_directory(model, public))
    (model / "1" / "extra.py").unlink()
    rollback = _refused(lambda: verify_directory(model, public, min_version=3))
    _, other = generate_signing_keys(root / "keys" / "other.key", root / "keys" / "other.pub")
    wrong_key = _refused(lambda: verify_directory(model, other))
    return {"flipped byte": flipped, "added file": added, "rollback": rollback, "wrong key": wrong_key}


def _envelope(root: Path, size_bytes: int) -> dict[str, object]:
    old, new = generate_kek(root / "keys" / "old.kek"), generate_kek(root / "keys" / "new.kek")
    data = secrets.token_bytes(size_bytes)
    blob = encrypt(data, old)
    rotated = rewrap(blob, old, new)
    tampered = bytearray(rotated)
    tampered[-1] ^= 1
    return {
        "round_trip_ok": decrypt(rotated, new) == data,
        "overhead_bytes": len(blob) - len(data),
        "old_key_refused": _refused(lambda: decrypt(rotated, old)),
        "tampered_refused": _refused(lambda: decrypt(bytes(tampered), new)),
    }


def _tokens_and_audit(root: Path) -> dict[str, object]:
    authority = TokenAuthority(root / "tokens.json")
    admin = authority.bootstrap_admin()
    assert admin is not None and authority.bootstrap_admin() is None
    viewer = authority.issue("vera", "viewer", ttl_s=3600)
    log = AuditLog(root / "audit.jsonl")
    outcomes = {}
    for name, token in (("admin", admin), ("viewer", viewer), ("forged", "sky_0123456789ab_forged")):
        try:
            authorize(authority.verify(token), "delete", "jobs")
            result = "200"
        except PermissionDeniedError:
            result = "403"
        except AuthError:
            result = "401"
        outcomes[name] = result
        log.append(subject=name, role="-", action="DELETE /v1/jobs/7", resource="jobs", result=result)
    records = verify_audit_log(root / "audit.jsonl").records
    lines = (root / "audit.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"403"', '"200"')  # someone hides the refused attempt
    (root / "audit.jsonl").write_text("\n".join(lines) + "\n")
    edited = _refused(lambda: verify_audit_log(root / "audit.jsonl"))
    return {"delete_job_status": outcomes, "audit_records": records, "audit_edit_refused": edited}


def _permission_figure(path: Path) -> Path:
    """The ONE permission table as a grid: roles × resource kinds, each cell listing the allowed actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    roles = [r.value for r in Role]
    kinds = [k.value for k in ResourceKind]
    letters = {"read": "R", "create": "C", "update": "U", "delete": "D", "invoke": "I"}
    counts = [[len(PERMISSIONS[r].get(k, ())) for k in kinds] for r in roles]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.imshow(counts, cmap="Greens", vmin=0, vmax=len(letters) + 1, aspect="auto")
    for i, role in enumerate(roles):
        for j, kind in enumerate(kinds):
            granted = PERMISSIONS[role].get(kind, frozenset())
            text = "".join(letters[a] for a in letters if a in granted) or "—"
            ax.text(j, i, text, ha="center", va="center", fontsize=9)
    ax.set_xticks(range(len(kinds)), kinds)
    ax.set_yticks(range(len(roles)), roles)
    ax.set_title("Permission table (R read, C create, U update, D delete, I invoke; — denied)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fresh(root: Path) -> None:
    # A re-run must start from nothing: an old token file has its admin already, an old log its records.
    for name in ("model", "keys"):
        shutil.rmtree(root / name, ignore_errors=True)
    for name in ("tokens.json", "tokens.json.lock", "audit.jsonl", "audit.jsonl.head"):
        (root / name).unlink(missing_ok=True)


def run(ctx: DemoContext) -> StepReport:
    _fresh(ctx.out_dir)
    refusals = _signing(ctx.out_dir)
    envelope = _envelope(ctx.out_dir, 1 << 20 if ctx.quick else 16 << 20)
    access = _tokens_and_audit(ctx.out_dir)
    prefix = f"{ctx.out_dir}/"
    lines = [
        f"- **{what}** refused: `{message.replace(prefix, '')[:200]}`" for what, message in refusals.items()
    ]
    summary = "\n".join(
        [
            "A model directory is signed (Ed25519 over per-file sha256 + version 2) and verifies. Then:",
            *lines,
            "",
            f"Envelope encryption (AES-256-GCM, data key wrapped by a KEK): round trip after key rotation "
            f"{'OK' if envelope['round_trip_ok'] else 'FAILED'}, {envelope['overhead_bytes']} bytes overhead; "
            "the retired key and a flipped bit are both refused.",
            "",
            f"Tokens (first admin printed once, no default password): DELETE job → "
            f"{access['delete_job_status']}. The audit log of those {access['audit_records']} attempts verifies; "
            f"after hiding the viewer's 403 it is refused: `{str(access['audit_edit_refused'])[:120]}`",
        ]
    )
    figure = _permission_figure(ctx.out_dir / "permissions.png")
    return StepReport(
        title="Security: signed models, encryption at rest, roles, audit chain",
        summary=summary,
        figures=(figure,),
        metrics={
            "tamper_cases_refused": len(refusals),
            "envelope_round_trip_ok": envelope["round_trip_ok"],
            "envelope_overhead_bytes": envelope["overhead_bytes"],
            "delete_job_status": access["delete_job_status"],
            "audit_edit_detected": True,
        },
    )
