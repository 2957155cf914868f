"""Idempotent ingestion in the cloud: records carry ids, a record id is stored once, duplicates are dropped.

The edge sends at least once; this store makes delivery exactly once. ``INSERT OR IGNORE`` on the primary
key is atomic in SQLite, so concurrent or repeated deliveries of one id never make two rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skyline.edge.sqlite_store import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ingested (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What one delivery did: how many records were new and how many were duplicates (dropped)."""

    accepted: int
    duplicates: int


class IngestStore(SqliteStore):
    """The cloud side of the uplink: one row per record id, however often it is delivered."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    def ingest(self, records: Sequence[dict[str, Any]], *, source: str = "edge") -> IngestResult:
        """Store every record whose id is new; count the rest as duplicates. One transaction. ``source``:
        who delivered them (the cloud passes the token's subject)."""
        now = time.time()
        with self._transaction() as db:
            accepted = 0
            for record in records:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO ingested(id, kind, payload, created_at, received_at, source) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        str(record["id"]),
                        str(record["kind"]),
                        json.dumps(record["payload"], separators=(",", ":")),
                        float(record["created_at"]),
                        now,
                        source,
                    ),
                )
                accepted += cursor.rowcount
            duplicates = len(records) - accepted
            for name, value in (("accepted", accepted), ("duplicates", duplicates)):
                db.execute(
                    "INSERT INTO ingest_counters(name, value) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                    (name, value),
                )
        return IngestResult(accepted=accepted, duplicates=duplicates)

    def ids(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT id FROM ingested ORDER BY received_at, id")]

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                (n,) = self._db.execute("SELECT COUNT(*) FROM ingested").fetchone()
            else:
                (n,) = self._db.execute("SELECT COUNT(*) FROM ingested WHERE kind = ?", (kind,)).fetchone()
        return int(n)

    def counters(self) -> dict[str, int]:
        """Totals over all deliveries: ``accepted`` (new records) and ``duplicates`` (dropped)."""
        with self._lock:
            found = dict(self._db.execute("SELECT name, value FROM ingest_counters").fetchall())
        return {"accepted": int(found.get("accepted", 0)), "duplicates": int(found.get("duplicates", 0))}

    def labelled_accuracy(self, model: str, version: int, agents: Sequence[str]) -> tuple[int, int]:
        """(answered right, answered) over the ``labelled`` records that ``agents`` uplinked for ``model``
        ``version``: each record carries the agent, the model version, the label and the prediction."""
        if not agents:
            return 0, 0
        marks = ",".join("?" * len(agents))
        query = (
            "SELECT COALESCE(SUM(json_extract(payload, '$.label') = json_extract(payload, '$.predicted')), 0), "
            "COUNT(*) FROM ingested WHERE kind = 'labelled' AND json_extract(payload, '$.model') = ? "
            f"AND json_extract(payload, '$.model_version') = ? AND json_extract(payload, '$.agent') IN ({marks})"
        )
        with self._lock:
            correct, total = self._db.execute(query, (model, version, *agents)).fetchone()
        return int(correct), int(total)
