"""SQLite journal of a search run: the source of truth for every candidate.

One file per run (``<run dir>/journal.sqlite``). Every status transition is committed at
once, so a run killed at any instant (even by SIGKILL) leaves a journal a resume can trust:
candidates found ``pending`` or ``training`` are trained again, ``trained`` ones are measured,
finished ones (``measured``, ``rejected``, ``failed``) are never touched. As in Optuna's
storage contract, finished candidates are immutable; what happens to one after the search
(a spot check, a screening, a final re-training) is a row of ``results``.

A candidate is one training exercise of one network. Its ``key`` (the network's structure
hash, the training settings its genotype carries and, when set, where its initial weights
came from and how this exercise trains) is unique, so the same experiment is never run
twice, while a survivor trained again or the same network with other inherited weights is a
new candidate. Structured fields are stored as JSON text, never pickled.

Three extension tables: ``attrs`` (namespaced strategy attributes such as ``ea4cnn.age``,
written by the engine from ``Strategy.tell``), ``artifacts`` (every file a candidate owns,
ONNX, weights ``.npz`` and later pruned or quantised variants, with its sha256) and
``results`` (spot checks, screening and final re-training, one model for all three).

Schema versions: a journal of an older version is migrated in place when opened (one
transaction per step, each step in ``MIGRATIONS``); a newer one is refused with both version
numbers, since this code cannot know what it would lose.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import platform
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Union

from hostside.errors import UserError
from hostside.processes import process_alive
from hostside.safe_io import open_sqlite, sqlite_errors

JOURNAL_FILE = "journal.sqlite"
SCHEMA_VERSION = 3
STATUSES = ("pending", "rejected", "training", "trained", "measured", "failed")
FINISHED = ("rejected", "measured", "failed")

#: Columns holding JSON text; decoded on read, encoded on write.
JSON_COLUMNS = frozenset({
    "parents", "genotype", "spec", "cost", "filter_margins", "train_metrics", "measurement", "timings",
    "exercise",
})
#: What happens to a candidate after the search's own training and measurement, each a result
#: of the one ``results`` model: a rejected candidate measured anyway, a candidate trained
#: longer before the front is chosen, a front model re-trained and measured.
RESULT_STAGES = ("spot_check", "screening", "final")

#: Version 1: the first journal (kept verbatim: new journals are created as v1, then migrated).
_SCHEMA_V1 = f"""
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


_V2_COLUMNS = (
    ("weights_path", "TEXT"), ("weights_sha256", "TEXT"), ("inherited_fraction", "REAL"), ("exercise", "TEXT"),
)
_V2 = "".join(f"ALTER TABLE candidates ADD COLUMN {name} {kind};\n" for name, kind in _V2_COLUMNS) + """
CREATE TABLE attrs (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (candidate_id, key)
);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    meta TEXT,
    created_at REAL NOT NULL,
    UNIQUE (candidate_id, kind, path)
);
INSERT INTO artifacts (candidate_id, kind, path, sha256, size_bytes, meta, created_at)
    SELECT id, 'onnx', onnx_path, onnx_sha256, -1, NULL, updated_at FROM candidates
    WHERE onnx_path IS NOT NULL AND onnx_sha256 IS NOT NULL;
"""

_V3 = f"""
CREATE TABLE results (
    candidate_id INTEGER NOT NULL REFERENCES candidates(id),
    stage TEXT NOT NULL CHECK (stage IN ({", ".join(repr(s) for s in RESULT_STAGES)})),
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    figures TEXT NOT NULL,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (candidate_id, stage)
);
"""


def _v3_results(db: "_Connection") -> None:
    """Version 3: spot checks (a column of candidates), screening (``screen.*`` attributes) and
    final models (their own table) become rows of the one ``results`` table. In Python, not
    SQL: figures journaled by Python's json may hold NaN, which SQLite's JSON functions refuse.
    Statement by statement: ``executescript`` would commit the migration's transaction."""
    db.execute(_V3)
    now = time.time()

    def add(candidate_id: int, stage: str, status: str, figures: Dict[str, Any], error: Any, at: float) -> None:
        db.execute("INSERT INTO results (candidate_id, stage, status, figures, error, updated_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)", (candidate_id, stage, status, json.dumps(figures), error, at))

    for row in db.execute("SELECT * FROM final_models").fetchall():
        figures = {k: row[k] for k in row.keys() if k not in ("candidate_id", "status", "error", "updated_at")}
        figures["test_accuracy"] = figures.pop("accuracy")
        for key in ("train_metrics", "measurement"):
            figures[key] = json.loads(figures[key]) if figures[key] is not None else None
        add(row["candidate_id"], "final", row["status"], figures, row["error"], row["updated_at"])
    for row in db.execute("SELECT id, spot_check, updated_at FROM candidates WHERE spot_check IS NOT NULL").fetchall():
        figures = json.loads(row["spot_check"])
        error = figures.pop("error", None)
        add(row["id"], "spot_check", "failed" if error else "measured", figures, error, row["updated_at"])
    screened: Dict[int, Dict[str, Any]] = {}
    for row in db.execute("SELECT candidate_id, key, value FROM attrs WHERE key LIKE 'screen.%'").fetchall():
        screened.setdefault(int(row["candidate_id"]), {})[row["key"][len("screen."):]] = json.loads(row["value"])
    for candidate_id, figures in screened.items():
        error = figures.pop("error", None)
        add(candidate_id, "screening", "failed" if error else "trained", figures, error, now)
    for statement in ("DROP TABLE final_models", "ALTER TABLE candidates DROP COLUMN spot_check",
                      "DELETE FROM attrs WHERE key LIKE 'screen.%'"):
        db.execute(statement)


