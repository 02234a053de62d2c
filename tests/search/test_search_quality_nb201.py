"""The NAS-Bench-201 search-quality harness: a grid resumed from ``runs.jsonl`` runs only what is
missing, scores a budget on the longest search of a strategy that does not read the budget, and
judges the multi-fidelity target at half the training time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "search_quality_nb201.py"


def _harness():
    spec = importlib.util.spec_from_file_location("search_quality_nb201", HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _job(strategy: str, seed: int, budget: int, per_budget: bool = False) -> dict:
    return {"strategy": strategy, "seed": seed, "budget": budget, "evals": budget, "per_budget": per_budget}


def test_a_longer_search_covers_a_shorter_job_and_a_truncated_line_is_run_again(tmp_path):
    sq = _harness()
    runs = tmp_path / "runs.jsonl"
    longer = {**_job("random", 0, 1000), "evaluations": []}
    runs.write_text(json.dumps(longer) + "\n" + json.dumps({**_job("random", 1, 300), "evaluations": []})[:20])
    done = sq.load_runs(runs)
    assert list(done) == [("random", 0, 1000)]
    assert sq.scored_run(_job("random", 0, 300), done) == longer
    assert sq.scored_run(_job("random", 1, 300), done) is None
    # A strategy that reads the budget is scored on its own search only.
    assert sq.scored_run(_job("random", 0, 300, per_budget=True), done) is None


def test_prefixes_count_evaluations_or_simulated_seconds():
    sq = _harness()
    evaluations = [("a", 12, 120.0), ("a", 200, 1880.0), ("b", 12, 120.0), ("c", 200, 2000.0)]
    assert sq.prefix_found(evaluations, count=2) == ["a"]
    assert sq.prefix_found(evaluations, seconds=2120.0) == ["a"]
    assert sq.prefix_found(evaluations, seconds=4120.0) == ["a", "c"]


def test_multi_fidelity_is_judged_at_half_the_training_time_of_the_best_single_fidelity():
    sq = _harness()
    rng = np.random.default_rng(0)
    scores = {name: {300: {"hv_share": list(rng.uniform(low, low + 0.05, 10)), "regret": [0.0] * 10}}
              for name, low in (("random", 0.6), ("surrogate-hv", 0.9), ("asha", 0.7))}
    scores.update({name: {100: by[300]} | by for name, by in scores.items()})
    hours = {"asha": {150 * 2000 / 3600: list(rng.uniform(0.95, 1.0, 10))}}
    verdicts = sq.targets(scores, hours, sq.summarise(scores, [100, 300]), 2000.0)
    judged = verdicts["multi_fidelity"]["asha"]
    assert judged["against"] == "surrogate-hv" and judged["hours"] == 150 * 2000 / 3600 and judged["met"]
    assert verdicts["best"]["strategy"] == "surrogate-hv"
