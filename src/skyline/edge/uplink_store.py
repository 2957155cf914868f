"""The edge's durable store-and-forward queue: SQLite in WAL mode, one row per record, ids assigned at entry.

Records (samples, results, hard examples) wait here until the cloud has acknowledged them. The store is the
only source of truth: a sender that dies (SIGKILL) between "cloud received" and "acked locally" re-sends
the record later, and the cloud drops the duplicate by id, so every record lands exactly once.

Capacity and TTL policies follow the IoT gateways (Azure IoT Edge, Greengrass stream manager): a full queue
either drops its oldest record or rejects the new one; records older than ``ttl_s`` expire. Every drop is
counted in the store itself, so the counts survive restarts too.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from skyline.errors import CapacityError, ConfigError, OverloadedError

OverflowPolicy = Literal["drop-oldest", "reject-new"]
OVERFLOW_POLICIES: tuple[str, ...] = ("drop-oldest", "reject-new")
COUNTERS: tuple[str, ...] = ("enqueued", "acked", "dropped_oldest", "rejected_new", "expired")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkPolicy:
    """How much the queue may hold and for how long; what happens when it is full."""

    capacity_records: int = 100_000
    ttl_s: float | None = None
    overflow: OverflowPolicy = "drop-oldest"

    def __post_init__(self) -> None:
        if self.capacity_records < 1:
            raise ConfigError(f"capacity_records must be >= 1, got {self.capacity_records}")
        if self.ttl_s is not None and self.ttl_s <= 0:
            raise ConfigError(f"ttl_s must be positive or None (no expiry), got {self.ttl_s}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise ConfigError(
                f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class UplinkRecord:
    """One queued record: a globally unique id, what it is, its JSON payload and when it was made."""

    id: str
    kind: str
    payload: dict[str, Any]
    created_at: float
    attempts: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "payload": self.payload, "created_at": self.created_at}


class UplinkStore:
    """A durable FIFO of records on the edge; safe against process kills and a full disk.

    Every mutation is one SQLite transaction with ``synchronous=FULL`` in WAL mode, so after a SIGKILL the
    store holds exactly the records whose ``put`` returned and that were not acked.
    """

    def __init__(
        self,
        path: Path | str,
        policy: UplinkPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        max_pages: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.policy = policy or UplinkPolicy()
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the producer and the sender thread: transactions must not interleave.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        if max_pages is not None:
            # Caps the file size: how tests reproduce "disk full" (SQLITE_FULL) without filling a disk.
            self._db.execute(f"PRAGMA max_page_count={int(max_pages)}")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> UplinkStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, statements: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``statements`` in one IMMEDIATE transaction; a full disk rolls back and raises CapacityError."""
        with self._lock:
            return self._write_locked(statements)

    def _write_locked(self, statements: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = statements(self._db)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLITE_FULL may already have rolled it back
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):
                raise CapacityError(
                    f"uplink store {self.path} is out of disk space ({exc}); the queue is unchanged — "
                    "free space, lower capacity_records or set a TTL"
                ) from exc
            raise
        return result

    def _bump(self, db: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            db.execute(
                "INSERT INTO counters(name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def put(self, kind: str, payload: dict[str, Any], *, record_id: str | None = None) -> str:
        """Queue one record and return its id; applies TTL, then the overflow policy when full."""
        rid = record_id or uuid.uuid4().hex
        body = json.dumps(payload, separators=(",", ":"))
        now = self._clock()

        def insert(db: sqlite3.Connection) -> bool:
            self._expire(db, now)
            (size,) = db.execute("SELECT COUNT(*) FROM records").fetchone()
            if size >= self.policy.capacity_records:
                if self.policy.overflow == "reject-new":
                    self._bump(db, "rejected_new", 1)
                    return False
                excess = size - self.policy.capacity_records + 1
                db.execute(
                    "DELETE FROM records WHERE seq IN (SELECT seq FROM records ORDER BY seq LIMIT ?)",
                    (excess,),
                )
                self._bump(db, "dropped_oldest", excess)
            db.execute(
                "INSERT OR IGNORE INTO records(id, kind, payload, created_at) VALUES (?, ?, ?, ?)",
                (rid, kind, body, now),
            )
            self._bump(db, "enqueued", 1)
            return True

        if not self._write(insert):
            raise OverloadedError(
                f"uplink queue {self.path} is full ({self.policy.capacity_records} records, reject-new); "
                "record refused — retry once the cloud is reachable",
                retry_after_s=1.0,
            )
        return rid

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        if self.policy.ttl_s is None:
            return
        cursor = db.execute("DELETE FROM records WHERE created_at < ?", (now - self.policy.ttl_s,))
        self._bump(db, "expired", cursor.rowcount)

    def expire(self) -> None:
        """Drop records older than the TTL now (``put`` and ``peek`` also do it)."""
        now = self._clock()
        self._write(lambda db: self._expire(db, now))

    def peek(self, limit: int = 64) -> list[UplinkRecord]:
        """The oldest ``limit`` records, still queued; counts one more delivery attempt on each."""
        now = self._clock()

        def take(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            self._expire(db, now)
            rows = db.execute(
                "SELECT id, kind, payload, created_at, attempts FROM records ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
            db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?", [(r[0],) for r in rows])
            return rows

        rows: list[tuple[Any, ...]] = self._write(take)
        return [
            UplinkRecord(id=r[0], kind=r[1], payload=json.loads(r[2]), created_at=r[3], attempts=r[4] + 1)
            for r in rows
        ]

    def ack(self, ids: Sequence[str]) -> int:
        """Remove records the cloud has confirmed; returns how many were still queued."""

        def delete(db: sqlite3.Connection) -> int:
            removed = 0
            for rid in ids:
                removed += db.execute("DELETE FROM records WHERE id = ?", (rid,)).rowcount
            self._bump(db, "acked", removed)
            return removed

        removed: int = self._write(delete)
        return removed

    def __len__(self) -> int:
        with self._lock:
            (size,) = self._db.execute("SELECT COUNT(*) FROM records").fetchone()
        return int(size)

    def counters(self) -> dict[str, int]:
        """Persistent counts: enqueued, acked, dropped_oldest, rejected_new, expired."""
        with self._lock:
            found = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return {name: int(found.get(name, 0)) for name in COUNTERS}

    def integrity_ok(self) -> bool:
        """SQLite's own consistency check of the file (after a kill or a full disk)."""
        with self._lock:
            (verdict,) = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(verdict == "ok")