#: version -> SQL (or a step in Python) that brings a journal of that version to the next one.
MIGRATIONS = {1: _V2, 2: _v3_results}


#: Below this much free space a failed SQLite write is taken for a full disk: SQLite reports
#: some of those as "disk I/O error" (a WAL or its index that cannot grow), not as "full".
LOW_SPACE_BYTES = 1024 * 1024
_SQLITE_FULL = 13
_SQLITE_IOERR = 10


class DiskFull(UserError):
    """No space left for a file hostside had to write; ``path`` is that file.

    A class of its own so that a command that can be continued (a search, with ``--resume``)
    can add how, and so that the message always names the disk to free, which a bare
    "database or disk is full" does not."""

    def __init__(self, path: Union[str, Path], detail: str = "no space left on device"):
        self.path = Path(path)
        super().__init__(f"no space left on the disk holding {self.path} ({detail}); "
                         f"free space there (df -h {self.path.parent}), then run the command again")


def free_bytes(path: Union[str, Path]) -> Optional[int]:
    """Space this user may still write on the file system holding ``path`` (None: unknown)."""
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stats = os.statvfs(folder)
    except OSError:
        return None
    blocks = stats.f_bfree if os.geteuid() == 0 else stats.f_bavail
    return blocks * stats.f_frsize


def is_disk_full(exc: BaseException, path: Union[str, Path]) -> bool:
    """Whether ``exc`` (an OSError, an SQLite error or a DiskFull already named) means the disk
    holding ``path`` is full."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary == _SQLITE_FULL or (primary is None and "disk is full" in str(exc)):
        return True
    if primary == _SQLITE_IOERR or (primary is None and "disk I/O error" in str(exc)):
        space = free_bytes(path)
        return space is not None and space < LOW_SPACE_BYTES
    return False


class RunExists(UserError):
    """The run directory already holds a journal: another run's, which nothing may touch."""


class _Connection:
    """The journal's SQLite connection, whose writes say which disk is full.

    Every write of the journal goes through ``execute``/``executescript``; without this a full
    disk surfaced as ``sqlite3.OperationalError: database or disk is full`` (or, on tmpfs,
    ``disk I/O error``) with a traceback that names no path."""

    def __init__(self, connection: sqlite3.Connection, path: Path):
        self._connection = connection
        self._path = path

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._disk_full_named():
            return self._connection.execute(sql, parameters)

    def executescript(self, script: str) -> sqlite3.Cursor:
        with self._disk_full_named():
            return self._connection.executescript(script)

    def close(self) -> None:
        self._connection.close()

    @contextlib.contextmanager
    def _disk_full_named(self) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc, self._path):
                raise DiskFull(self._path, str(exc)) from None
            raise


def _encode(column: str, value: Any) -> Any:
    if column in JSON_COLUMNS and value is not None:
        return json.dumps(value)
    return value


def _decode(row: sqlite3.Row) -> Dict[str, Any]:
    return {k: (json.loads(row[k]) if k in JSON_COLUMNS and row[k] is not None else row[k]) for k in row.keys()}


