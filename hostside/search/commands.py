"""``hostside search`` and ``hostside runs list|show``.

``hostside search`` with no arguments runs the embedded default (digits, this machine as the
board, accuracy and measured latency, a small budget; a few minutes on two cores). Heavy
imports stay inside the handlers so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import datetime
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hostside.errors import Interrupted, UserError
from hostside.options import add_flags, flag_values, resumable, split_list
from hostside.search.config import SearchConfig, build_config, load_toml


def register(subparsers: argparse._SubParsersAction) -> None:
    search = subparsers.add_parser(
        "search", help="hardware-aware architecture search (no arguments: the embedded digits demo)",
        description="Search for CNNs that trade accuracy against latency/energy/size on a board. "
                    "Flags override the --config file, which overrides the defaults.")
    search.add_argument("--config", type=Path, help="TOML file with search settings (keys as the flags, "
                                                     "plus [budgets], [train], [space_options], [strategy] tables)")
    search.add_argument("--out", type=Path, help="run directory (default ./runs/<UTC timestamp>)")
    add_flags(search, SearchConfig)
    search.add_argument("--seed-model", type=Path, metavar="MODEL.onnx",
                        help="start the population from a trained model (strategies with a seed_model option, e.g. ea4cnn)")
    search.add_argument("--datasets", help="narrow strategy: comma-separated dataset sources of a constraint grid")
    search.add_argument("--constraints", help="narrow strategy: comma-separated params budgets of a constraint grid")
    search.add_argument("--resume", metavar="RUN", help="continue a stopped or killed run (path or name under ./runs)")
    search.set_defaults(handler=run_search)

    runs = subparsers.add_parser("runs", help="list and inspect search runs")
    runs_sub = runs.add_subparsers(dest="runs_command", metavar="ACTION")
    runs_sub.required = True
    listing = runs_sub.add_parser("list", help="search runs under ./runs")
    listing.set_defaults(handler=list_runs)
    show = runs_sub.add_parser("show", help="one run's report and candidates")
    show.add_argument("run", help="run directory or name under ./runs")
    show.add_argument("--json", action="store_true", help="print the report and every candidate as JSON")
    show.set_defaults(handler=show_run)
    from hostside.precision.commands import register_runs_precision

    register_runs_precision(runs_sub)
    from hostside.analysis import register_runs_analyze

    register_runs_analyze(runs_sub)


def _progress(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def _deprecation_notes(file_values: Optional[Mapping[str, Any]], flags: Mapping[str, Any],
                       config: SearchConfig) -> List[str]:
    """One note per older name the user wrote (objectives, budgets, strategy fitness, strategy
    and space options); the defaults say nothing, since they are not the user's words."""
    from hostside.options import canonical_names
    from hostside.search.objectives import deprecation_note
    from hostside.search.strategies import strategy_class
    from hostside.spaces.base import registered_spaces

    values = dict(file_values or {})
    names = list(flags.get("objectives") or values.get("objectives") or [])
    names += list((values.get("budgets") or {}) if isinstance(values.get("budgets"), Mapping) else [])
    strategy = values.get("strategy_options") or values.get("strategy")
    strategy = strategy if isinstance(strategy, Mapping) else {}
    if isinstance(strategy.get("fitness"), str):
        names.append(strategy["fitness"])
    notes = [deprecation_note(n) for n in dict.fromkeys(n for n in names if isinstance(n, str))]
    notes += canonical_names(SearchConfig, values, "config key")[1]
    notes += canonical_names(strategy_class(config.strategy).Options, strategy)[1]
    space_options = values.get("space_options")
    if isinstance(space_options, Mapping) and config.space in registered_spaces():
        notes += canonical_names(registered_spaces()[config.space].Options, space_options)[1]
    return [n for n in notes if n]


def _with_seed_model(file_values: Optional[Dict[str, Any]], seed_model: Optional[Path]) -> Optional[Dict[str, Any]]:
    """``--seed-model`` becomes the strategy option ``seed_model`` (an absolute path)."""
    if seed_model is None:
        return file_values
    if not seed_model.is_file():
        raise UserError(f"--seed-model {seed_model}: no such file; give a trained model's .onnx file")
    values = dict(file_values or {})
    table = values.get("strategy")
    key = "strategy" if isinstance(table, dict) else "strategy_options"
    options = dict(table if isinstance(table, dict) else values.get("strategy_options") or {})
    options["seed_model"] = str(seed_model.resolve())
    values[key] = options
    return values


