"""After the search: spot checks of the filter, and the Pareto front re-trained and measured.

Spot checks measure a sample of candidates the filter rejected on predicted latency alone.
Latency does not depend on the weights, so an untrained export of the network measures the
same as a trained one: the check costs an export and a measurement, no training. A rejected
candidate whose measured latency meets the budget is a false reject. Rejections on params,
MACs, activation memory or weight bytes come from the exact analytic cost and cannot be false.

The front (feasible measured candidates no other dominates, with screening figures where
``hostside.search.screening`` took some; with ``final_models`` > 0 at most
that many of them, ``pareto.spread_subset``) is re-trained for ``final_epochs`` from a fresh
initialisation (so the figures compare networks, not how long a lineage was trained), on the
train part or, with ``final_data = "train+val"``, on the validation part too (the models are
chosen by then, so validation has nothing left to choose), and measured again; results go to
the journal's ``final_models`` table and its files to ``artifacts`` (``final_onnx``,
``final_weights``), so a run killed here also resumes without redoing finished models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np

from hostside.journal import Journal, is_disk_full
from hostside.search.config import SearchConfig
from hostside.search.engine import Progress, measure_options, measurement_fields, write_files
from hostside.search.executors import TrainingExecutor, as_completed_with_heartbeat
from hostside.calibration.filter import PRE_TRAINING_BUDGETS
from hostside.search.pareto import pareto_front, spread_subset, violation
from hostside.search.screening import feasible_candidates
from hostside.search.tasks import training_task
from hostside.spaces.base import SearchSpace
from hostside.train.splits import Split

FINAL_DIR = "final"
SPOT_CHECK_DIR = "spot_checks"
#: How often a re-training that has not finished says it is still going: a front model
#: re-trained on a full 28x28 dataset can take half an hour.
HEARTBEAT_S = 120.0


def rejected_on_latency(row: Dict[str, Any], budgets: Dict[str, float]) -> bool:
    """Rejected while meeting every exact (analytic) pre-training budget: the prediction decided."""
    exact = {k: v for k, v in budgets.items() if k in PRE_TRAINING_BUDGETS and k != "latency_ms"}
    return row["status"] == "rejected" and "latency_ms" in budgets and violation(row, exact) == 0


def spot_check(journal: Journal, config: SearchConfig, run_dir: Path, pool: Any, progress: Progress) -> None:
    """Measure up to ``config.spot_checks`` latency-rejected candidates (seeded sample)."""
    candidates = [r for r in journal.candidates(["rejected"]) if rejected_on_latency(r, config.budgets)]
    checked = {r["candidate_id"] for r in journal.results("spot_check")}
    done = [r for r in candidates if r["id"] in checked]
    todo = [r for r in candidates if r["id"] not in checked]
    wanted = max(0, min(config.spot_checks, len(candidates)) - len(done))
    if not wanted or not todo:
        return
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx
    from hostside.arch.spec import ArchSpec

    rng = np.random.default_rng([config.seed, 7919])
    sample = [todo[i] for i in sorted(rng.choice(len(todo), size=min(wanted, len(todo)), replace=False))]
    progress(f"spot-checking {len(sample)} candidate(s) the filter rejected on predicted latency")
    paths = []
    for row in sample:
        path = run_dir / SPOT_CHECK_DIR / f"{row['id']:05d}.onnx"
        export_onnx(build_module(ArchSpec.from_dict(row["spec"])).eval(), path, check=False)
        paths.append(str(path))
    results = pool.measure_many(paths, **measure_options(config))
    limit = config.budgets["latency_ms"]
    for row, path, result in zip(sample, paths, results):
        fields = measurement_fields(result, need_energy=False)
        latency = fields.get("latency_ms")
        journal.set_result(row["id"], "spot_check", status="failed" if fields["error"] else "measured",
                           onnx=str(Path(path).relative_to(run_dir)), latency_ms=latency,
                           meets_budget=None if latency is None else latency <= limit, error=fields["error"])


def front_candidates(journal: Journal, config: SearchConfig) -> List[Dict[str, Any]]:
    feasible = feasible_candidates(journal, config)
    return spread_subset(pareto_front(feasible, config.objectives), config.objectives, config.final_models)


def longest_first(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The order to submit re-trainings in: most multiply-accumulates (the longest training) first.

    Why: two workers given a long model and then a queue of short ones finish together, while a
    long model submitted last runs alone after the others; the MAC count is the exact cost the
    journal already holds, and an epoch's time grows with it.
    """
    return sorted(rows, key=lambda r: (-r["macs"], r["id"]))


