"""Constraint grid: the narrow strategy trains and measures only networks that satisfy every
budget, one run per constraint (real digits training, the local board)."""

import json

import pytest

import hostside.search.strategies.narrow  # noqa: F401 - registers the strategy
from hostside.journal import Journal
from hostside.search.constraint_grid import run_constraint_grid
from hostside.search.config import SearchConfig


@pytest.mark.slow
def test_constraint_grid_on_digits_trains_only_feasible_networks(tmp_path, shipped_calibration):
    config = SearchConfig(
        dataset="digits", space="narrow:plain", strategy="narrow",
        strategy_options={"decades": [2, 3], "n_init": 20, "n_steps": 30, "n_eval": 5, "k": 2, "n_val": 20,
                          "calibration": shipped_calibration},
        budget=2, population=2, epochs=2, final_epochs=2, workers=1, spot_checks=0, calibration=shipped_calibration,
        budgets={"latency_ms": 5.0}, objectives=["accuracy", "latency_ms"],
        drift_tolerance=0)  # the shipped calibration is of another host kind; only params decide here
    summary = run_constraint_grid(config, ["digits"], [1500, 6000], tmp_path, progress=lambda _: None)
    assert (tmp_path / "grid.png").stat().st_size > 5_000
    assert json.loads((tmp_path / "grid.json").read_text())["constraints"] == [1500, 6000]
    assert len(summary["results"]) == 2
    largest = []
    for result in summary["results"]:
        journal = Journal.open(tmp_path / f"digits-params{result['params_constraint']:g}")
        try:
            trained = [r for r in journal.candidates() if r["status"] == "measured"]
        finally:
            journal.close()
        assert trained and all(r["params"] <= result["params_constraint"] for r in trained)
        assert all(r["operator"] == "narrow_pick" for r in trained)
        largest.append(max(r["params"] for r in trained))
        best = result["best"]
        assert best is not None and best["params"] <= result["params_constraint"] and best["test_accuracy"] > 0.3
    assert largest[0] <= 1500 < largest[1]  # the first pick is the largest network the constraint allows
