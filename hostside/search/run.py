"""A whole search run, start or resume: the Python API behind ``hostside search``.

``start_run(config, run_dir)`` journals the config, the data split and provenance, then
runs; ``resume_run(run_dir)`` reads them back and continues. Both go through ``execute``:
search, spot checks of the filter, re-training of the front, report. A notebook calls these
the same way the CLI does.

Run directories live under ``./runs/<UTC timestamp>`` (relative to the current directory,
like other experiment trackers) unless ``--out`` names one; ``hostside runs list`` looks
there, and ``--resume`` / ``runs show`` accept either a path or a name under ``./runs``.

A table run (``--table FILE.csv``, ``hostside.search.table_run``) has no dataset, split, board
or calibration: its "dataset" record describes the table (input shape and classes from the
``[table]`` section) and the table's sha256 is journaled, so a resume refuses a changed file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

from hostside import __version__
from hostside.errors import Interrupted, UserError
from hostside.journal import JOURNAL_FILE, DiskFull, Journal, RunExists, is_disk_full
from hostside.options import resumable
from hostside.calibration.foreign import foreign_warning
from hostside.run_dirs import find_run, new_run_dir
from hostside.run_lock import LOCK_FILE, hold_run_lock
from hostside.search.config import SearchConfig
from hostside.search.engine import SearchEngine
from hostside.search.executors import TrainingExecutor
from hostside.search.filtering import PreTrainingFilter, open_calibration
from hostside.search.journal_cache import CachedJournal
from hostside.search.final import retrain_front, spot_check
from hostside.search.scheduler import run_search
from hostside.search.screening import screen_best
from hostside.search.strategies import strategy_class
from hostside.search.table_run import (TABLE_META, TableEvaluation, TableExecutor, check_space, final_from_table,
                                       open_table, screen_from_table, table_provenance)
from hostside.spaces import make_space

SPLIT_FILE = "split.json"
CONFIG_FILE = "config.json"

Progress = Callable[[str], None]


@dataclasses.dataclass
class Gate:
    """The boards and calibration a run measures with, checked (drift included) before the
    run writes anything: a start refused by the drift check leaves no run directory behind."""

    boards: List[Any]
    pool: Any
    calibration: Any
    calibration_record: Dict[str, Any]


def open_gate(config: SearchConfig, progress: Progress) -> Gate:
    """Open the run's boards and calibration and check the board against it (``drift_gate``)."""
    from hostside.boards import BoardPool, open_board
    from hostside.calibration.drift import drift_gate

    boards = [open_board(name) for name in config.board_names]
    pool = BoardPool(boards)
    pool.check_same_kind()
    calibration = open_calibration(config, boards[0], progress)
    foreign = foreign_warning(calibration, boards[0].info())
    if foreign:
        progress(f"warning: {foreign}")
    judges_latency = config.use_filter and "latency_ms" in config.budgets
    record = drift_gate(boards[0], calibration, config.drift_tolerance if judges_latency else 0, progress)
    return Gate(boards, pool, calibration, record)


class StartFiles:
    """What a new run's start creates, so a start that fails before the search begins is
    undone and the same command can simply be run again (instead of "already holds a search
    run"). Only files the start made go: a user's own files in a pre-existing ``--out`` stay."""

    NAMES = (JOURNAL_FILE, f"{JOURNAL_FILE}-wal", f"{JOURNAL_FILE}-shm", f"{JOURNAL_FILE}-journal", LOCK_FILE,
             CONFIG_FILE, SPLIT_FILE)

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.top_made = next((p for p in reversed([run_dir, *run_dir.parents]) if not p.exists()), None)
        self.existing = {name for name in self.NAMES if (run_dir / name).exists()}

    def undo(self) -> None:
        if self.top_made is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            folder = self.run_dir.parent
            while folder != self.top_made.parent and _rmdir_if_empty(folder):
                folder = folder.parent
            return
        for name in self.NAMES:
            if name not in self.existing:
                with contextlib.suppress(OSError):
                    (self.run_dir / name).unlink()


