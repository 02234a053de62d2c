"""SQLite journal of a search run: the source of truth for every candidate.

One file per run (``<run dir>/journal.sqlite``). Every status transition is committed at
once, so a run killed at any instant (even by SIGKILL) leaves a journal a resume can trust:
candidates found ``pending`` or ``training`` are trained again, ``trained`` ones are measured,
finished ones (``measured``, ``rejected``, ``failed``) are never touched. As in Optuna's
storage contract, finished candidates are immutable except for the annotations the report
adds (spot checks of rejected candidates).

A candidate's ``key`` (the ArchSpec content hash plus the training settings its genotype
carries) is unique, so the same network is never trained twice in a run. Structured
fields are stored as JSON text, never pickled.
"""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from hostside.errors import UserError

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = 1
STATUSES = ("pending", "rejected", "training", "trained", "measured", "failed")
FINISHED = ("rejected", "measured", "failed")

#: Columns holding JSON text; decoded on read, encoded on write.
JSON_COLUMNS = frozenset({
    "parents", "genotype", "spec", "cost", "filter_margins", "train_metrics", "measurement", "timings",
    "spot_check",
})

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    arch_hash TEXT NOT NULL,
    generation INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    operator TEXT NOT NULL,
    parents TEXT NOT NULL,
    genotype TEXT NOT NULL,
    spec TEXT NOT NULL,
    cost TEXT NOT NULL,
    params INTEGER NOT NULL,
    macs INTEGER NOT NULL,
    activation_bytes INTEGER NOT NULL,
    predicted_latency_ms REAL,
    filter_accepted INTEGER NOT NULL,
    filter_reason TEXT NOT NULL,
    filter_margins TEXT,
    accuracy REAL,
    val_accuracy REAL,
    train_seconds REAL,
    train_metrics TEXT,
    onnx_path TEXT,
    onnx_sha256 TEXT,
    latency_ms REAL,
    energy_mj REAL,
    measurement TEXT,
    timings TEXT,
    error TEXT,
    spot_check TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS final_models (
    candidate_id INTEGER PRIMARY KEY REFERENCES candidates(id),
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    accuracy REAL,
    val_accuracy REAL,
    train_seconds REAL,
    train_metrics TEXT,
    onnx_path TEXT,
    onnx_sha256 TEXT,
    latency_ms REAL,
    energy_mj REAL,
    measurement TEXT,
    error TEXT,
    updated_at REAL NOT NULL
);
"""


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return json.dumps(value)
    return value


def _decode(row: sqlite3.Row) -> Dict[str, Any]:
    return {k: (json.loads(row[k]) if k in JSON_COLUMNS and row[k] is not None else row[k]) for k in row.keys()}


class Journal:
    """A run's journal; every write is its own committed transaction."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        # isolation_level=None: autocommit, each statement is durable when it returns.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")

    @classmethod
    def create(cls, run_dir: Union[str, Path]) -> "Journal":
        run_dir = Path(run_dir)
        path = run_dir / JOURNAL_FILE
        if path.exists():
            raise UserError(f"{run_dir} already holds a search run; resume it with --resume {run_dir} or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        journal = cls(path)
        journal._db.executescript(_SCHEMA)
        journal.set_meta("schema_version", SCHEMA_VERSION)
        journal.set_meta("created_at", time.time())
        return journal

    @classmethod
    def open(cls, run_dir: Union[str, Path]) -> "Journal":
        path = Path(run_dir) / JOURNAL_FILE
        if not path.is_file():
            raise UserError(f"{run_dir} is not a search run (no {JOURNAL_FILE}); give a run directory from `hostside runs list`")
        journal = cls(path)
        version = journal.meta("schema_version")
        if version != SCHEMA_VERSION:
            journal.close()
            raise UserError(f"{path}: journal schema {version!r} is not supported (this is {SCHEMA_VERSION}); use the hostside version that wrote it")
        return journal

    def close(self) -> None:
        self._db.close()

    # -- run metadata -----------------------------------------------------------------------

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    # -- candidates -------------------------------------------------------------------------

    def add_candidate(self, **fields: Any) -> int:
        """Insert a new candidate and return its id; its ``key`` must not exist yet."""
        now = time.time()
        fields = {**fields, "created_at": now, "updated_at": now}
        columns = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        cursor = self._db.execute(f"INSERT INTO candidates ({columns}) VALUES ({marks})",
                                  [_encode(k, v) for k, v in fields.items()])
        return int(cursor.lastrowid)

    def update(self, candidate_id: int, **fields: Any) -> None:
        fields = {**fields, "updated_at": time.time()}
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(f"UPDATE candidates SET {assignments} WHERE id = ?",
                         [_encode(k, v) for k, v in fields.items()] + [candidate_id])

    def has_key(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM candidates WHERE key = ?", (key,)).fetchone() is not None

    def candidate(self, candidate_id: int) -> Dict[str, Any]:
        row = self._db.execute("SELECT * FROM candidates WHERE id = ?", (candidate_id,)).fetchone()
        if row is None:
            raise KeyError(candidate_id)
        return _decode(row)

    def candidates(self, statuses: Optional[Iterable[str]] = None) -> List[Dict[str, Any]]:
        if statuses is None:
            rows = self._db.execute("SELECT * FROM candidates ORDER BY id").fetchall()
        else:
            wanted = list(statuses)
            marks = ", ".join("?" for _ in wanted)
            rows = self._db.execute(f"SELECT * FROM candidates WHERE status IN ({marks}) ORDER BY id", wanted).fetchall()
        return [_decode(r) for r in rows]

    def counts(self) -> Dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM candidates GROUP BY status").fetchall()
        counts = {s: 0 for s in STATUSES}
        counts.update({r["status"]: r["n"] for r in rows})
        return counts

    def last_generation(self) -> int:
        row = self._db.execute("SELECT MAX(generation) AS g FROM candidates").fetchone()
        return -1 if row["g"] is None else int(row["g"])

    def measurement_of_arch(self, arch_hash: str) -> Optional[Dict[str, Any]]:
        """A finished measurement of the same network, if any (latency does not depend on weights)."""
        row = self._db.execute(
            "SELECT measurement FROM candidates WHERE arch_hash = ? AND status = 'measured' LIMIT 1", (arch_hash,)
        ).fetchone()
        return json.loads(row["measurement"]) if row else None

    # -- re-trained Pareto models -------------------------------------------------------------

    def set_final(self, candidate_id: int, **fields: Any) -> None:
        fields = {**fields, "updated_at": time.time()}
        existing = self._db.execute("SELECT 1 FROM final_models WHERE candidate_id = ?", (candidate_id,)).fetchone()
        if existing:
            assignments = ", ".join(f"{k} = ?" for k in fields)
            self._db.execute(f"UPDATE final_models SET {assignments} WHERE candidate_id = ?",
                             [_encode(k, v) for k, v in fields.items()] + [candidate_id])
        else:
            fields["candidate_id"] = candidate_id
            columns = ", ".join(fields)
            marks = ", ".join("?" for _ in fields)
            self._db.execute(f"INSERT INTO final_models ({columns}) VALUES ({marks})",
                             [_encode(k, v) for k, v in fields.items()])

    def finals(self) -> List[Dict[str, Any]]:
        rows = self._db.execute("SELECT * FROM final_models ORDER BY candidate_id").fetchall()
        return [_decode(r) for r in rows]


def run_status(journal: Journal) -> str:
    """The journaled status, with ``interrupted`` for a run whose process is gone (killed)."""
    status = journal.meta("status", "unknown")
    process = journal.meta("process") or {}
    if status == "running" and process.get("host") == platform.node() and not _alive(process.get("pid")):
        return "interrupted"
    return status


def _alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