def _floats(text: str, flag: str) -> List[float]:
    try:
        return [float(part) for part in split_list(text)]
    except ValueError:
        raise UserError(f"{flag} {text!r}: give comma-separated numbers, e.g. 1e3,1e4,1e5") from None


class Terminated:
    """SIGTERM (``kill PID``, a job scheduler's time limit, ``docker stop``) stops a search the
    way Ctrl-C does: the run is journaled as interrupted and the resume command printed,
    instead of a silent exit 143 that leaves the user guessing whether anything was kept.
    The exit code stays 143, the shell's code for SIGTERM."""

    exit_code = 128 + signal.SIGTERM

    def __init__(self) -> None:
        self.received = False
        self._previous: Any = None

    def __enter__(self) -> "Terminated":
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = signal.signal(signal.SIGTERM, self._interrupt)
        return self

    def _interrupt(self, signum: int, frame: Any) -> None:
        if self.received:
            return  # a second SIGTERM while the first one is being handled changes nothing
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        if not self.received:
            return
        if isinstance(value, Interrupted):
            value.args = (str(value).replace("interrupted", "stopped by SIGTERM", 1),)
            value.exit_code = self.exit_code
        elif isinstance(value, KeyboardInterrupt):  # before the search began: nothing to resume yet
            stopped = Interrupted("stopped by SIGTERM before the search began; run the command again")
            stopped.exit_code = self.exit_code
            raise stopped from None


def run_search(args: argparse.Namespace) -> int:
    with Terminated():
        return _run_search(args)


def _run_search(args: argparse.Namespace) -> int:
    from hostside.search.run import resume_run, start_run

    flags = flag_values(args, SearchConfig)
    if args.resume:
        gates = resumable(SearchConfig)
        given = [name for name, value in flags.items() if value is not None and name not in gates]
        given += [flag for flag, value in (("--seed-model", args.seed_model), ("--datasets", args.datasets),
                                           ("--constraints", args.constraints)) if value is not None]
        if given or args.config or args.out:
            raise UserError("--resume continues a run with the settings it started with; drop the other flags "
                            f"({', '.join(given + (['--config'] if args.config else []) + (['--out'] if args.out else []))})")
        overrides = {name: flags[name] for name in gates if flags[name] is not None}
        report = resume_run(args.resume, _progress, overrides)
    else:
        file_values = _with_seed_model(load_toml(args.config) if args.config else None, args.seed_model)
        config = build_config(file_values, flags, str(args.config) if args.config else None)
        for note in _deprecation_notes(file_values, flags, config):
            print(note, file=sys.stderr)
        if args.seed_model is not None and "seed_model" not in config.strategy_options:
            raise UserError(f"--seed-model: strategy {config.strategy!r} cannot start from a model; use --strategy ea4cnn")
        if args.datasets or args.constraints:
            from hostside.search.constraint_grid import run_constraint_grid

            datasets = split_list(args.datasets or config.dataset)
            constraints = _floats(args.constraints, "--constraints") if args.constraints else []
            report = run_constraint_grid(config, datasets, constraints, args.out, _progress)
            return 0 if report["best"] else 1
        report = start_run(config, args.out, _progress)
    return 0 if report["models"] or report["nothing_meets_budgets"] else 1


