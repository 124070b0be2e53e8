"""The local runner's record of an experiment: ``WORK_DIR/experiment.db`` (SQLite).

Every trial event is written (and committed) when it happens, so that a runner killed with
``kill -9`` loses nothing that had finished: ``kftune katib run FILE --local --resume`` and
``kftune katib trials DIR`` read it back.

Tables:

- ``meta``: key/value: the experiment's name, file, the effective spec (JSON, after overrides),
  the override flags, the runner version, the experiment's condition.
- ``trials``: one row per trial, its current state: assignments, labels, argv, working dir,
  output dir, status (Katib's trial condition), reason and message, pid (and the process start
  time, to recognise the same process later), attempt number, exit code, times, the
  early-stopping rule fixed at creation, the observation (Katib's ``status.observation``).
- ``metric_logs``: the observation log (each metric record a trial reported, in order, with the
  attempt that reported it).
- ``events``: the history: created, started, metrics, early-stopping, finished, interrupted,
  orphan-stopped, restarted ... with a JSON payload.

WAL journal with ``synchronous=NORMAL``: a commit survives the death of the process (not
necessarily a power cut), and writing a row costs well under a millisecond.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from kftune.katib.collector import Metric, MetricLog

DB_NAME = "experiment.db"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    assignments TEXT NOT NULL,
    labels TEXT NOT NULL,
    argv TEXT NOT NULL,
    cwd TEXT,
    env TEXT NOT NULL,
    output_dir TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    pid_start TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    metrics_from_attempt INTEGER NOT NULL DEFAULT 1,
    exit_code INTEGER,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    stop_rule TEXT,
    observation TEXT,
    log_out TEXT,
    log_err TEXT
);
CREATE TABLE IF NOT EXISTS metric_logs (
    id INTEGER PRIMARY KEY,
    trial TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metric_logs_trial ON metric_logs (trial, attempt);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    trial TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
"""

_JSON_FIELDS = ("assignments", "labels", "argv", "env", "stop_rule", "observation")


@dataclass
class TrialRow:
    """One trial as recorded (JSON columns decoded)."""

    name: str
    seq: int
    assignments: dict[str, str]
    labels: dict[str, str]
    argv: list[str]
    cwd: str | None
    env: dict[str, str]  # the container's env as resolved (not the runner's whole environment)
    output_dir: str | None
    status: str
    created: float
    reason: str = ""
    message: str = ""
    pid: int | None = None
    pid_start: str | None = None
    attempt: int = 0
    metrics_from_attempt: int = 1
    exit_code: int | None = None
    started: float | None = None
    finished: float | None = None
    stop_rule: dict[str, Any] | None = None
    observation: list[dict[str, str]] | None = None
    log_out: str | None = None
    log_err: str | None = None

    @property
    def metrics(self) -> list[Metric]:
        return [Metric(**m) for m in self.observation or []]

    @property
    def completed(self) -> bool:
        return self.status not in ("Created", "Running")


