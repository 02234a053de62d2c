"""The search engine: ask -> analytic cost -> filter -> train -> export -> measure -> tell.

The strategy proposes (``ask``) and learns (``tell``) over frozen ``Candidate`` records; the
space decodes genotypes to ArchSpecs; each proposal's key (the network's structure hash,
the training settings its genotype carries and, when set, where its weights come from and
how this exercise trains) deduplicates it against the journal; the pre-training filter
rejects those that cannot meet the budgets; the rest are trained on the executor (from
weights inherited by node id when the proposal asks for it), then measured on the board.
The scheduler (``hostside.search.scheduler``) decides the order: generational or
steady-state. The journal is written at every transition, in ``finally`` blocks, so a
killed run resumes: ``pending``/``training`` candidates are trained again, ``trained`` ones
measured, finished ones never touched, and finished ones the strategy was not yet told
about are told.

Measurements are taken only while no training runs on a board that shares this host (the
``local`` board, emulated boards on loopback): the trainings would share the CPU with the
model being timed and inflate its latency. A network measured once is not measured again
(latency does not depend on the weights), so retraining a survivor costs no board time.

A table run (``--table``, ``hostside.search.table_run``) passes a ``TableEvaluation``: the
engine then asks it whether a proposal is known, ships look-up tasks instead of trainings
and takes the table's latency instead of a board's; everything else is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec, SpecError
from hostside.errors import UserError
from hostside.journal import Journal, is_disk_full
from hostside.search.candidate import Candidate, Proposal, record_from_row
from hostside.search.cluster import ClusterLost
from hostside.search.config import SearchConfig
from hostside.search.executors import TrainingExecutor
from hostside.search.filtering import PreTrainingFilter
from hostside.search.journal_cache import CachedJournal
from hostside.search.objectives import reads_board
from hostside.search.pareto import pareto_front, violation
from hostside.search.stop_rules import rule_metrics
from hostside.search.terminations import EvaluationBudget, terminations_for
from hostside.search.strategies import AskContext, StrategySettings, make_strategy
from hostside.search.table_run import TableEvaluation
from hostside.search.tasks import training_task
from hostside.spaces.base import SearchSpace

#: How many proposals the engine draws per open slot before it decides the space (under
#: these budgets) has no new network left to offer.
ASK_ATTEMPTS_PER_SLOT = 50
CANDIDATES_DIR = "candidates"
#: Engine bookkeeping attribute: the strategy has been told about this candidate.
TOLD = "engine.told"
UNFINISHED = ("pending", "training")

Progress = Callable[[str], None]


def candidate_key(arch_hash: str, training: Mapping[str, Any], exercise: Mapping[str, Any]) -> str:
    """The experiment's identity: network, genotype training settings and, when any is set,
    the lineage (inherited weights) and this exercise's settings. A fresh training of the same
    network is the same experiment, run once; a retraining or other inherited weights are not."""
    text = arch_hash + json.dumps(dict(training), sort_keys=True)
    if exercise:
        text += json.dumps(dict(exercise), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def measurement_fields(result: Dict[str, Any], need_energy: bool) -> Dict[str, Any]:
    """Journal fields for one board result; ``error`` set when it cannot be used."""
    kept = {k: v for k, v in result.items() if k not in ("outputs",)}
    if result.get("error"):
        error = result["error"]
        return {"measurement": kept, "error": f"measurement failed ({error.get('code')}): {error.get('message')}"}
    power = result.get("power") or {}
    energy = power.get("energy_per_inference_mj")
    if need_energy and energy is None:
        return {"measurement": kept,
                "error": "the board gave no energy reading; set `power` in the config to a power source the board has"}
    return {"measurement": kept, "latency_ms": float(result["latency_ms"]["median"]), "energy_mj": energy, "error": None}


def write_files(out_dir: Path, files: Mapping[str, bytes]) -> Dict[str, Path]:
    """Write a worker's returned files into ``out_dir`` (the master's side of the executor seam);
    no folder for a result without files (a table look-up)."""
    if files:
        out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, data in files.items():
        if Path(name).name != name:
            raise ValueError(f"a worker returned the file name {name!r}; only plain names are accepted")
        (out_dir / name).write_bytes(data)
        paths[name] = out_dir / name
    return paths


def shares_host(board: Any) -> bool:
    """True for a board whose CPU is this machine's: the local board, or an SSH board on loopback."""
    config = getattr(board, "config", None)
    return config is None or str(getattr(config, "host", "")) in ("localhost", "127.0.0.1", "::1")