class RunStore(Protocol):
    """What the engine, the strategies' records, the reports and ``runs`` read and write of a run.

    Two backends honour it: ``Journal`` on a SQLite file (the run directory's journal, durable
    at every write) and ``Journal.in_memory()`` (the same schema in memory: tests and notebooks
    that want a search without a run directory). Values are JSON; rows come back as plain dicts
    with every column present.
    """

    def set_meta(self, key: str, value: Any) -> None: ...
    def meta(self, key: str, default: Any = None) -> Any: ...
    def add_candidate(self, **fields: Any) -> int: ...
    def update(self, candidate_id: int, **fields: Any) -> None: ...
    def has_key(self, key: str) -> bool: ...
    def candidate(self, candidate_id: int) -> Dict[str, Any]: ...
    def candidates(self, statuses: Optional[Iterable[str]] = None) -> List[Dict[str, Any]]: ...
    def counts(self) -> Dict[str, int]: ...
    def last_generation(self) -> int: ...
    def measurement_of_arch(self, arch_hash: str) -> Optional[Dict[str, Any]]: ...
    def training_exercises(self, unit: str = "exercises") -> int: ...
    def set_attrs(self, candidate_id: int, attrs: Dict[str, Any]) -> None: ...
    def attrs(self, candidate_id: int) -> Dict[str, Any]: ...
    def all_attrs(self) -> Dict[int, Dict[str, Any]]: ...
    def add_artifact(self, candidate_id: int, kind: str, path: str, sha256: str, size_bytes: int,
                     meta: Optional[Dict[str, Any]] = None) -> None: ...
    def artifacts(self, candidate_id: Optional[int] = None) -> List[Dict[str, Any]]: ...
    def set_result(self, candidate_id: int, stage: str, **fields: Any) -> None: ...
    def results(self, stage: str) -> List[Dict[str, Any]]: ...
    def close(self) -> None: ...