class Store:
    """An experiment's SQLite record (one connection; the runner is single-threaded)."""

    def __init__(self, path: Path, conn: sqlite3.Connection):
        self.path = path
        self.conn = conn

    # ------------------------------------------------------------------ open
    @staticmethod
    def open(path: str | Path, *, create: bool = False) -> Store:
        path = Path(path)
        if not create and not path.is_file():
            raise FileNotFoundError(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        store = Store(path, conn)
        if create and store.get_meta("schema") is None:
            store.set_meta("schema", SCHEMA_VERSION)
        return store

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row["value"])

    # ------------------------------------------------------------------ trials
    def _event(self, conn: sqlite3.Connection, trial: str | None, kind: str, data: Any, now: float) -> None:
        conn.execute(
            "INSERT INTO events (time, trial, kind, data) VALUES (?, ?, ?, ?)",
            (now, trial, kind, json.dumps(data, default=str)),
        )

    def event(self, trial: str | None, kind: str, data: Any = None) -> None:
        with self.transaction() as conn:
            self._event(conn, trial, kind, data or {}, time.time())

    def add_trial(self, row: TrialRow, event_data: Any = None) -> None:
        values = _encode(row)
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self.transaction() as conn:
            conn.execute(f"INSERT INTO trials ({cols}) VALUES ({marks})", list(values.values()))
            self._event(conn, row.name, "created", event_data or _created_event(row), row.created)

    def update_trial(self, name: str, kind: str, data: Any = None, **changes: Any) -> None:
        """Change some columns of a trial and record the event, in one transaction."""
        now = time.time()
        with self.transaction() as conn:
            if changes:
                enc = {k: _encode_value(k, v) for k, v in changes.items()}
                sets = ", ".join(f"{k} = ?" for k in enc)
                conn.execute(f"UPDATE trials SET {sets} WHERE name = ?", [*enc.values(), name])
            self._event(conn, name, kind, data if data is not None else changes, now)

    def add_metric_logs(self, trial: str, attempt: int, logs: Iterable[MetricLog]) -> None:
        now = time.time()
        rows = [(trial, attempt, log.name, log.value, now) for log in logs]
        if not rows:
            return
        with self.transaction() as conn:
            conn.executemany(
                "INSERT INTO metric_logs (trial, attempt, name, value, time) VALUES (?, ?, ?, ?, ?)", rows
            )
            self._event(conn, trial, "metrics", {log[2]: log[3] for log in rows}, now)

    def replace_metric_logs(
        self, trial: str, from_attempt: int, attempt: int, logs: Iterable[MetricLog]
    ) -> None:
        """Set a trial's observation log from ``from_attempt`` on (recorded as ``attempt``)."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute("DELETE FROM metric_logs WHERE trial = ? AND attempt >= ?", (trial, from_attempt))
            conn.executemany(
                "INSERT INTO metric_logs (trial, attempt, name, value, time) VALUES (?, ?, ?, ?, ?)",
                [(trial, attempt, log.name, log.value, now) for log in logs],
            )

    def trial(self, name: str) -> TrialRow | None:
        row = self.conn.execute("SELECT * FROM trials WHERE name = ?", (name,)).fetchone()
        return None if row is None else _decode(row)

    def trials(self) -> list[TrialRow]:
        return [_decode(r) for r in self.conn.execute("SELECT * FROM trials ORDER BY seq")]

    def metric_logs(self, trial: str, from_attempt: int = 0) -> list[MetricLog]:
        rows = self.conn.execute(
            "SELECT name, value FROM metric_logs WHERE trial = ? AND attempt >= ? ORDER BY id",
            (trial, from_attempt),
        )
        return [MetricLog(r["name"], r["value"]) for r in rows]

    def events(self, trial: str | None = None) -> list[dict[str, Any]]:
        if trial is None:
            rows = self.conn.execute("SELECT * FROM events ORDER BY id")
        else:
            rows = self.conn.execute("SELECT * FROM events WHERE trial = ? ORDER BY id", (trial,))
        return [
            {"time": r["time"], "trial": r["trial"], "kind": r["kind"], "data": json.loads(r["data"])}
            for r in rows
        ]


def _created_event(row: TrialRow) -> dict[str, Any]:
    return {"assignments": row.assignments, "labels": row.labels, "argv": row.argv, "cwd": row.cwd}


def _encode_value(key: str, value: Any) -> Any:
    if key in _JSON_FIELDS:
        return None if value is None else json.dumps(value)
    return value


def _encode(row: TrialRow) -> dict[str, Any]:
    return {f.name: _encode_value(f.name, getattr(row, f.name)) for f in fields(row)}


def _decode(row: sqlite3.Row) -> TrialRow:
    data = {k: row[k] for k in row.keys()}  # noqa: SIM118 - iterating a Row yields values
    for key in _JSON_FIELDS:
        if data.get(key) is not None:
            data[key] = json.loads(data[key])
    return TrialRow(**data)


def db_path(work_dir: str | Path) -> Path:
    return Path(work_dir) / DB_NAME


__all__ = ["DB_NAME", "Store", "TrialRow", "db_path"]
