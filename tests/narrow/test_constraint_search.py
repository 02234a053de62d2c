"""Constraint search: budgets filter the elaborated population, picks are spread, and the narrow
strategy trains and measures only networks that satisfy every budget (real digits training,
the local board)."""

import json

import pytest

import hostside.search.strategies.narrow  # noqa: F401 - registers the strategy
from hostside.journal import Journal
from hostside.laws.constraint import feasible_rows, spread_picks
from hostside.search.constraint_grid import run_constraint_grid
from hostside.search.config import SearchConfig



def _row(i, params, latency):
    return {"config": {"x": i}, "params": params, "macs": params * 10, "activation_bytes": 1000,
            "weight_bytes": {"fp32": 4 * params}, "latency_ms": latency}


def test_budgets_filter_and_picks_spread_from_the_top():
    rows = [_row(i, p, l) for i, (p, l) in enumerate([(100, 0.1), (900, 0.2), (1500, 0.3), (2000, 0.9),
                                                       (5000, 0.4), (1800, 0.25), (1900, 0.26)])]
    feasible = feasible_rows(rows, {"params": 2000, "latency_ms": 0.5})
    assert [r["config"]["x"] for r in feasible] == [0, 1, 2, 5, 6]
    picks = spread_picks(rows, {"params": 2000, "latency_ms": 0.5}, spread_decades=1.0)
    assert picks[0] == {"x": 6}  # the largest feasible network first
    assert {"x": 0} not in picks  # 100 params is more than a decade below the largest
    assert picks[1] == {"x": 1}  # then the one farthest from it
    assert len(picks) == 4
    assert spread_picks(rows, {"params": 50}) == []


@pytest.mark.slow
def test_constraint_grid_on_digits_trains_only_feasible_networks(tmp_path, shipped_calibration):
    config = SearchConfig(
        dataset="digits", space="narrow:plain", strategy="narrow",
        strategy_options={"decades": [2, 3], "n_init": 20, "n_steps": 30, "n_eval": 5, "k": 2, "n_val": 20,
                          "calibration": shipped_calibration},
        budget=2, population=2, epochs=2, final_epochs=2, workers=1, spot_checks=0, calibration=shipped_calibration,
        budgets={"latency_ms": 5.0}, objectives=["accuracy", "measured_latency"],
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
