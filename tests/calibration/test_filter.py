"""The pre-training filter against a real calibration of the local board."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostside.arch.random_specs import random_spec
from hostside.calibration import Budgets, CandidateFilter, load_calibration
from hostside.calibration.calibrate import CALIBRATION_JSON
from hostside.errors import UserError


@pytest.fixture(scope="module")
def calibration(tiny_calibration_dir: Path):
    return load_calibration(tiny_calibration_dir / CALIBRATION_JSON)


def test_static_budgets_need_no_calibration_and_report_margins():
    spec = random_spec(1)
    cost = spec.cost
    decision = CandidateFilter(Budgets(params=cost.params * 2, macs=cost.macs // 2)).check(spec)
    assert not decision.accepted
    assert decision.margins["params"] == pytest.approx(0.5)
    assert decision.margins["macs"] < 0
    assert decision.reason.startswith("macs ") and "exceeds the budget" in decision.reason
    assert "params" not in decision.reason
    assert decision.predicted_latency_ms is None


def test_the_weight_bytes_budget_is_judged_exactly_in_the_runs_format():
    spec = random_spec(3)
    cost = spec.cost
    fp32 = 4 * cost.deployed_params
    assert CandidateFilter(Budgets(weight_bytes=fp32)).check(spec).accepted
    over = CandidateFilter(Budgets(weight_bytes=fp32 - 1)).check(spec)
    assert not over.accepted and over.reason.startswith(f"weight_bytes {fp32:,} exceeds the budget")
    # In fx16 the same network stores half the bytes, and int8 keeps its biases in 32 bits.
    assert CandidateFilter(Budgets(weight_bytes=fp32 // 2, weight_format="fx16")).check(spec).accepted
    int8 = cost.weight_bytes["int8"]
    assert CandidateFilter(Budgets(weight_bytes=int8, weight_format="int8")).check(spec).accepted
    assert not CandidateFilter(Budgets(weight_bytes=int8 - 1, weight_format="int8")).check(spec).accepted


def test_latency_budget_accepts_below_and_rejects_above_the_prediction(calibration):
    spec = random_spec(2, input_shape=(1, 16, 16))
    predicted = calibration.predict(spec).latency_ms
    ok = CandidateFilter(Budgets(latency_ms=predicted * 1.05), calibration).check(spec)
    assert ok.accepted and ok.reason is None
    assert ok.margins["latency_ms"] == pytest.approx(1 - 1 / 1.05)
    assert ok.predicted_latency_ms == pytest.approx(predicted)
    bad = CandidateFilter(Budgets(latency_ms=predicted / 2), calibration).check(spec)
    assert not bad.accepted
    assert bad.margins["latency_ms"] == pytest.approx(-1.0)
    assert "predicted latency" in bad.reason and "by 100%" in bad.reason


def test_conservative_filter_judges_the_upper_bound(calibration):
    spec = random_spec(3, input_shape=(3, 32, 32))
    prediction = calibration.predict(spec)
    budget = (prediction.latency_ms + prediction.interval_ms[1]) / 2
    assert CandidateFilter(Budgets(latency_ms=budget), calibration).check(spec).accepted
    strict = CandidateFilter(Budgets(latency_ms=budget), calibration, conservative=True).check(spec)
    assert not strict.accepted and "upper bound" in strict.reason


def test_check_many_matches_check(calibration):
    specs = [random_spec(seed) for seed in range(20)]
    # The budget sits between the two middle predictions so that it splits the set whatever the
    # speed of the machine that measured the calibration (and no prediction ties with it).
    predicted = sorted(calibration.predict(s).latency_ms for s in specs)
    middle = len(predicted) // 2
    budgets = Budgets(latency_ms=(predicted[middle - 1] + predicted[middle]) / 2, activation_bytes=200_000)
    f = CandidateFilter(budgets, calibration)
    for batched, single in zip(f.check_many(specs), [f.check(s) for s in specs]):
        assert (batched.accepted, batched.reason) == (single.accepted, single.reason)
        assert batched.predicted_latency_ms == pytest.approx(single.predicted_latency_ms, rel=1e-9)
        assert batched.margins == pytest.approx(single.margins, rel=1e-9)
    assert {d.accepted for d in f.check_many(specs)} == {True, False}


def test_latency_budget_without_calibration_and_bad_budgets_are_user_errors():
    with pytest.raises(UserError, match="needs a calibration"):
        CandidateFilter(Budgets(latency_ms=5.0))
    with pytest.raises(UserError, match="must be a positive number"):
        Budgets(params=-3)