def _rmdir_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def start_run(config: SearchConfig, run_dir: Optional[Path] = None, progress: Progress = print,
              reports: bool = True) -> Dict[str, Any]:
    """Create a run directory and journal, then run the search; returns the report. ``reports``
    False (a benchmark running hundreds of table searches) writes none and returns the counts."""
    if config.table:
        return _start_table_run(config, run_dir, progress, reports)
    from hostside.train.datasets import load_dataset

    dataset = load_dataset(config.dataset)  # fails with a clear line before anything is written
    make_space(config.space, dataset.input_shape, dataset.num_classes, **config.space_options)
    from hostside.boards import inventory

    for name in config.board_names:  # an unknown board is refused before a run directory exists
        if name != inventory.LOCAL:
            inventory.get(name)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    Journal.check_new(run_dir)  # said now, not after a drift check of a minute
    gate = open_gate(config, progress)

    def write_start(journal: Journal) -> str:
        _journal_start(run_dir, journal, config, {
            "name": dataset.name, "source": dataset.source, "sha256": dataset.fingerprint(),
            "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes})
        from hostside.train.splits import make_split

        fractions = strategy_class(config.strategy).split_fractions
        split = make_split(dataset, config.seed) if fractions is None else make_split(dataset, config.seed, *fractions)
        split.save(run_dir / SPLIT_FILE)
        return f"search run {run_dir}"

    return _new_run(run_dir, config, progress, gate, reports, write_start)


def _start_table_run(config: SearchConfig, run_dir: Optional[Path], progress: Progress,
                     reports: bool) -> Dict[str, Any]:
    """``start_run`` for a table run: the table and the space are checked before anything is written."""
    import numpy as np

    if config.table.get("path"):  # absolute in the journal: a resume from elsewhere finds the same file
        config = dataclasses.replace(config, table={**config.table, "path": str(Path(config.table["path"]).resolve())})
    table = open_table(config)
    settings = table.settings
    space = make_space(config.space, settings.input_shape, settings.num_classes, **config.space_options)
    check_space(table, space, np.random.default_rng(config.seed))
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    Journal.check_new(run_dir)

    def write_start(journal: Journal) -> str:
        _journal_start(run_dir, journal, config, {
            "name": "table", "source": str(table.path), "sha256": table.sha256,
            "input_shape": list(settings.input_shape), "num_classes": settings.num_classes})
        journal.set_meta(TABLE_META, table.describe())
        return f"search run {run_dir} (table {table.path}, {len(table.rows)} rows)"

    return _new_run(run_dir, config, progress, None, reports, write_start)


def _new_run(run_dir: Path, config: SearchConfig, progress: Progress, gate: Optional[Gate], reports: bool,
             write_start: Callable[[Journal], str]) -> Dict[str, Any]:
    """A new journal in ``run_dir``, the run's start written into it (``write_start`` returns the
    line to show), then the search, all under the run lock. A start that fails before the search
    began removes what it created, and only that."""
    files = StartFiles(run_dir)
    began: List[bool] = []
    try:
        journal = Journal.create(run_dir)
        try:
            with hold_run_lock(run_dir):
                progress(write_start(journal))
                return execute(run_dir, journal, config, progress, gate, began, reports)
        finally:
            journal.close()
    except BaseException as exc:
        if not began and not isinstance(exc, RunExists):  # RunExists: another process's run, now
            files.undo()
        raise


def _journal_start(run_dir: Path, journal: Journal, config: SearchConfig, dataset: Dict[str, Any]) -> None:
    """The settings and the data's fingerprint a resume reads back."""
    journal.set_meta("config", config.to_dict())
    journal.set_meta("status", "running")
    journal.set_meta("dataset", dataset)
    (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1) + "\n")


def resume_run(run_dir: Union[str, Path], progress: Progress = print,
               overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Continue a run that was stopped or killed, with the settings it was started with;
    ``overrides`` may only give anew the settings that only gate whether a search may start or go
    on (``resumable`` ones: a wider drift tolerance once the drift is understood), for this resume
    only, not recorded."""
    gates = resumable(SearchConfig)
    unknown = sorted(set(overrides or {}) - set(gates))
    if unknown:
        raise UserError(f"--resume keeps the settings a run started with; only {', '.join(gates)} may be "
                        f"given anew, not {', '.join(unknown)}")
    run_dir = find_run(run_dir)
    with hold_run_lock(run_dir):  # before anything is marked running: a second resume is refused
        journal = Journal.open(run_dir)
        try:
            config = SearchConfig.from_dict(journal.meta("config"), f"{run_dir}/{JOURNAL_FILE}")
            if overrides:
                config = dataclasses.replace(config, **overrides)
            counts = journal.counts()
            progress(f"resuming search run {run_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
            gate = None if config.table else open_gate(config, progress)  # a refused resume leaves the run as it was
            journal.set_meta("status", "running")
            return execute(run_dir, journal, config, progress, gate)
        finally:
            journal.close()


def execute(run_dir: Path, journal: Journal, config: SearchConfig, progress: Progress,
            gate: Optional[Gate] = None, began: Optional[List[bool]] = None, reports: bool = True) -> Dict[str, Any]:
    """Search, spot checks, screening, re-training of the front and report; ``began`` gets
    an entry once the search has started (from then on the run is one to resume)."""
    from hostside.search.report import write_report
    from hostside.train.splits import Split

    data = journal.meta("dataset")
    space = make_space(config.space, tuple(data["input_shape"]), data["num_classes"], **config.space_options)
    if config.table:
        table = open_table(config, journal)
        search = functools.partial(_search_table, run_dir, journal, config, space, table, progress)
        journal.set_meta("provenance", table_provenance(table))
    else:
        gate = gate or open_gate(config, progress)
        split_dict = Split.load(run_dir / SPLIT_FILE).to_dict()
        search = functools.partial(_search, run_dir, journal, config, space, split_dict, gate.pool,
                                   PreTrainingFilter(config, gate.calibration), progress)
        journal.set_meta("provenance", {**provenance(gate.boards[0], gate.calibration),
                                        "calibration": gate.calibration_record})
    journal.set_meta("process", {"host": platform.node(), "pid": os.getpid()})
    started = time.perf_counter()
    if began is not None:
        began.append(True)
    try:
        search()
    except BaseException as exc:
        _add_search_seconds(journal, time.perf_counter() - started, quietly=True)
        stopped = _stopped(run_dir, journal, exc)
        if stopped is exc:
            raise
        raise stopped from None
    _add_search_seconds(journal, time.perf_counter() - started)
    journal.set_meta("status", "finished")
    if not reports:
        return {"run": str(run_dir), "counts": journal.counts()}
    report = write_report(run_dir, journal)
    progress(summary_line(run_dir, report))
    return report


def _search(run_dir: Path, journal: Journal, config: SearchConfig, space: Any, split_dict: Dict[str, Any],
            pool: Any, candidate_filter: PreTrainingFilter, progress: Progress) -> None:
    with TrainingExecutor(config.workers, config.cluster, config.dataset,
                          (journal.meta("dataset") or {}).get("sha256")) as executor:
        progress(f"training on {executor.describe()} ({config.policy}); measuring on "
                 f"{', '.join(config.board_names)}")
        engine = SearchEngine(run_dir, journal, config, space, split_dict, pool, candidate_filter, progress)
        run_search(engine, executor, config.policy)
        spot_check(journal, config, run_dir, pool, progress)
        screen_best(journal, config, space, split_dict, executor, progress)
        retrain_front(journal, config, space, run_dir, split_dict, executor, pool, progress)


def _search_table(run_dir: Path, journal: Journal, config: SearchConfig, space: Any, table: Any,
                  progress: Progress) -> None:
    """The search with the table in place of training and board; screening and the final front
    are look-ups (no spot checks: without a calibration the filter rejects on exact costs only)."""
    from hostside.search.final import front_candidates
    from hostside.search.screening import screening_pool

    journal = CachedJournal(journal)  # the engine's view, shared by the table's cost look-ups
    evaluation = TableEvaluation(table, space, journal, progress)
    with TableExecutor(evaluation, config.workers) as executor:
        progress(f"evaluating on {executor.describe()} ({config.policy})")
        # Without a calibration the filter judges the exact costs only; the table's latency is
        # judged against the budget once looked up, as a measurement is.
        exact = dataclasses.replace(config, budgets={k: v for k, v in config.budgets.items() if k != "latency_ms"})
        engine = SearchEngine(run_dir, journal, config, space, {}, None, PreTrainingFilter(exact, None), progress,
                              table=evaluation)
        run_search(engine, executor, config.policy)
        if config.screen_models:
            screen_from_table(journal, config, evaluation, screening_pool(journal, config, space), progress)
        final_from_table(journal, config, evaluation, front_candidates(journal, config), progress)
    if evaluation.skipped:
        progress(f"the table lacked {len(evaluation.skipped)} proposed architecture(s); skipped (table.missing)")


def _add_search_seconds(journal: Journal, seconds: float, quietly: bool = False) -> None:
    """Add to the run's search time; ``quietly`` while another failure is on its way out (a
    full disk fails this write too, and must not hide what stopped the run)."""
    try:
        journal.set_meta("search_seconds", journal.meta("search_seconds", 0.0) + seconds)
    except (UserError, OSError, sqlite3.Error):
        if not quietly:
            raise


def _stopped(run_dir: Path, journal: Journal, exc: BaseException) -> BaseException:
    """What a search stopped by ``exc`` raises: Ctrl-C (or SIGTERM, turned into it by the
    command) and a full disk say how to resume; anything else goes on unchanged."""
    resume = f"`hostside search --resume {run_dir}`"
    if isinstance(exc, KeyboardInterrupt):
        journal.set_meta("status", "interrupted")
        finished = sum(journal.counts()[s] for s in ("measured", "rejected", "failed"))
        return Interrupted(f"interrupted; {finished} finished candidates are saved: resume with {resume}")
    if is_disk_full(exc, run_dir):
        path = exc.path if isinstance(exc, DiskFull) else Path(getattr(exc, "filename", None) or run_dir)
        with contextlib.suppress(UserError, OSError, sqlite3.Error):
            journal.set_meta("status", "interrupted")
        return UserError(f"no space left on the disk holding {path}; free space there (df -h {run_dir}), "
                         f"then resume with {resume}: what is finished is kept")
    return exc


def provenance(board: Any, calibration: Any) -> Dict[str, Any]:
    """Where and under what load the figures were taken (other work on a shared host shows here)."""
    return {
        "hostside_version": __version__,
        "host": platform.node(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "board": board.info(),
        "calibration": getattr(calibration, "name", None) or type(calibration).__name__,
        "started_at": time.time(),
    }


def summary_line(run_dir: Path, report: Dict[str, Any]) -> str:
    if report["nothing_meets_budgets"]:
        return (f"no candidate meets the budgets; the {len(report['nearest_misses'])} nearest misses are in "
                f"{run_dir}/report.md")
    best = report["best_tradeoff"]
    if best is None:
        return f"no model was measured; see {run_dir}/report.md"
    which = best["onnx"] or f"candidate {best['id']}"
    test = best.get("test_accuracy")
    accuracy = "test accuracy not measured" if test is None else f"test accuracy {test:.3f}"
    return (f"done: {len(report['models'])} Pareto model(s) in {run_dir}/pareto.json; best trade-off "
            f"{which} ({accuracy}, {best['latency_ms']:.4f} ms)")