class SearchEngine:
    """The journaled primitives of one run's search phase; the scheduler orders them."""

    def __init__(self, run_dir: Path, journal: Journal, config: SearchConfig, space: SearchSpace,
                 split_dict: Dict[str, Any], pool: Any, candidate_filter: PreTrainingFilter,
                 progress: Progress = print, table: Optional[TableEvaluation] = None):
        self.run_dir = Path(run_dir)
        self.table = table
        self.journal = journal if isinstance(journal, CachedJournal) else CachedJournal(journal)
        #: Frozen records by id, rebuilt only when the candidate's journal version changes.
        self._records: Dict[int, Tuple[int, Candidate]] = {}
        self._specs: Dict[str, Tuple[ArchSpec, str]] = {}
        self.config = config
        self.space = space
        self.split_dict = split_dict
        self.pool = pool
        self.filter = candidate_filter
        self.progress = progress
        self.settings = StrategySettings(tuple(config.objectives), dict(config.budgets), config.population,
                                         config.epochs, config.budget, config.seed, config.workers)
        self.strategy = make_strategy(config.strategy, config.strategy_options, self.settings)
        self.measure_shares_host = table is None and any(shares_host(b) for b in getattr(pool, "boards", [None]))
        #: The strategy returned no proposal (it ended the search itself, e.g. its iteration limit).
        self.strategy_finished = False
        self.judges_by_board = reads_board(config.objectives, config.budgets, rule_metrics(config.stop))
        #: Budget, time limit (counted from here: a resumed run gets it again) and stop rules.
        self.terminations = terminations_for(config)
        #: The first termination's reason, once one has ended the search.
        self.stopped_by: Optional[str] = None

    # -- records and budget -----------------------------------------------------------------

    def records(self, rows: Optional[Sequence[Dict[str, Any]]] = None) -> List[Candidate]:
        """Frozen records of every candidate (or of ``rows``), with their strategy attributes."""
        rows = self.journal.candidates() if rows is None else rows
        attrs = self.journal.all_attrs()
        out = []
        for row in rows:
            version = self.journal.version(row["id"])
            cached = self._records.get(row["id"])
            if cached is None or cached[0] != version:
                own = {k: v for k, v in attrs.get(row["id"], {}).items() if not k.startswith("engine.")}
                cached = (version, record_from_row(row, own, self.config.objectives, self.config.budgets,
                                                   not self.judges_by_board))
                self._records[row["id"]] = cached
            out.append(cached[1])
        return out

    def used(self) -> float:
        """Training exercises (or epochs, or a table run's simulated seconds, as ``budget_unit``
        says) spent or committed."""
        rows = self.journal.candidates(["pending", "training", "trained", "measured", "failed"])
        if self.config.budget_unit == "exercises":
            return len(rows)
        if self.config.budget_unit == "train_seconds":
            return sum(self.table.cost_seconds(r, self.config.epochs) for r in rows)
        return sum(int((r["exercise"] or {}).get("epochs", self.config.epochs)) for r in rows)

    def spent(self) -> float:
        """What finished trainings have cost, in the budget's unit (failed ones count, as in
        ``Journal.training_exercises``)."""
        rows = self.journal.candidates(["trained", "measured", "failed"])
        if self.config.budget_unit == "train_seconds":
            return sum(r["train_seconds"] or 0.0 for r in rows)
        if self.config.budget_unit == "exercises":
            return len(rows)
        return sum(int((r["exercise"] or {}).get("epochs") or ((r["train_metrics"] or {}).get("config") or {})
                       .get("epochs") or 0) for r in rows)

    def remaining(self) -> float:
        """What is left of the budget; 0 once a termination ends the search (its reason said and
        journaled once), so no new candidate is asked while those already training finish and count."""
        for termination in self.terminations:
            reason = termination.reason(self)
            if reason is None:
                continue
            if self.stopped_by is None:
                self.stopped_by = reason
                self.journal.set_meta("stopped_by", reason)
                if not isinstance(termination, EvaluationBudget):
                    self.progress(f"search ends: {reason}; no new candidates")
            return 0
        return max(0, self.config.budget - self.used())

    def context(self, rng: np.random.Generator, generation: int) -> AskContext:
        records = self.records()
        return AskContext(self.space, tuple(records), rng, generation, self.spent(),
                          tuple(r for r in records if r.status in UNFINISHED))

    # -- ask --------------------------------------------------------------------------------

    def ask(self, generation: int, slots: int, rng: np.random.Generator) -> List[int]:
        """Journal up to ``slots`` new proposals (accepted as ``pending``, the others ``rejected``);
        return the accepted ids. Stops early when the budget is committed or the strategy has
        nothing left to propose (then ``strategy_finished`` is set)."""
        accepted: List[int] = []
        for _ in range(ASK_ATTEMPTS_PER_SLOT * max(1, slots)):
            wanted = min(slots - len(accepted), self.remaining() if self.config.budget_unit == "exercises" else slots)
            if wanted <= 0 or self.remaining() <= 0:
                break
            proposals = self.strategy.ask(wanted, self.context(rng, generation))
            if not proposals:
                self.strategy_finished = True
                break
            for proposal in proposals[:wanted]:
                if self.remaining() <= 0:
                    break
                candidate_id = self._journal_proposal(proposal, generation)
                if candidate_id is not None:
                    accepted.append(candidate_id)
            if len(accepted) >= slots:
                break
        return accepted

    def _journal_proposal(self, proposal: Proposal, generation: int) -> Optional[int]:
        """Journal one proposal; its id when accepted for training, None when dropped or rejected."""
        try:
            spec, arch_hash = self._decoded(proposal.genotype)
        except SpecError as exc:
            self.progress(f"generation {generation}: the space produced an invalid network ({exc}); skipped")
            return None
        self._check_attrs(proposal.attrs)
        if self.table is not None and not self.table.admits(proposal.genotype):
            return None
        exercise = proposal.exercise()
        key = candidate_key(arch_hash, self.space.training_overrides(dict(proposal.genotype)), exercise)
        if self.journal.has_key(key):
            return None
        cost = spec.cost
        decision = self.filter.judge(spec)
        candidate_id = self.journal.add_candidate(
            key=key, arch_hash=arch_hash, generation=generation,
            status="pending" if decision["filter_accepted"] else "rejected",
            operator=proposal.operator, parents=list(proposal.parents), genotype=dict(proposal.genotype),
            spec=spec.to_dict(), cost=cost.to_dict(per_layer=False), params=cost.params, macs=cost.macs,
            activation_bytes=cost.activation_bytes,
            exercise={"epochs": self.config.epochs if proposal.epochs is None else proposal.epochs, **exercise},
            **decision,
        )
        if proposal.attrs:
            self.journal.set_attrs(candidate_id, dict(proposal.attrs))
        return candidate_id if decision["filter_accepted"] else None

    def _decoded(self, genotype: Mapping[str, Any]) -> Tuple[ArchSpec, str]:
        """The genotype's spec and identity (its structure hash), decoded once per run: strategies
        propose the same genotypes again and again (a duplicate is dropped only after its key is
        known)."""
        text = json.dumps(genotype, sort_keys=True)
        if text not in self._specs:
            spec = self.space.decode(dict(genotype))
            identity = spec.structure_hash()
            if self.table is not None:
                # A table's figures belong to its key: NAS-Bench-201 trained and timed every arch
                # string on its own, also where two build the same deployed network, so in a
                # table run the key is part of the network's identity.
                identity = hashlib.sha256(f"{identity} {self.table.key(genotype)}".encode()).hexdigest()
            self._specs[text] = (spec, identity)
        return self._specs[text]

    def _check_attrs(self, attrs: Mapping[str, Any]) -> None:
        prefix = f"{self.strategy.name}."
        for key, value in attrs.items():
            if not key.startswith(prefix):
                raise UserError(f"strategy {self.strategy.name!r} set attribute {key!r}; strategy attributes "
                                f"must be named {prefix}<key>")
            json.dumps(value)

    # -- train ------------------------------------------------------------------------------

    def submit(self, candidate_id: int, executor: TrainingExecutor) -> Future:
        """Ship one pending candidate to the executor and journal it as ``training``."""
        row = self.journal.candidate(candidate_id)
        if self.table is not None:
            self.journal.update(candidate_id, status="training")
            return executor.submit(self.table.task(row, self.config.epochs))
        exercise = row["exercise"] or {}
        # No test split during the search: it is read only for the final front (final.py).
        config = {**self.config.train, "epochs": int(exercise.get("epochs", self.config.epochs)),
                  "seed": self.config.seed, **self.space.training_overrides(row["genotype"]), "evaluate_test": False}
        parents = [self._weights_bytes(source) for source in exercise.get("weights_from", [])]
        task = training_task(row["spec"], self.config.dataset, self.split_dict, config,
                             [p for p in parents if p is not None], exercise.get("data_seed"),
                             exercise.get("train_fraction", 1.0), self.config.precision)
        timings = dict(row.get("timings") or {})
        timings["submitted_at"] = time.time()
        self.journal.update(candidate_id, status="training", timings=timings)
        return executor.submit(task)

    def _weights_bytes(self, source: Any) -> Optional[bytes]:
        """A parent's trained state (.npz bytes): a candidate id, or a seed model's .npz path.
        A parent without weights (failed, or from a journal older than weights) gives none."""
        if isinstance(source, str):
            try:
                return Path(source).read_bytes()
            except OSError as exc:
                raise UserError(f"cannot read the seed weights {source!r} ({exc.strerror}); check the path") from None
        path = self.journal.candidate(int(source)).get("weights_path")
        if not path or not (self.run_dir / path).is_file():
            return None
        return (self.run_dir / path).read_bytes()

    def finish_training(self, candidate_id: int, future: Future) -> bool:
        """Journal a finished training (``trained`` or ``failed`` with its reason); True when the
        local pool broke (a worker died) and must be restarted."""
        fields: Dict[str, Any] = {"status": "failed", "error": "training did not finish"}
        broken = False
        try:
            fields = self._trained_fields(candidate_id, future.result())
        except ClusterLost:
            fields = {}  # not the candidate's fault: it stays "training", so --resume re-trains it
            raise
        except BrokenProcessPool:
            broken = True
            fields["error"] = "the training worker process died (killed for memory?); the search goes on"
        except Exception as exc:  # noqa: BLE001 - any training failure is the candidate's, not the run's
            if is_disk_full(exc, self.run_dir):
                fields = {}  # the disk's fault, not the candidate's: --resume re-trains it once space is freed
                raise
            fields["error"] = f"training failed: {type(exc).__name__}: {exc}"
        finally:
            if fields:
                timings = dict(self.journal.candidate(candidate_id).get("timings") or {})
                timings["finished_at"] = time.time()
                self.journal.update(candidate_id, timings=timings, **fields)
                self._log_candidate(candidate_id)
        return broken

    def _trained_fields(self, candidate_id: int, result: Dict[str, Any]) -> Dict[str, Any]:
        metrics = dict(result["metrics"])
        out_dir = self.run_dir / CANDIDATES_DIR / f"{candidate_id:05d}"
        paths = write_files(out_dir, result["files"])
        relative = {name: str(path.relative_to(self.run_dir)) for name, path in paths.items()}
        metrics["onnx"] = relative.get("model.onnx")
        metrics["weights"] = relative.get("weights.npz")
        train_metrics = {k: v for k, v in metrics.items() if k != "history"}
        if metrics.get("val_accuracy") is None:
            return {"status": "failed", "train_metrics": train_metrics, "error": "training diverged (accuracy is not finite)"}
        for kind, name, sha_key in (("onnx", "model.onnx", "onnx_sha256"), ("weights", "weights.npz", "weights_sha256")):
            if name in paths:
                self.journal.add_artifact(candidate_id, kind, relative[name], metrics[sha_key], paths[name].stat().st_size)
        return {
            "status": "trained", "accuracy": metrics.get("accuracy"), "val_accuracy": metrics.get("val_accuracy"),
            "train_seconds": metrics.get("train_seconds"), "train_metrics": train_metrics,
            "onnx_path": relative.get("model.onnx"), "onnx_sha256": metrics.get("onnx_sha256"),
            "weights_path": relative.get("weights.npz"), "weights_sha256": metrics.get("weights_sha256"),
            "inherited_fraction": metrics.get("inherited_fraction"), "error": None,
        }

    # -- measure ----------------------------------------------------------------------------

    def needs_board(self, row: Mapping[str, Any]) -> bool:
        """Whether measuring ``row`` takes board time (a network measured before is reused)."""
        return self.journal.measurement_of_arch(row["arch_hash"]) is None

    def measure(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Measure trained candidates on the board pool: one board measurement per network,
        reused for every candidate of the same structure (now or measured before)."""
        if not rows:
            return
        need_energy = self.config.measures_energy
        results: Dict[str, Dict[str, Any]] = {}
        for row in rows:
            known = self.journal.measurement_of_arch(row["arch_hash"])
            if known is not None:
                results[row["arch_hash"]] = {**known, "reused": True}
        new = {}
        for row in rows:
            if row["arch_hash"] not in results:
                new.setdefault(row["arch_hash"], row)
        seconds = 0.0
        if new:
            started = time.perf_counter()
            if self.table is not None:
                measured = self.table.measure(list(new.values()))
            else:
                measured = self.pool.measure_many([str(self.run_dir / r["onnx_path"]) for r in new.values()],
                                                  **measure_options(self.config))
            seconds = (time.perf_counter() - started) / len(new)
            results.update(zip(new, measured))
        for row in rows:
            first = new.get(row["arch_hash"])
            reused = first is None or first["id"] != row["id"]
            result = results[row["arch_hash"]]
            self._finish_measurement(row, {**result, "reused": True} if reused else result, need_energy,
                                     0.0 if reused else seconds)

    def _finish_measurement(self, row: Dict[str, Any], result: Dict[str, Any], need_energy: bool, seconds: float) -> None:
        fields = {"status": "failed", "error": "measurement did not finish"}
        try:
            fields = measurement_fields(result, need_energy)
            fields["status"] = "failed" if fields["error"] else "measured"
        finally:
            timings = dict(row.get("timings") or {})
            timings.update(measure_s=seconds, loadavg_1min=os.getloadavg()[0])
            self.journal.update(row["id"], timings=timings, **fields)
            self._log_candidate(row["id"])

    # -- tell -------------------------------------------------------------------------------

    def untold(self, trained_too: bool = False) -> List[Dict[str, Any]]:
        """Finished candidates the strategy has not been told about (all of them after a kill);
        with ``trained_too`` also trained ones whose measurement waits (``judges_by_board`` False)."""
        attrs = self.journal.all_attrs()
        statuses = ["rejected", "measured", "failed"] + (["trained"] if trained_too else [])
        return [r for r in self.journal.candidates(statuses) if not attrs.get(r["id"], {}).get(TOLD)]

    def tell(self, rows: Sequence[Dict[str, Any]], rng: np.random.Generator, generation: int) -> None:
        """Tell the strategy about finished candidates and journal the attributes it returns."""
        if not rows:
            return
        finished = self.records(rows)
        updates = self.strategy.tell(finished, self.context(rng, generation))
        for candidate_id, attrs in (updates or {}).items():
            self._check_attrs(attrs)
            self.journal.set_attrs(int(candidate_id), dict(attrs))
        for row in rows:
            self.journal.set_attrs(row["id"], {TOLD: True})

    # -- progress ---------------------------------------------------------------------------

    def write_live_report(self) -> None:
        """Refresh report.html while the run goes on; a report failure never stops the search.
        A table run is over in seconds, and rebuilding the page from the whole journal after
        every generation would be most of its time: its page is written once, at the end."""
        if self.table is not None:
            return
        try:
            from hostside.search.report_html import build_report_data, write_report_html

            write_report_html(self.run_dir, build_report_data(self.run_dir, self.journal))
        except Exception as exc:  # noqa: BLE001 - the live page is a convenience, the search is the work
            self.progress(f"  (live report not refreshed: {type(exc).__name__}: {exc})")

    def _log_candidate(self, candidate_id: int) -> None:
        row = self.journal.candidate(candidate_id)
        status = row["status"]
        if status == "failed":
            detail = row["error"]
        elif status == "trained":
            detail = f"val accuracy {_fraction(row['val_accuracy'])}, {row['train_seconds'] or 0:.1f} s training"
        elif status == "measured":
            detail = f"val accuracy {_fraction(row['val_accuracy'])}, latency {row['latency_ms']:.4f} ms"
        else:
            detail = ""
        self.progress(f"  candidate {candidate_id} (generation {row['generation']}, {row['operator']}): {status}"
                      + (f" - {detail}" if detail else ""))

    def report_progress(self, what: str, rows: Sequence[Dict[str, Any]], seconds: float) -> None:
        measured = self.journal.candidates(["measured"])
        feasible = [r for r in measured if violation(r, self.config.budgets) == 0]
        front = pareto_front(feasible, self.config.objectives)
        best = max((r["val_accuracy"] for r in feasible if r["val_accuracy"] is not None), default=float("nan"))
        unit = self.config.budget_unit
        self.progress(
            f"{what}: {sum(r['status'] == 'measured' for r in rows)} measured, "
            f"{sum(r['status'] == 'rejected' for r in rows)} rejected by the filter, "
            f"{sum(r['status'] == 'failed' for r in rows)} failed in {seconds:.1f} s; "
            f"trained {self.spent():g}/{self.config.budget} {unit}; "
            f"front {len(front)} model(s), best val accuracy {best:.3f}"
        )


def _fraction(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def measure_options(config: SearchConfig) -> Dict[str, Any]:
    """The calibration's measurement protocol (warm-up, minimum timed window, threads), so the
    measured latency is the quantity the calibration predicts; the agent stores it with every result."""
    from hostside.calibration.calibrate import protocol_kwargs

    return protocol_kwargs(config.measure_threads, config.power)