class Journal:
    """A run's journal; every write is its own committed transaction."""

    def __init__(self, path: Union[str, Path], connection: Optional[sqlite3.Connection] = None):
        self.path = Path(path)
        connection = connection if connection is not None else self._connect(self.path)
        connection.isolation_level = None  # autocommit, each statement is durable when it returns.
        connection.row_factory = sqlite3.Row
        self._db = _Connection(connection, self.path)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            connection.close()
            raise

    @classmethod
    def in_memory(cls) -> "Journal":
        """A journal of the current schema that lives only in this process (no file, no run
        directory): the in-memory backend of ``RunStore``, for tests and notebooks."""
        journal = cls(":memory:", sqlite3.connect(":memory:"))
        journal._initialise()
        return journal

    def _initialise(self) -> None:
        """Write the schema into an empty database (created as version 1, then migrated, so every
        journal goes through the same migrations)."""
        self._db.executescript(_SCHEMA_V1)
        self.set_meta("schema_version", 1)
        self.set_meta("created_at", time.time())
        self._migrate(1)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        """A damaged or foreign file is one line naming it (hostside.safe_io), not a traceback;
        but on a full disk SQLite cannot even read a WAL journal (its index needs space), and
        "damaged, move it aside" would then be the worst possible advice."""
        try:
            return open_sqlite(path, "search journal", create=True)
        except UserError:
            space = free_bytes(path)
            if space is not None and space < LOW_SPACE_BYTES:
                raise DiskFull(path, "SQLite cannot open it without free space") from None
            raise

    @staticmethod
    def check_new(run_dir: Union[str, Path]) -> None:
        """Refuse a run directory that already holds a journal (before any slow check)."""
        if (Path(run_dir) / JOURNAL_FILE).exists():
            raise RunExists(f"{run_dir} already holds a search run; resume it with --resume {run_dir} "
                            f"or choose another --out")

    @classmethod
    def create(cls, run_dir: Union[str, Path]) -> "Journal":
        run_dir = Path(run_dir)
        path = run_dir / JOURNAL_FILE
        cls.check_new(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        journal = cls(path)
        try:
            journal._initialise()
        except BaseException:
            journal.close()  # the caller removes the half-made file; an open connection would recreate it
            raise
        return journal

    @classmethod
    def open(cls, run_dir: Union[str, Path]) -> "Journal":
        path = Path(run_dir) / JOURNAL_FILE
        if not path.is_file():
            raise UserError(f"{run_dir} is not a search run (no {JOURNAL_FILE}); give a run directory from `hostside runs list`")
        with sqlite_errors(path, "search journal"):
            journal = cls(path)
            version = journal.meta("schema_version")
        if not isinstance(version, int) or version < 1:
            journal.close()
            raise UserError(f"{path}: journal schema {version!r} is not one hostside wrote; give a run directory "
                            f"from `hostside runs list`")
        if version > SCHEMA_VERSION:
            journal.close()
            raise UserError(f"{path}: journal schema {version} is newer than this hostside supports "
                            f"({SCHEMA_VERSION}); upgrade hostside to open it")
        journal._migrate(version)
        return journal

    def _migrate(self, version: int) -> None:
        """Bring the file from ``version`` to ``SCHEMA_VERSION``; each step is one transaction."""
        while version < SCHEMA_VERSION:
            step = MIGRATIONS[version]
            if callable(step):
                with self._transaction():
                    step(self._db)
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                                     (str(version + 1),))
            else:
                self._db.executescript(f"BEGIN IMMEDIATE;\n{step}\n"
                                       f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', "
                                       f"'{version + 1}');\nCOMMIT;")
            version += 1

    @property
    def schema_version(self) -> int:
        return int(self.meta("schema_version"))

    def close(self) -> None:
        with self._db._disk_full_named():
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

    def training_exercises(self, unit: str = "exercises") -> int:
        """Trainings the budget has paid for: every candidate that went to training (failed ones
        included, as before schema 2); with ``unit="epochs"`` the epochs each was given."""
        rows = self._db.execute(
            "SELECT train_metrics, exercise FROM candidates WHERE status IN ('trained', 'measured', 'failed')").fetchall()
        if unit == "exercises":
            return len(rows)
        total = 0
        for row in rows:
            exercise = json.loads(row["exercise"]) if row["exercise"] else {}
            metrics = json.loads(row["train_metrics"]) if row["train_metrics"] else {}
            total += int(exercise.get("epochs") or (metrics.get("config") or {}).get("epochs") or 0)
        return total

    # -- strategy attributes and artifacts ----------------------------------------------------

    def set_attrs(self, candidate_id: int, attrs: Dict[str, Any]) -> None:
        """Upsert namespaced attributes of one candidate (one transaction)."""
        now = time.time()
        with self._transaction():
            for key, value in attrs.items():
                self._db.execute("INSERT OR REPLACE INTO attrs (candidate_id, key, value, updated_at) VALUES (?, ?, ?, ?)",
                                 (candidate_id, key, json.dumps(value), now))

    def attrs(self, candidate_id: int) -> Dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM attrs WHERE candidate_id = ? ORDER BY key", (candidate_id,))
        return {r["key"]: json.loads(r["value"]) for r in rows}

    def all_attrs(self) -> Dict[int, Dict[str, Any]]:
        result: Dict[int, Dict[str, Any]] = {}
        for r in self._db.execute("SELECT candidate_id, key, value FROM attrs ORDER BY candidate_id, key"):
            result.setdefault(int(r["candidate_id"]), {})[r["key"]] = json.loads(r["value"])
        return result

    def add_artifact(self, candidate_id: int, kind: str, path: str, sha256: str, size_bytes: int,
                     meta: Optional[Dict[str, Any]] = None) -> None:
        """Record (or replace) one file of a candidate; ``path`` relative to the run directory."""
        self._db.execute(
            "INSERT OR REPLACE INTO artifacts (candidate_id, kind, path, sha256, size_bytes, meta, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (candidate_id, kind, path, sha256, int(size_bytes), json.dumps(meta) if meta is not None else None, time.time()))

    def artifacts(self, candidate_id: Optional[int] = None) -> List[Dict[str, Any]]:
        if candidate_id is None:
            rows = self._db.execute("SELECT * FROM artifacts ORDER BY candidate_id, id").fetchall()
        else:
            rows = self._db.execute("SELECT * FROM artifacts WHERE candidate_id = ? ORDER BY id", (candidate_id,)).fetchall()
        return [{**dict(r), "meta": json.loads(r["meta"]) if r["meta"] else None} for r in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- results after the search: spot checks, screening, final models -------------------------

    def set_result(self, candidate_id: int, stage: str, **fields: Any) -> None:
        """Upsert the ``stage`` result of a candidate: ``status`` and ``error`` as given (or kept),
        every other field merged into its figures (one transaction)."""
        if stage not in RESULT_STAGES:
            raise ValueError(f"result stage {stage!r} is not one of {RESULT_STAGES}")
        with self._transaction():
            row = self._db.execute("SELECT status, figures, error FROM results WHERE candidate_id = ? AND stage = ?",
                                   (candidate_id, stage)).fetchone()
            figures = json.loads(row["figures"]) if row else {}
            status = fields.pop("status", row["status"] if row else None)
            error = fields.pop("error", row["error"] if row else None)
            figures.update(fields)
            self._db.execute("INSERT OR REPLACE INTO results (candidate_id, stage, status, figures, error, updated_at) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (candidate_id, stage, status, json.dumps(figures), error, time.time()))

    def results(self, stage: str) -> List[Dict[str, Any]]:
        """Every ``stage`` result by candidate id: ``candidate_id``, ``stage``, ``status``,
        ``error``, ``updated_at`` and its figures, flat."""
        rows = self._db.execute("SELECT * FROM results WHERE stage = ? ORDER BY candidate_id", (stage,)).fetchall()
        return [{"candidate_id": r["candidate_id"], "stage": r["stage"], "status": r["status"], "error": r["error"],
                 "updated_at": r["updated_at"], **json.loads(r["figures"])} for r in rows]


def run_status(journal: Journal) -> str:
    """The journaled status, with ``interrupted`` for a run whose process is gone (killed)."""
    status = journal.meta("status", "unknown")
    process = journal.meta("process") or {}
    if status == "running" and process.get("host") == platform.node() and not process_alive(process.get("pid")):
        return "interrupted"
    return status
