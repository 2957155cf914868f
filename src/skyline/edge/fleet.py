"""The cloud's record of the edge fleet: what each agent reports, which version each should run, rollouts.

Desired vs observed state, as in dstack's models: an agent *reports* (observed) its labels, the version it
serves and per-version statistics (telemetry); the fleet *decides* (desired) which version of a model each
agent runs. An agent's desired version is its assignment by a running rollout wave, else the model's
pinned version. A model is pinned the first time an agent asks for it (to the newest version then, that no
rollout rejected): from then on a new version reaches agents only through a rollout, which moves the pin
when it succeeds. Agents ask for their desired version (`skyline.edge.model_sync`), so one that was
offline during a wave gets the right version when it returns.

State lives in SQLite (WAL, one transaction per call), by default ``<repository>/.skyline/fleet.db``, so the
cloud process and a publishing command (``skyline fl start``) on the same host share it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skyline.edge.sqlite_store import SqliteStore
from skyline.errors import ConflictError, NotFoundError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY, labels TEXT NOT NULL, last_seen REAL NOT NULL, metrics TEXT NOT NULL,
    models TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    agent TEXT NOT NULL, model TEXT NOT NULL, version INTEGER NOT NULL, rollout INTEGER NOT NULL,
    wave INTEGER NOT NULL, PRIMARY KEY (agent, model)
);
CREATE TABLE IF NOT EXISTS pins (model TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rejected (model TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS rollouts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL, version INTEGER NOT NULL,
    previous INTEGER, spec TEXT NOT NULL, state TEXT NOT NULL, wave INTEGER NOT NULL,
    wave_started_at REAL NOT NULL, started_at REAL NOT NULL, finished_at REAL, reason TEXT NOT NULL,
    events TEXT NOT NULL, waves TEXT NOT NULL DEFAULT '[]'
);
"""
RUNNING = "running"
FINISHED_STATES = ("succeeded", "rolled-back")


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionStats:
    """What an agent measured while serving one version: requests answered and failed, the median
    latency of its recent answers (ms), and labelled records answered and answered right."""

    answered: int = 0
    errors: int = 0
    latency_ms_p50: float | None = None
    labelled: int = 0
    correct: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionStats:
        p50 = data.get("latency_ms_p50")
        return cls(
            answered=int(data.get("answered", 0)),
            errors=int(data.get("errors", 0)),
            latency_ms_p50=None if p50 is None else float(p50),
            labelled=int(data.get("labelled", 0)),
            correct=int(data.get("correct", 0)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRecord:
    """The last report of one agent: labels, flat metrics, and per model the version served + its stats."""

    name: str
    labels: Mapping[str, str]
    last_seen: float
    metrics: Mapping[str, Any] = field(default_factory=dict)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def version(self, model: str) -> int | None:
        value = self.models.get(model, {}).get("version")
        return None if value is None else int(value)

    def stats(self, model: str, version: int) -> VersionStats:
        return VersionStats.from_json(self.models.get(model, {}).get("stats", {}).get(str(version), {}))

    def matches(self, selector: Mapping[str, str]) -> bool:
        return all(self.labels.get(key) == value for key, value in selector.items())


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutRecord:
    """A rollout as stored: its spec (JSON), state, current wave and the events that moved it."""

    id: int
    model: str
    version: int
    previous: int | None
    spec: Mapping[str, Any]
    state: str
    wave: int
    wave_started_at: float
    started_at: float
    finished_at: float | None
    reason: str
    events: tuple[str, ...]
    waves: tuple[tuple[str, ...], ...] = ()  # the agents each wave added

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "model": self.model, "version": self.version, "previous": self.previous,
            "spec": dict(self.spec), "state": self.state, "wave": self.wave, "started_at": self.started_at,
            "finished_at": self.finished_at, "reason": self.reason, "events": list(self.events),
            "waves": [list(w) for w in self.waves],
        }  # fmt: skip


class FleetStore(SqliteStore):
    """Agents, assignments, pins, rejected versions and rollouts; safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _SCHEMA)

    # ------------------------------------------------------------------ observed: agent reports
    def report(
        self,
        agent: str,
        *,
        labels: Mapping[str, str],
        metrics: Mapping[str, Any],
        models: Mapping[str, Any],
        now: float | None = None,
    ) -> None:
        """Store an agent's latest telemetry (replacing the previous one)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO agents(name, labels, last_seen, metrics, models) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET labels = excluded.labels, last_seen = excluded.last_seen, "
                "metrics = excluded.metrics, models = excluded.models",
                (agent, json.dumps(dict(labels)), time.time() if now is None else now,
                 json.dumps(dict(metrics)), json.dumps(dict(models))),
            )  # fmt: skip

    def agents(self) -> list[AgentRecord]:
        """Every agent that ever reported, by name."""
        rows = self._rows("SELECT name, labels, last_seen, metrics, models FROM agents ORDER BY name")
        return [
            AgentRecord(
                name=name,
                labels=json.loads(labels),
                last_seen=seen,
                metrics=json.loads(metrics),
                models=json.loads(models),
            )
            for name, labels, seen, metrics, models in rows
        ]

    # ------------------------------------------------------------------ desired: versions
    def desired(self, agent: str, model: str, available: Sequence[int]) -> int | None:
        """The version ``agent`` should run (None: nothing published yet); see the module docstring. The
        first answer for a model pins it: from then on a new version reaches agents through a rollout."""
        assigned = self._rows("SELECT version FROM assignments WHERE agent = ? AND model = ?", (agent, model))
        if assigned:
            return int(assigned[0][0])
        pinned = self.pinned(model)
        if pinned is not None:
            return pinned
        rejected = self.rejected(model)
        candidates = [v for v in available if v not in rejected]
        if not candidates:
            return None
        with self._transaction() as db:  # two agents asking at once pin the same version
            db.execute(
                "INSERT INTO pins(model, version) VALUES (?, ?) ON CONFLICT(model) DO NOTHING",
                (model, max(candidates)),
            )
            (version,) = db.execute("SELECT version FROM pins WHERE model = ?", (model,)).fetchone()
        return int(version)

    def pinned(self, model: str) -> int | None:
        rows = self._rows("SELECT version FROM pins WHERE model = ?", (model,))
        return int(rows[0][0]) if rows else None

    def pin(self, model: str, version: int) -> None:
        """Make ``version`` the one every agent outside a rollout wave runs."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO pins(model, version) VALUES (?, ?) "
                "ON CONFLICT(model) DO UPDATE SET version = excluded.version",
                (model, version),
            )

    def rejected(self, model: str) -> set[int]:
        return {int(v) for (v,) in self._rows("SELECT version FROM rejected WHERE model = ?", (model,))}

    def assignments(self, model: str, rollout: int) -> dict[str, int]:
        """Agent → the wave it was assigned in, for one rollout."""
        rows = self._rows(
            "SELECT agent, wave FROM assignments WHERE model = ? AND rollout = ?", (model, rollout)
        )
        return {agent: int(wave) for agent, wave in rows}

    def assign(self, agents: Sequence[str], *, model: str, version: int, rollout: int, wave: int) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO assignments(agent, model, version, rollout, wave) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(agent, model) DO UPDATE SET version = excluded.version, "
                "rollout = excluded.rollout, wave = excluded.wave",
                [(agent, model, version, rollout, wave) for agent in agents],
            )

    # ------------------------------------------------------------------ rollouts
    def create_rollout(
        self, *, model: str, version: int, previous: int | None, spec: Mapping[str, Any], now: float
    ) -> int:
        """Record a new running rollout (`ConflictError` while another of the same model runs)."""
        with self._transaction() as db:
            running = db.execute(
                "SELECT id FROM rollouts WHERE model = ? AND state = ?", (model, RUNNING)
            ).fetchone()
            if running is not None:
                raise ConflictError(
                    f"rollout {running[0]} of {model!r} is still running; wait for it to finish"
                )
            if previous is not None:
                db.execute(
                    "INSERT INTO pins(model, version) VALUES (?, ?) ON CONFLICT(model) DO NOTHING",
                    (model, previous),
                )
            cursor = db.execute(
                "INSERT INTO rollouts(model, version, previous, spec, state, wave, wave_started_at, "
                "started_at, reason, events) VALUES (?, ?, ?, ?, ?, -1, ?, ?, '', '[]')",
                (model, version, previous, json.dumps(dict(spec)), RUNNING, now, now),
            )
            return int(cursor.lastrowid or 0)

    def rollouts(self, *, running_only: bool = False) -> list[RolloutRecord]:
        where = f"WHERE state = '{RUNNING}'" if running_only else ""
        rows = self._rows(
            "SELECT id, model, version, previous, spec, state, wave, wave_started_at, started_at, "
            f"finished_at, reason, events, waves FROM rollouts {where} ORDER BY id"
        )
        return [
            RolloutRecord(
                id=r[0],
                model=r[1],
                version=r[2],
                previous=r[3],
                spec=json.loads(r[4]),
                state=r[5],
                wave=r[6],
                wave_started_at=r[7],
                started_at=r[8],
                finished_at=r[9],
                reason=r[10],
                events=tuple(json.loads(r[11])),
                waves=tuple(tuple(w) for w in json.loads(r[12])),
            )
            for r in rows
        ]

    def rollout(self, rollout_id: int) -> RolloutRecord:
        for record in self.rollouts():
            if record.id == rollout_id:
                return record
        raise NotFoundError(f"no rollout {rollout_id}")

    def start_wave(
        self, record: RolloutRecord, wave: int, agents: Sequence[str], event: str, now: float
    ) -> None:
        """Assign ``agents`` to the rollout's version as ``wave`` and note why."""
        self.assign(agents, model=record.model, version=record.version, rollout=record.id, wave=wave)
        with self._transaction() as db:
            waves = [*[list(w) for w in record.waves][:wave], list(agents)]
            db.execute(
                "UPDATE rollouts SET wave = ?, wave_started_at = ?, events = ?, waves = ? WHERE id = ?",
                (wave, now, json.dumps([*record.events, event]), json.dumps(waves), record.id),
            )

    def finish(self, record: RolloutRecord, *, succeeded: bool, reason: str, now: float) -> None:
        """End a rollout: on success its version becomes the pinned one; else it is rejected and every
        agent it reached goes back to the previous version. Either way its assignments are dropped."""
        with self._transaction() as db:
            if succeeded:
                db.execute(
                    "INSERT INTO pins(model, version) VALUES (?, ?) "
                    "ON CONFLICT(model) DO UPDATE SET version = excluded.version",
                    (record.model, record.version),
                )
            else:
                db.execute(
                    "INSERT OR IGNORE INTO rejected(model, version) VALUES (?, ?)",
                    (record.model, record.version),
                )
            db.execute("DELETE FROM assignments WHERE rollout = ?", (record.id,))
            state = "succeeded" if succeeded else "rolled-back"
            db.execute(
                "UPDATE rollouts SET state = ?, finished_at = ?, reason = ?, events = ? WHERE id = ?",
                (state, now, reason, json.dumps([*record.events, reason]), record.id),
            )
