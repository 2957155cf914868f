"""The audit log: append-only, hash-chained JSON lines of every state-changing call (who, what, when, result).

Each line is one record::

    {"seq": 7, "time": "2026-11-29T08:30:00.123456Z", "subject": "alice", "role": "operator",
     "action": "POST /v1/jobs", "resource": "jobs", "result": "201", "detail": {...},
     "prev": "<hash of record 6>", "hash": "<hash of this record>"}

``hash = H(prev ‖ canonical JSON of the record without "hash")`` where H is SHA-256, or HMAC-SHA-256
under a secret key when the log is opened with ``key=``. The first record's ``prev`` is 64 zeros.
`verify_audit_log` recomputes the chain: an edited record breaks its own hash, an inserted or deleted
record breaks the next record's ``prev`` and the ``seq`` count. A side file ``<log>.head`` keeps the
count and last hash, so deleting records from the END is caught too.

Limits (docs/security.md): without a key, someone who can write the file could rewrite the whole chain
and its head consistently; with a key kept away from that someone, they cannot.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from skyline.errors import ConfigError, IntegrityError
from skyline.security.keyfile import write_private

__all__ = ["GENESIS", "AuditLog", "AuditReport", "verify_audit_log"]

GENESIS = "0" * 64
_FIELDS = ("seq", "time", "subject", "role", "action", "resource", "result", "detail", "prev")


def _digest(prev: str, body: Mapping[str, Any], key: bytes | None) -> str:
    payload = prev.encode("ascii") + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    if key is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(key, payload, hashlib.sha256).hexdigest()


def _head_path(path: Path) -> Path:
    return path.with_name(path.name + ".head")


def _last_line(path: Path) -> str | None:
    """The last non-empty line of a file, read from its end (logs grow large; this stays O(line))."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        block, data = 4096, b""
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            data = f.read(end - start) + data
            end = start
            lines = data.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                return lines[-1].decode("utf-8") if lines[-1] else None
    return None


class AuditLog:
    """Appends chained records to ``path`` (a JSONL file, created 0600), safely across threads and processes."""

    def __init__(self, path: Path | str, *, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self._lock = threading.Lock()

    def append(
        self,
        *,
        subject: str,
        role: str,
        action: str,
        resource: str,
        result: str,
        detail: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Append one record and return it (with ``seq``, ``prev`` and ``hash``). Never log secrets in detail."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                last = _last_line(self.path)
                prev_record = json.loads(last) if last else None
                body: dict[str, Any] = {
                    "seq": 0 if prev_record is None else int(prev_record["seq"]) + 1,
                    "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "subject": subject,
                    "role": role,
                    "action": action,
                    "resource": resource,
                    "result": result,
                    "detail": dict(detail or {}),
                    "prev": GENESIS if prev_record is None else str(prev_record["hash"]),
                }
                record = {**body, "hash": _digest(body["prev"], body, self.key)}
                os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode("utf-8"))
                os.fdatasync(fd)  # the record is on disk before the call is answered
                head = {"count": body["seq"] + 1, "hash": record["hash"]}
                # The head may lag after a crash (verify accepts a log longer than its head): no fsync.
                write_private(_head_path(self.path), (json.dumps(head) + "\n").encode(), durable=False)
            except (ValueError, KeyError, TypeError) as exc:
                raise IntegrityError(
                    f"audit log {self.path} ends with a corrupt record ({exc}); run 'skyline audit verify'"
                ) from exc
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        return record


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditReport:
    """A verified log: how many records, the last hash, and whether a head file confirmed the tail."""

    records: int
    last_hash: str
    head_checked: bool


def _check_record(line_no: int, line: str, expected_seq: int, prev: str, key: bytes | None) -> str:
    where = f"line {line_no}"
    try:
        record = json.loads(line)
        stored = record.pop("hash")
        if set(record) != set(_FIELDS):
            raise ValueError(f"fields {sorted(record)}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{where}: not a valid audit record ({exc}): the log was edited") from None
    if _digest(str(record["prev"]), record, key) != stored:
        raise IntegrityError(f"{where} (seq {record['seq']}): hash mismatch: the record was edited")
    if record["prev"] != prev:
        raise IntegrityError(
            f"{where} (seq {record['seq']}): does not chain to the record before it: a record was inserted or deleted"
        )
    if record["seq"] != expected_seq:
        raise IntegrityError(
            f"{where}: seq {record['seq']} where {expected_seq} was expected: records were inserted or deleted"
        )
    return str(stored)


def verify_audit_log(path: Path | str, *, key: bytes | None = None) -> AuditReport:
    """Recompute the whole chain; `IntegrityError` naming the first line that was edited, inserted or deleted."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"no audit log at {path}; pass the path of an existing log") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IntegrityError(f"audit log {path} is unreadable ({exc})") from exc
    prev = GENESIS
    for index, line in enumerate(lines):
        prev = _check_record(index + 1, line, index, prev, key)
    head_checked = False
    head_path = _head_path(path)
    if head_path.exists():
        try:
            head = json.loads(head_path.read_text())
            count, head_hash = int(head["count"]), str(head["hash"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"audit head {head_path} is malformed ({exc})") from exc
        if count > len(lines):
            raise IntegrityError(
                f"{path} has {len(lines)} records but its head says {count}: records were deleted from the end"
            )
        # A crash between appending and updating the head leaves the log longer; the head must still match.
        if count > 0 and json.loads(lines[count - 1])["hash"] != head_hash:
            raise IntegrityError(
                f"record {count} of {path} does not match its head file: the log was rewritten"
            )
        head_checked = True
    elif lines:
        raise IntegrityError(
            f"{path} has {len(lines)} records but no head file {head_path.name}: it was deleted"
        )
    return AuditReport(records=len(lines), last_hash=prev, head_checked=head_checked)
