"""A whole search run, start or resume: the Python API behind ``hostside search``.

``start_run(config, run_dir)`` journals the config, the data split and provenance, then
runs; ``resume_run(run_dir)`` reads them back and continues. Both go through ``execute``:
search, spot checks of the filter, re-training of the front, report. A notebook calls these
the same way the CLI does.

Run directories live under ``./runs/<UTC timestamp>`` (relative to the current directory,
like other experiment trackers) unless ``--out`` names one; ``hostside runs list`` looks
there, and ``--resume`` / ``runs show`` accept either a path or a name under ``./runs``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

from hostside import __version__
from hostside.errors import Interrupted, UserError
from hostside.journal import JOURNAL_FILE, Journal
from hostside.run_lock import hold_run_lock
from hostside.search.config import SearchConfig
from hostside.search.engine import SearchEngine
from hostside.search.executors import TrainingExecutor
from hostside.search.filtering import PreTrainingFilter, open_calibration
from hostside.search.final import retrain_front, spot_check
from hostside.search.scheduler import run_search
from hostside.search.screening import screen_best
from hostside.search.strategies import strategy_class
from hostside.spaces import make_space

RUNS_DIR = "runs"
SPLIT_FILE = "split.json"
CONFIG_FILE = "config.json"

Progress = Callable[[str], None]


def runs_root() -> Path:
    return Path.cwd() / RUNS_DIR


def new_run_dir() -> Path:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    path = runs_root() / stamp
    suffix = 1
    while path.exists():
        suffix += 1
        path = runs_root() / f"{stamp}-{suffix}"
    return path


def find_run(name: Union[str, Path]) -> Path:
    """A run directory from a path or a name under ``./runs``."""
    for candidate in (Path(name), runs_root() / str(name)):
        if (candidate / JOURNAL_FILE).is_file():
            return candidate
    raise UserError(f"no search run at {name!r} (looked for {JOURNAL_FILE} there and under {runs_root()}); "
                    f"list runs with `hostside runs list`")


def start_run(config: SearchConfig, run_dir: Optional[Path] = None, progress: Progress = print) -> Dict[str, Any]:
    """Create a run directory and journal, then run the search; returns the report."""
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import make_split

    dataset = load_dataset(config.dataset)  # fails with a clear line before anything is written
    make_space(config.space, dataset.input_shape, dataset.num_classes, **config.space_options)
    from hostside.boards import inventory

    for name in config.board_names:  # an unknown board is refused before a run directory exists
        if name != inventory.LOCAL:
            inventory.get(name)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    journal = Journal.create(run_dir)
    try:
        with hold_run_lock(run_dir):
            journal.set_meta("config", config.to_dict())
            journal.set_meta("status", "running")
            journal.set_meta("dataset", {"name": dataset.name, "source": dataset.source,
                                         "sha256": dataset.fingerprint(), "input_shape": list(dataset.input_shape),
                                         "num_classes": dataset.num_classes})
            (run_dir / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=1) + "\n")
            fractions = strategy_class(config.strategy).split_fractions
            split = make_split(dataset, config.seed) if fractions is None else make_split(dataset, config.seed, *fractions)
            split.save(run_dir / SPLIT_FILE)
            progress(f"search run {run_dir}")
            return execute(run_dir, journal, config, progress)
    finally:
        journal.close()


def resume_run(run_dir: Union[str, Path], progress: Progress = print) -> Dict[str, Any]:
    """Continue a run that was stopped or killed, with the settings it was started with."""
    run_dir = find_run(run_dir)
    with hold_run_lock(run_dir):  # before anything is marked running: a second resume is refused
        journal = Journal.open(run_dir)
        try:
            config = SearchConfig.from_dict(journal.meta("config"), f"{run_dir}/{JOURNAL_FILE}")
            counts = journal.counts()
            progress(f"resuming search run {run_dir}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
            journal.set_meta("status", "running")
            return execute(run_dir, journal, config, progress)
        finally:
            journal.close()


def execute(run_dir: Path, journal: Journal, config: SearchConfig, progress: Progress) -> Dict[str, Any]:
    from hostside.boards import BoardPool, open_board
    from hostside.report import write_report
    from hostside.train.splits import Split

    data = journal.meta("dataset")
    space = make_space(config.space, tuple(data["input_shape"]), data["num_classes"], **config.space_options)
    split_dict = Split.load(run_dir / SPLIT_FILE).to_dict()
    boards = [open_board(name) for name in config.board_names]
    pool = BoardPool(boards)
    pool.check_same_kind()
    calibration = open_calibration(config, boards[0], progress)
    from hostside.calibration.drift import drift_gate

    judges_latency = config.use_filter and "latency_ms" in config.budgets
    calibration_record = drift_gate(boards[0], calibration, config.drift_tolerance if judges_latency else 0, progress)
    candidate_filter = PreTrainingFilter(config, calibration)
    journal.set_meta("provenance", {**provenance(boards[0], calibration), "calibration": calibration_record})
    journal.set_meta("process", {"host": platform.node(), "pid": os.getpid()})
    started = time.perf_counter()
    try:
        with TrainingExecutor(config.workers, config.cluster, config.dataset, data.get("sha256")) as executor:
            progress(f"training on {executor.describe()} ({config.policy}); measuring on "
                     f"{', '.join(config.board_names)}")
            engine = SearchEngine(run_dir, journal, config, space, split_dict, pool, candidate_filter, progress)
            run_search(engine, executor, config.policy)
            spot_check(journal, config, run_dir, pool, progress)
            screen_best(journal, config, space, split_dict, executor, progress)
            retrain_front(journal, config, space, run_dir, split_dict, executor, pool, progress)
    except KeyboardInterrupt:
        journal.set_meta("status", "interrupted")
        finished = sum(journal.counts()[s] for s in ("measured", "rejected", "failed"))
        raise Interrupted(f"interrupted; {finished} finished candidates are saved: resume with "
                          f"`hostside search --resume {run_dir}`") from None
    finally:
        journal.set_meta("search_seconds", journal.meta("search_seconds", 0.0) + time.perf_counter() - started)
    journal.set_meta("status", "finished")
    report = write_report(run_dir, journal)
    progress(summary_line(run_dir, report))
    return report


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
    return (f"done: {len(report['models'])} Pareto model(s) in {run_dir}/pareto.json; best trade-off "
            f"{best['onnx']} (accuracy {best['accuracy']:.3f}, {best['latency_ms']:.4f} ms)")