def list_runs(args: argparse.Namespace) -> int:
    from hostside.journal import JOURNAL_FILE, Journal
    from hostside.journal import run_status
    from hostside.safe_io import sqlite_errors
    from hostside.run_dirs import runs_root

    root = runs_root()
    runs = sorted(p.parent for p in root.glob(f"*/{JOURNAL_FILE}")) if root.is_dir() else []
    if not runs:
        print(f"no search runs under {root}; start one with `hostside search`")
        return 0
    print(f"{'run':<24} {'status':<11} {'strategy':<8} {'dataset':<10} {'board':<10} candidates")
    damaged = 0
    for run in runs:
        try:
            journal = Journal.open(run)
            try:
                with sqlite_errors(run / JOURNAL_FILE, "search journal"):
                    config = journal.meta("config") or {}
                    counts = journal.counts()
                    status = run_status(journal)
            finally:
                journal.close()
        except UserError as exc:  # one damaged run must not hide the others
            damaged += 1
            print(f"{run.name:<24} {'damaged':<11} {exc}")
            continue
        print(f"{run.name:<24} {status:<11} {config.get('strategy', '?'):<8} "
              f"{config.get('dataset', '?'):<10} {config.get('board', '?'):<10} "
              + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return 1 if damaged else 0


def show_run(args: argparse.Namespace) -> int:
    from hostside.journal import Journal
    from hostside.search.report import build_report, candidate_summaries, markdown, warn_about_onnx_files
    from hostside.safe_io import sqlite_errors
    from hostside.run_dirs import find_run

    run_dir = find_run(args.run)
    journal = Journal.open(run_dir)
    try:
        with sqlite_errors(journal.path, "search journal"):
            report = build_report(run_dir, journal)
        warn_about_onnx_files(report)
        summaries = genotype_summaries(journal)
        if args.json:
            report["candidates"] = with_genotype_summaries(with_lineage(candidate_summaries(journal), journal),
                                                           summaries)
            print(json.dumps(report, indent=1))
        else:
            print(markdown(report))
            if any(summaries.values()):
                print(summary_table(journal, summaries))
    finally:
        journal.close()
    return 0



def genotype_summaries(journal: Any) -> Dict[int, Dict[str, Any]]:
    """Each candidate's ``space.genotype_summary`` (NB201: its arch string); empty where the
    space gives none or cannot be rebuilt (a journal from a hostside without that space)."""
    from hostside.spaces import make_space

    config = journal.meta("config") or {}
    data = journal.meta("dataset") or {}
    try:
        space = make_space(config["space"], tuple(data["input_shape"]), data["num_classes"],
                           **(config.get("space_options") or {}))
    except (KeyError, UserError):
        return {}
    out: Dict[int, Dict[str, Any]] = {}
    for row in journal.candidates():
        try:
            out[row["id"]] = dict(space.genotype_summary(row["genotype"]))
        except Exception:  # noqa: BLE001 - a genotype the space no longer reads has no summary
            out[row["id"]] = {}
    return out


def with_genotype_summaries(entries: List[Dict[str, Any]], summaries: Dict[int, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The summary fields beside each candidate (flat where no other key has the name, and as
    ``genotype_summary``)."""
    out = []
    for entry in entries:
        summary = summaries.get(entry["id"], {})
        out.append({**{k: v for k, v in summary.items() if k not in entry}, **entry, "genotype_summary": summary})
    return out


def summary_table(journal: Any, summaries: Dict[int, Dict[str, Any]]) -> str:
    """A markdown table of every candidate with its summary fields (what `runs show` adds)."""
    fields = list(dict.fromkeys(k for s in summaries.values() for k in s))
    lines = ["## Candidates", "", "| id | status | val accuracy | latency ms | " + " | ".join(fields) + " |",
             "|---|---|---|---|" + "---|" * len(fields)]
    for row in journal.candidates():
        summary = summaries.get(row["id"], {})
        acc = "" if row["val_accuracy"] is None else f"{row['val_accuracy']:.4f}"
        latency = "" if row["latency_ms"] is None else f"{row['latency_ms']:.4g}"
        lines.append(f"| {row['id']} | {row['status']} | {acc} | {latency} | "
                     + " | ".join(f"`{summary[k]}`" if k in summary else "" for k in fields) + " |")
    return "\n".join(lines)


def with_lineage(summaries: List[Dict[str, Any]], journal: Any) -> List[Dict[str, Any]]:
    """Add what follows a lineage from the outside: parents (already there), the strategy's
    attributes (namespaced, and flattened to ``age``, ``species``, ``fitness``... where no other
    key has that name), the inherited fraction and the weights file with its hash."""
    rows = {r["id"]: r for r in journal.candidates()}
    attrs = journal.all_attrs()
    result = []
    for summary in summaries:
        row = rows[summary["id"]]
        own = {k: v for k, v in attrs.get(summary["id"], {}).items() if not k.startswith("engine.")}
        entry = {**summary, "parents": row["parents"], "attrs": own,
                 "inherited_fraction": row.get("inherited_fraction"), "weights_path": row.get("weights_path"),
                 "weights_sha256": row.get("weights_sha256"),
                 "weights_from": (row.get("exercise") or {}).get("weights_from", []),
                 "epochs": (row.get("exercise") or {}).get("epochs")}
        short = {}
        for key, value in own.items():
            name = key.split(".", 1)[-1]
            short[name] = None if name in short else value
        entry.update({k: v for k, v in short.items() if k not in entry})
        result.append(entry)
    return result
