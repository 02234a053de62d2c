"""Terminations are the scheduler's: [stop] rules, the budget and the time limit end a search
with any strategy, and the run says which one did."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostside.journal import Journal
from hostside.search.config import build_config
from hostside.search.run import start_run

NB201 = Path(__file__).resolve().parents[2] / "data" / "nb201" / "nb201_hw.csv"


def _config(strategy: str, **values):
    base = {"space": "nasbench201", "strategy": strategy, "budget": 200, "population": 8, "seed": 5,
            "table": {"path": str(NB201)}, **values}
    return build_config(base, {})


@pytest.mark.parametrize("strategy", ["random", "nsga2", "regularized-evolution"])
def test_a_stop_rule_ends_a_search_of_any_strategy(tmp_path, strategy):
    config = _config(strategy, stop={"good": "accuracy >= 0.88"})
    start_run(config, tmp_path / "run", progress=lambda _: None, reports=False)
    journal = Journal.open(tmp_path / "run")
    try:
        rows = journal.candidates()
        reason = journal.meta("stopped_by")
        met = [cid for cid, attrs in journal.all_attrs().items() if "engine.stopped_by" in attrs]
        assert reason.startswith("stop rule 'good' (accuracy >= 0.88) met by candidate")
        assert len(met) == 1 and journal.candidate(met[0])["val_accuracy"] >= 0.88
        assert len(rows) < 200  # it stopped well before the budget
        # nothing was asked after the generation in which the rule was met
        assert max(r["generation"] for r in rows) == journal.candidate(met[0])["generation"]
    finally:
        journal.close()


def test_the_budget_is_a_termination_too(tmp_path):
    start_run(_config("random", budget=16), tmp_path / "run", progress=lambda _: None, reports=False)
    journal = Journal.open(tmp_path / "run")
    try:
        assert journal.meta("stopped_by") == "the budget of 16 exercises is spent"
    finally:
        journal.close()
