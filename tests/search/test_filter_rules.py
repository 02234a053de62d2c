"""The engine's filter rules on a real calibration of this machine."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.search.config import SearchConfig
from hostside.search.filtering import PreTrainingFilter, open_calibration
from hostside.spaces import make_space


@pytest.fixture(scope="module")
def specs():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(3)
    return [space.decode(space.sample(rng)) for _ in range(200)]


def _judge(calibration_path, specs, rule, budgets, use_filter=True):
    config = SearchConfig(calibration=str(calibration_path), budgets=budgets, filter_rule=rule, use_filter=use_filter)
    candidate_filter = PreTrainingFilter(config, open_calibration(config, None, print))
    return [candidate_filter.judge(s) for s in specs]


def test_interval_rule_rejects_only_when_the_whole_interval_is_over_budget(digits_calibration, specs):
    predicted = [d["predicted_latency_ms"] for d in _judge(digits_calibration, specs, "predicted", {})]
    budget = float(np.median(predicted))
    by_point = _judge(digits_calibration, specs, "predicted", {"latency_ms": budget})
    by_interval = _judge(digits_calibration, specs, "interval", {"latency_ms": budget})
    by_upper = _judge(digits_calibration, specs, "conservative", {"latency_ms": budget})
    point, interval, upper = (sum(d["filter_accepted"] for d in ds) for ds in (by_point, by_interval, by_upper))
    assert upper < point < interval < len(specs)
    for p, i in zip(by_point, by_interval):
        assert p["filter_accepted"] == (p["predicted_latency_ms"] <= budget)
        if i["filter_accepted"] and not p["filter_accepted"]:
            assert "90% interval reaches" in i["filter_reason"]


def test_analytic_budgets_reject_exactly_and_filter_off_keeps_the_verdict(digits_calibration, specs):
    params = sorted(s.cost.params for s in specs)[100]
    decisions = _judge(digits_calibration, specs, "interval", {"params": params})
    assert [bool(d["filter_accepted"]) for d in decisions] == [s.cost.params <= params for s in specs]
    off = _judge(digits_calibration, specs, "interval", {"params": params}, use_filter=False)
    assert all(d["filter_accepted"] for d in off)
    assert sum("would have rejected" in d["filter_reason"] for d in off) == sum(s.cost.params > params for s in specs)