def retrain_front(journal: Journal, config: SearchConfig, space: SearchSpace, run_dir: Path,
                  split_dict: Dict[str, Any], executor: TrainingExecutor, pool: Any, progress: Progress) -> None:
    """Re-train each front model for ``final_epochs`` (in parallel, longest first), then measure them all."""
    front = front_candidates(journal, config)
    finished = {f["candidate_id"] for f in journal.results("final") if f["status"] in ("trained", "measured", "failed")}
    todo = [r for r in front if r["id"] not in finished]
    if todo:
        final_split = Split.from_dict(split_dict).for_training_on(config.final_data).to_dict()
        _train_finals(journal, config, space, run_dir, final_split, executor, progress, longest_first(todo))
    _measure_finals(journal, config, run_dir, pool, progress,
                    [f for f in journal.results("final") if f["status"] == "trained"])


def _train_finals(journal: Journal, config: SearchConfig, space: SearchSpace, run_dir: Path,
                  split_dict: Dict[str, Any], executor: TrainingExecutor, progress: Progress,
                  todo: Sequence[Dict[str, Any]]) -> None:
    on = "the train and validation parts" if config.final_data == "train+val" else "the train part"
    progress(f"re-training the Pareto front: {len(todo)} model(s) for {config.final_epochs} epochs on {on}")
    started = time.perf_counter()
    futures = {}
    for row in todo:
        # The front is chosen by now: its test accuracy is the first and only use of the test split.
        train_config = {**config.train, "epochs": config.final_epochs, "seed": config.seed,
                        **space.training_overrides(row["genotype"]), "evaluate_test": True}
        journal.set_result(row["id"], "final", status="training")
        future = executor.submit(training_task(row["spec"], config.dataset, split_dict, train_config,
                                               precision=config.precision))
        futures[future] = row["id"]
    for future in as_completed_with_heartbeat(futures, started, progress, HEARTBEAT_S, "re-training"):
        candidate_id = futures[future]
        fields: Dict[str, Any] = {"status": "failed", "error": "final training did not finish"}
        try:
            result = future.result()
            paths = write_files(run_dir / FINAL_DIR / f"{candidate_id:05d}", result["files"])
            metrics = result["metrics"]
            onnx = str(paths["model.onnx"].relative_to(run_dir))
            weights = str(paths["weights.npz"].relative_to(run_dir))
            metrics.update(onnx=onnx, weights=weights)
            journal.add_artifact(candidate_id, "final_onnx", onnx, metrics["onnx_sha256"],
                                 paths["model.onnx"].stat().st_size)
            journal.add_artifact(candidate_id, "final_weights", weights, metrics["weights_sha256"],
                                 paths["weights.npz"].stat().st_size)
            fields = {"status": "trained", "test_accuracy": metrics["test_accuracy"],
                      "val_accuracy": metrics.get("val_accuracy"),
                      "train_seconds": metrics.get("train_seconds"),
                      "train_metrics": {k: v for k, v in metrics.items() if k != "history"},
                      "onnx_path": onnx, "onnx_sha256": metrics.get("onnx_sha256"), "error": None}
        except Exception as exc:  # noqa: BLE001 - one failed model must not lose the others
            if is_disk_full(exc, run_dir):  # the disk's fault, not the model's: re-trained on --resume
                fields = {"status": "training", "error": "stopped: the disk is full"}
                raise
            fields["error"] = f"final training failed: {type(exc).__name__}: {exc}"
        finally:
            journal.set_result(candidate_id, "final", **fields)
            progress(f"  final model {candidate_id}: {fields['status']}"
                     + (f" - test accuracy {fields['test_accuracy']:.3f}" if fields.get("test_accuracy") is not None else
                        f" - {fields.get('error')}"))


def _measure_finals(journal: Journal, config: SearchConfig, run_dir: Path, pool: Any, progress: Progress,
                    finals: Sequence[Dict[str, Any]]) -> None:
    if not finals:
        return
    from hostside.safe_io import check_run_file

    need_energy = config.measures_energy
    # A resumed run measures files written before it stopped: each must be the one journaled.
    paths = [str(check_run_file(run_dir, f["onnx_path"], f.get("onnx_sha256"),
                                f"final model {f['candidate_id']}'s ONNX file")) for f in finals]
    started = time.perf_counter()
    results = pool.measure_many(paths, **measure_options(config))
    progress(f"measured {len(finals)} final model(s) in {time.perf_counter() - started:.1f} s")
    for final, result in zip(finals, results):
        fields: Dict[str, Any] = {"status": "failed", "error": "measurement did not finish"}
        try:
            fields = measurement_fields(result, need_energy)
            fields["status"] = "failed" if fields["error"] else "measured"
        finally:
            journal.set_result(final["candidate_id"], "final", **fields)
