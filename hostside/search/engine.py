"""The search loop: ask -> analytic cost -> filter -> train -> export -> measure -> tell.

Each generation the strategy proposes genotypes; the space decodes them to ArchSpecs whose
content hash (plus the training settings the genotype carries) deduplicates them against the
journal; the pre-training filter rejects those that cannot meet the budgets, and the rest
are trained in parallel on the executor, then measured on the board. The journal is written
at every transition, in ``finally`` blocks, so a killed run resumes with ``recover``:
``pending``/``training`` candidates are trained again, ``trained`` ones measured, finished
ones never touched.

Measurements are taken only while no training runs: with the ``local`` board the trainings
would share the CPU with the model being timed and inflate its latency. Remote boards could
overlap with training, but one serial order keeps both paths identical and the measuring
time is small next to training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import numpy as np

from hostside.arch.spec import ArchSpec, SpecError
from hostside.journal import Journal
from hostside.search.config import SearchConfig
from hostside.search.executors import TrainingExecutor
from hostside.search.filtering import PreTrainingFilter
from hostside.search.pareto import pareto_front, violation
from hostside.search.strategies import make_strategy
from hostside.search.tasks import train_candidate
from hostside.spaces.base import SearchSpace

#: How many proposals a generation may draw per accepted candidate before the engine decides
#: the space (under these budgets) has no new network left to offer.
ASK_ATTEMPTS_PER_SLOT = 50
CANDIDATES_DIR = "candidates"

Progress = Callable[[str], None]


def candidate_key(spec: ArchSpec, training: Dict[str, Any]) -> str:
    """The network's content hash joined with the training settings the genotype carries.

    The same network with the same settings is the same experiment: trained once per run.
    """
    text = spec.content_hash() + json.dumps(training, sort_keys=True)
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


class SearchEngine:
    """Runs the search phase of one run over its journal."""

    def __init__(self, run_dir: Path, journal: Journal, config: SearchConfig, space: SearchSpace,
                 split_dict: Dict[str, Any], pool: Any, candidate_filter: PreTrainingFilter,
                 progress: Progress = print):
        self.run_dir = Path(run_dir)
        self.journal = journal
        self.config = config
        self.space = space
        self.split_dict = split_dict
        self.pool = pool
        self.filter = candidate_filter
        self.progress = progress
        self.strategy = make_strategy(config.strategy, config.objectives, config.budgets, config.population)

    # -- bookkeeping ------------------------------------------------------------------------

    def trained_count(self) -> int:
        """Candidates that used a training slot of the budget."""
        counts = self.journal.counts()
        return counts["trained"] + counts["measured"] + counts["failed"]

    def training_config(self, genotype: Dict[str, Any], epochs: int) -> Dict[str, Any]:
        return {**self.config.train, "epochs": epochs, "seed": self.config.seed,
                **self.space.training_overrides(genotype)}

    # -- the loop ---------------------------------------------------------------------------

    def run(self, executor: TrainingExecutor) -> None:
        self.recover(executor)
        while self.trained_count() < self.config.budget:
            generation = self.journal.last_generation() + 1
            slots = min(self.config.population, self.config.budget - self.trained_count())
            started = time.perf_counter()
            ids = self.ask(generation, slots)
            if not ids:
                self.progress(f"generation {generation}: no new candidate passed the filter in "
                              f"{ASK_ATTEMPTS_PER_SLOT * slots} proposals; stopping the search early")
                break
            self.train(ids, executor)
            self.measure(self.journal.candidates(["trained"]))
            self.report_generation(generation, time.perf_counter() - started)

    def recover(self, executor: TrainingExecutor) -> None:
        """Finish what a killed run left half done (nothing finished is redone)."""
        unfinished = self.journal.candidates(["pending", "training"])
        if unfinished:
            self.progress(f"resuming: re-training {len(unfinished)} candidate(s) left unfinished")
            self.train([r["id"] for r in unfinished], executor)
        trained = self.journal.candidates(["trained"])
        if trained:
            self.measure(trained)

    def ask(self, generation: int, slots: int) -> List[int]:
        """Journal new proposals (accepted as ``pending``, the others ``rejected``); return accepted ids.

        The generator is seeded by (seed, generation), so a resumed run draws what the
        uninterrupted run would have drawn for the generations it has yet to ask.
        """
        rng = np.random.default_rng([self.config.seed, generation])
        evaluated = self.journal.candidates(["measured"])
        accepted: List[int] = []
        for _ in range(ASK_ATTEMPTS_PER_SLOT * slots):
            if len(accepted) == slots:
                break
            proposal = self.strategy.propose(self.space, evaluated, rng)
            try:
                spec = self.space.decode(proposal.genotype)
            except SpecError as exc:
                self.progress(f"generation {generation}: the space produced an invalid network ({exc}); skipped")
                continue
            key = candidate_key(spec, self.space.training_overrides(proposal.genotype))
            if self.journal.has_key(key):
                continue
            cost = spec.cost
            decision = self.filter.judge(spec)
            candidate_id = self.journal.add_candidate(
                key=key, arch_hash=spec.content_hash(), generation=generation,
                status="pending" if decision["filter_accepted"] else "rejected",
                operator=proposal.operator, parents=proposal.parents, genotype=proposal.genotype,
                spec=spec.to_dict(), cost=cost.to_dict(per_layer=False), params=cost.params, macs=cost.macs,
                activation_bytes=cost.activation_bytes, **decision,
            )
            if decision["filter_accepted"]:
                accepted.append(candidate_id)
        return accepted

    def train(self, ids: Sequence[int], executor: TrainingExecutor) -> None:
        """Train candidates in parallel; each ends ``trained`` or ``failed`` with its reason."""
        futures = {}
        for candidate_id in ids:
            row = self.journal.candidate(candidate_id)
            out_dir = self.run_dir / CANDIDATES_DIR / f"{candidate_id:05d}"
            config = self.training_config(row["genotype"], self.config.epochs)
            self.journal.update(candidate_id, status="training", timings={"submitted_at": time.time()})
            future = executor.executor.submit(train_candidate, row["spec"], self.config.dataset, self.split_dict,
                                              config, str(out_dir))
            futures[future] = candidate_id
        broken = False
        for future in as_completed(futures):
            candidate_id = futures[future]
            fields: Dict[str, Any] = {"status": "failed", "error": "training did not finish"}
            try:
                fields = self._trained_fields(future.result())
            except BrokenProcessPool:
                broken = True
                fields["error"] = "the training worker process died (killed for memory?); the search goes on"
            except Exception as exc:  # noqa: BLE001 - any training failure is the candidate's, not the run's
                fields["error"] = f"training failed: {type(exc).__name__}: {exc}"
            finally:
                self.journal.update(candidate_id, **fields)
                self._log_candidate(candidate_id)
        if broken:
            executor.restart()

    def _trained_fields(self, metrics: Dict[str, Any]) -> Dict[str, Any]:
        if metrics.get("accuracy") is None:
            return {"status": "failed", "train_metrics": metrics, "error": "training diverged (accuracy is not finite)"}
        onnx = Path(metrics["onnx"])
        return {
            "status": "trained", "accuracy": metrics["accuracy"], "val_accuracy": metrics.get("val_accuracy"),
            "train_seconds": metrics.get("train_seconds"), "train_metrics": {k: v for k, v in metrics.items() if k != "history"},
            "onnx_path": str(onnx.relative_to(self.run_dir)) if onnx.is_absolute() else str(onnx),
            "onnx_sha256": metrics.get("onnx_sha256"), "error": None,
        }

    def measure(self, rows: Sequence[Dict[str, Any]]) -> None:
        """Measure trained candidates on the board pool (one result per network, reused by hash)."""
        if not rows:
            return
        need_energy = "energy" in self.config.objectives or "energy_mj" in self.config.budgets
        to_measure = []
        for row in rows:
            known = self.journal.measurement_of_arch(row["arch_hash"])
            if known is not None:
                self._finish_measurement(row, {**known, "reused": True}, need_energy, 0.0)
            else:
                to_measure.append(row)
        if not to_measure:
            return
        started = time.perf_counter()
        results = self.pool.measure_many([str(self.run_dir / r["onnx_path"]) for r in to_measure],
                                         **measure_options(self.config))
        seconds = (time.perf_counter() - started) / len(to_measure)
        for row, result in zip(to_measure, results):
            self._finish_measurement(row, result, need_energy, seconds)

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

    # -- progress ---------------------------------------------------------------------------

    def _log_candidate(self, candidate_id: int) -> None:
        row = self.journal.candidate(candidate_id)
        status = row["status"]
        if status == "failed":
            detail = row["error"]
        elif status == "trained":
            detail = f"accuracy {row['accuracy']:.3f}, {row['train_seconds'] or 0:.1f} s training"
        elif status == "measured":
            detail = f"accuracy {row['accuracy']:.3f}, latency {row['latency_ms']:.4f} ms"
        else:
            detail = ""
        self.progress(f"  candidate {candidate_id} (generation {row['generation']}, {row['operator']}): {status}"
                      + (f" - {detail}" if detail else ""))

    def report_generation(self, generation: int, seconds: float) -> None:
        rows = self.journal.candidates()
        this = [r for r in rows if r["generation"] == generation]
        measured = [r for r in rows if r["status"] == "measured"]
        feasible = [r for r in measured if violation(r, self.config.budgets) == 0]
        front = pareto_front(feasible, self.config.objectives)
        best = max((r["accuracy"] for r in feasible), default=float("nan"))
        self.progress(
            f"generation {generation}: {sum(r['status'] == 'measured' for r in this)} measured, "
            f"{sum(r['status'] == 'rejected' for r in this)} rejected by the filter, "
            f"{sum(r['status'] == 'failed' for r in this)} failed in {seconds:.1f} s; "
            f"trained {self.trained_count()}/{self.config.budget}; front {len(front)} model(s), best accuracy {best:.3f}"
        )


def measure_options(config: SearchConfig) -> Dict[str, Any]:
    """The calibration's measurement protocol (warm-up, minimum timed window, threads), so the
    measured latency is the quantity the calibration predicts; the agent stores it with every result."""
    from hostside.calibration.calibrate import protocol_kwargs

    return protocol_kwargs(config.measure_threads, config.power)
