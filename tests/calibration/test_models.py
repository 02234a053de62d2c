"""The regressions on a real measured calibration set from ``calibration_data/``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostside.calibration.calibrate import TARGET_COLUMN
from hostside.calibration.features import FEATURE_NAMES, features_matrix
from hostside.calibration.measure import MEASUREMENTS_CSV, load_measured_specs, read_measurements
from hostside.calibration.models import (BASELINE, CACHE_BYTES_GRID, KERNEL_FEATURES, fit_all, fit_model,
                                         model_from_json, score)
from hostside.calibration.registry import CALIBRATION_DATA

DATA_SETS = sorted(p.parent for p in CALIBRATION_DATA.glob(f"*/{MEASUREMENTS_CSV}"))


@pytest.fixture(scope="module", params=DATA_SETS, ids=[p.name for p in DATA_SETS])
def measured(request):
    rows = [r for r in read_measurements(request.param / MEASUREMENTS_CSV) if not r["error"]]
    specs = load_measured_specs(request.param, rows)
    block = json.loads((request.param / "calibration.json").read_text())["feature_params"]["nchwc_block"]
    return features_matrix(specs, block), np.array([float(r[TARGET_COLUMN]) for r in rows])


def test_there_is_a_measured_set_for_this_machine():
    assert DATA_SETS, f"no measured calibration set under {CALIBRATION_DATA}"


def test_kernel_model_beats_the_macs_params_baseline_held_out(measured):
    features, latency = measured
    chosen, models, report = fit_all(features, latency)
    cv = {kind: entry["cross_validated"] for kind, entry in report["models"].items()}
    assert chosen != BASELINE
    assert cv[chosen]["mape"] < 0.6 * cv[BASELINE]["mape"]
    assert cv[chosen]["within_20pct"] >= 0.75
    assert cv[chosen]["spearman"] >= 0.98
    # the 90% interval from cross-validated residuals covers about 90% of held-out models
    assert 0.8 <= cv[chosen]["interval_coverage"] <= 0.97


def test_models_survive_a_json_round_trip(measured):
    features, latency = measured
    _, models, _ = fit_all(features, latency)
    for model in models.values():
        again = model_from_json(json.loads(json.dumps(model.data)))
        assert np.array_equal(again.predict(features), model.predict(features))


def test_score_counts_shares_within_bounds():
    measured_ms = np.array([1.0, 2.0, 3.0, 4.0])
    predicted_ms = np.array([1.05, 2.3, 2.1, 4.0])
    s = score(measured_ms, predicted_ms)
    assert s["within_10pct"] == 0.5 and s["within_20pct"] == 0.75
    assert s["mape"] == pytest.approx((0.05 + 0.15 + 0.3) / 4)
    assert s["spearman"] == pytest.approx(0.8)


def test_additive_fit_finds_the_cache_size_a_latency_cliff_was_made_with(measured):
    """Latencies made from the real suite's features with known per-kernel costs plus a cost
    per weight byte beyond 4 MiB: the fit recovers the cache size and the latencies."""
    features, _ = measured
    rng = np.random.default_rng(0)
    kernel = [FEATURE_NAMES.index(name) for name in KERNEL_FEATURES]
    per_unit = rng.uniform(0.5, 2.0, len(kernel)) / np.maximum(features[:, kernel].mean(axis=0), 1.0) * 1e-3
    cache_bytes = 4 * 2**20
    uncached = np.maximum(features[:, FEATURE_NAMES.index("params")] * 4 - cache_bytes, 0.0)
    assert (uncached > 0).sum() >= 10, "the measured suite must reach beyond the cache"
    latency = 0.005 + features[:, kernel] @ per_unit + uncached * 4e-8
    model = fit_model("additive_kernels", features, latency)
    assert model.data["cache_bytes"] == cache_bytes
    assert np.max(np.abs(model.predict(features) / latency - 1.0)) < 0.01


def test_the_fitted_cache_size_is_one_of_the_grid(measured):
    features, latency = measured
    model = fit_model("additive_kernels", features, latency)
    assert model.data["cache_bytes"] in CACHE_BYTES_GRID
    assert model.data["ms_per_uncached_weight_byte"] >= 0.0
