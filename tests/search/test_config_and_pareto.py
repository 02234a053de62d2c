"""Search settings (one clear line per bad key or value) and the Pareto arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.search.config import SearchConfig, build_config, load_toml
from hostside.search.pareto import (best_tradeoff, hypervolume, pareto_front, rank_and_crowding, spread_subset,
                                    violation)


@pytest.mark.parametrize("values, message", [
    ({"strategy": "anneal"}, "config key 'strategy': 'anneal' is not allowed; choose one of "),
    ({"objectives": ["accuracy", "speed"]}, "config key 'objectives': 'speed' is not allowed; choose from val_accuracy, params"),
    ({"objectives": ["accuracy"]}, "config key 'objectives'"),
    ({"budget": 0}, "config key 'budget': 0 is not allowed; give an integer >= 1"),
    ({"budgets": {"latency": 1}}, "config key 'budgets.latency' is unknown; allowed budgets: latency_ms"),
    ({"budgets": {"latency_ms": -1}}, "config key 'budgets.latency_ms': -1 is not allowed; give a positive number"),
    ({"budgets": {"val_accuracy": 85}}, "config key 'budgets.val_accuracy': 85 is not allowed; give the minimum "
     "accuracy as a fraction in (0, 1]"),
    ({"train": {"lr": 1}}, "config key 'train.lr' is unknown; allowed keys: batch_size"),
    ({"populaton": 4}, "config key 'populaton' is unknown; allowed keys: dataset, board"),
    ({"policy": "async"}, "config key 'policy': 'async' is not allowed; choose one of generational, steady-state"),
    ({"strategy": {"name": "nsga2", "mutation": 1}}, "strategy 'nsga2': option 'mutation' is unknown"),
    ({"strategy": {"immigrant_rate": 0.1}}, "config table [strategy] needs a name"),
    ({"budget_unit": "hours"}, "config key 'budget_unit': 'hours' is not allowed"),
    ({"final_models": -1}, "config key 'final_models': -1 is not allowed; give an integer >= 0"),
    ({"final_data": "all"}, "config key 'final_data': 'all' is not allowed; choose one of train, train+val"),
    ({"screen_models": -2}, "config key 'screen_models': -2 is not allowed; give an integer >= 0 (0: no screening)"),
    ({"screen_epochs": 0}, "config key 'screen_epochs': 0 is not allowed; give an integer >= 1"),
    ({"screen_models": 4, "objectives": ["latency_ms", "accuracy"]},
     "config key 'screen_models': screening trains the best candidates in the first objective longer, so it must be "
     "one of val_accuracy (it is 'latency_ms'); put it first or set screen_models = 0"),
])
def test_bad_settings_name_the_key_and_the_allowed_values(values, message):
    with pytest.raises(UserError) as info:
        build_config(values, {})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_flags_override_the_file_and_budgets_merge(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text('strategy = "random"\nbudget = 5\n[budgets]\nparams = 20000\n')
    config = build_config(load_toml(path), {"budget": 7, "budgets.latency_ms": 0.5, "seed": None})
    assert (config.strategy, config.budget, config.budgets) == ("random", 7, {"params": 20000, "latency_ms": 0.5})
    assert SearchConfig.from_dict(config.to_dict()) == config


def test_the_strategy_table_gives_name_and_options(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text('policy = "steady-state"\n[strategy]\nname = "nsga2"\nimmigrant_rate = 0.1\n')
    config = build_config(load_toml(path), {})
    assert (config.strategy, config.strategy_options, config.policy) == ("nsga2", {"immigrant_rate": 0.1}, "steady-state")
    assert SearchConfig.from_dict(config.to_dict()) == config


def test_a_toml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("budget = = 3\n")
    with pytest.raises(UserError, match="bad.toml is not valid TOML"):
        load_toml(path)


def _row(i, accuracy, latency):
    return {"id": i, "val_accuracy": accuracy, "latency_ms": latency, "params": 100}


def test_front_ranks_crowding_and_budgets():
    rows = [_row(0, 0.9, 1.0), _row(1, 0.8, 0.5), _row(2, 0.7, 0.8), _row(3, 0.95, 2.0)]
    assert [r["id"] for r in pareto_front(rows, ["accuracy", "latency_ms"])] == [0, 1, 3]
    F = np.array([[0.1, 1.0], [0.2, 0.5], [0.3, 0.8], [0.05, 2.0]])
    rank, crowding = rank_and_crowding(F, np.array([0, 0, 0, 0.5]))
    assert list(rank) == [0, 0, 1, 2]  # the infeasible row ranks after every feasible front
    assert violation(_row(0, 0.9, 1.5), {"latency_ms": 1.0}) == pytest.approx(0.5)
    assert violation(_row(0, 0.9, 0.5), {"latency_ms": 1.0, "accuracy": 0.95}) == pytest.approx(0.05 / 0.95)


def test_a_capped_front_keeps_the_most_accurate_then_the_ends_of_the_front():
    # A front along accuracy vs latency: 0.95 @ 2.0 ms ... 0.70 @ 0.2 ms, crowded in the middle.
    rows = [_row(0, 0.95, 2.0), _row(1, 0.90, 1.0), _row(2, 0.89, 0.95), _row(3, 0.88, 0.9), _row(4, 0.70, 0.2)]
    objectives = ["accuracy", "latency_ms"]
    assert [r["id"] for r in spread_subset(rows, objectives, 2)] == [0, 4]
    assert [r["id"] for r in spread_subset(rows, objectives, 3)] == [0, 4, 3]
    assert spread_subset(rows, objectives, 0) == rows and spread_subset(rows, objectives, 9) == rows


def test_final_re_trainings_are_submitted_longest_first():
    from hostside.search.final import longest_first

    rows = [{"id": 1, "macs": 500}, {"id": 2, "macs": 9000}, {"id": 3, "macs": 500}, {"id": 4, "macs": 2000}]
    assert [r["id"] for r in longest_first(rows)] == [2, 4, 1, 3]


def test_hypervolume_and_best_tradeoff():
    F = np.array([[0.1, 1.0], [0.2, 0.5]])
    assert hypervolume(F, [1.0, 2.0]) == pytest.approx(0.9 * 1.0 + 0.8 * 0.5)
    assert hypervolume(np.array([[2.0, 3.0]]), [1.0, 2.0]) == 0.0
    rows = [_row(0, 0.99, 5.0), _row(1, 0.95, 1.0), _row(2, 0.5, 0.9)]
    assert best_tradeoff(rows, ["accuracy", "latency_ms"], [1, 1]) == 1


def _journal_row(i, status, macs, train_seconds=None):
    return {"id": i, "status": status, "macs": macs, "train_seconds": train_seconds}


def test_filter_statistics_estimate_savings_from_macs_and_count_false_rejects():
    from hostside.search.report import filter_statistics

    rows = [_journal_row(1, "measured", 1000, 1.0), _journal_row(2, "measured", 2000, 2.0),
            _journal_row(3, "measured", 3000, 3.0),
            _journal_row(4, "rejected", 10000), _journal_row(5, "rejected", 5000), _journal_row(6, "rejected", 4000)]
    spot_checks = [{"candidate_id": 4, "latency_ms": 0.2, "meets_budget": False},
                   {"candidate_id": 5, "latency_ms": 0.1, "meets_budget": True}]
    stats = filter_statistics(rows, spot_checks)
    assert stats["train_seconds_saved_estimate"] == pytest.approx(10 + 5 + 4)
    assert stats["saved_fraction"] == pytest.approx(19 / 25)
    assert (stats["spot_checked"], stats["false_rejects"], stats["false_reject_rate"]) == (2, [5], 0.5)


def test_a_long_final_re_training_says_it_is_still_going():
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from hostside.search.executors import as_completed_with_heartbeat

    release = threading.Event()
    messages = []
    with ThreadPoolExecutor(2) as pool:
        quick, slow = pool.submit(lambda: 1), pool.submit(release.wait, 5)
        finished = []
        for future in as_completed_with_heartbeat({quick: 1, slow: 2}, 0.0, messages.append, 0.05, "re-training"):
            finished.append(future)
            if future is quick:
                threading.Timer(0.3, release.set).start()
    assert finished == [quick, slow]
    assert messages and all(m.startswith("  re-training: 1/2 finished after") for m in messages)


def test_the_default_strategy_is_the_benchmark_winner_where_the_space_allows():
    from hostside.search.config import SearchConfig, build_config

    assert SearchConfig().strategy == "nsga2"  # the layer list has no categorical genes
    assert build_config({"space": "nasbench201"}, {}).strategy == "surrogate-hv"
    assert build_config({"space": "nasbench201", "strategy": "random"}, {}).strategy == "random"
    assert build_config({"space": "dense"}, {}).strategy == "nsga2"
