"""Drift checks and transfer to another board (or thread count), on this machine's real
onnxruntime, against the tiny calibration of conftest.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostside.calibration import load_calibration
from hostside.calibration.artifact import Calibration
from hostside.calibration.drift import DriftReport, check_drift, drift_suite
from hostside.calibration.features import features_matrix
from hostside.calibration.models import KERNEL_GROUPS, kernel_contributions
from hostside.calibration.suite import calibration_suite
from hostside.calibration.transfer import choose_samples, fit_transfer
from hostside.errors import UserError


def _hostside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostside.cli", *args], capture_output=True, text=True, timeout=300)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tiny_calibration_dir: Path) -> Calibration:
    return load_calibration(tiny_calibration_dir / "calibration.json")


def test_kernel_contributions_sum_to_every_models_prediction(tiny):
    features = features_matrix(calibration_suite(20, seed=5), tiny.nchwc_block)
    for kind, model in tiny.models.items():
        parts = kernel_contributions(model, features)
        assert parts.shape == (20, len(KERNEL_GROUPS)) and (parts >= -1e-12).all()
        np.testing.assert_allclose(parts.sum(axis=1), model.predict(features), rtol=1e-9, err_msg=kind)


def test_drift_suite_spreads_over_the_predicted_latency_range(tiny):
    specs = drift_suite(tiny)
    predicted, _, _ = tiny.predict_many(specs)
    assert 6 <= len(specs) <= 12 and len({s.content_hash() for s in specs}) == len(specs)
    assert predicted.max() / predicted.min() > 10


@pytest.mark.slow
def test_drift_check_on_the_board_it_was_calibrated_on(tiny):
    report = check_drift("local", tiny)
    assert isinstance(report, DriftReport) and report.models >= 6
    assert report.ratio_p10 <= report.ratio_median <= report.ratio_p90
    assert report.calibration_sha256 == tiny.sha256
    assert json.loads(json.dumps(report.to_dict()))["drifted"] == report.drifted
    assert report.seconds < 60


@pytest.mark.slow
def test_check_cli_reports_the_ratio_and_refuses_beyond_the_tolerance(tiny_calibration_dir):
    cal = str(tiny_calibration_dir / "calibration.json")
    tight = _hostside("calibrate", "--check", "--board", "local", "--calibration", cal, "--tolerance", "0.0001")
    line = _one_line_error(tight, "drifted", "hostside calibrate --board local", "--transfer-from")
    assert "measured/predicted" in line
    assert "measured/predicted latency" in tight.stdout  # the figure is printed before the verdict


def test_calibration_of_another_board_kind_says_a_transfer_would_do(tiny, tmp_path):
    body = json.loads(json.dumps(tiny.body))
    body["provenance"]["board"]["key"] = "aarch64-cortex-a72-4c"
    path = Calibration(body).save(tmp_path / "pi.json")
    result = _hostside("calibrate", "--check", "--board", "local", "--calibration", str(path))
    _one_line_error(result, "aarch64-cortex-a72-4c", "--transfer-from")


def test_a_board_that_answers_nothing_is_one_line(tiny, tiny_calibration_dir):
    from hostside.boards import inventory

    inventory.add(inventory.BoardConfig(name="dead", host="127.0.0.1", port=1, user="root", retries=0,
                                        device_key=tiny.board["key"]))
    result = _hostside("calibrate", "--check", "--board", "dead", "--calibration",
                       str(tiny_calibration_dir / "calibration.json"))
    _one_line_error(result, "dead")


def test_transfer_samples_span_the_latency_range_and_kernel_mix(tiny):
    pool = calibration_suite(40, seed=9)
    picks = choose_samples(tiny, pool, 10)
    assert len(set(picks)) == 10
    predicted, _, _ = tiny.predict_many(pool)
    assert {int(np.argmin(predicted)), int(np.argmax(predicted))} <= set(picks)


def test_transfer_recovers_group_scales_of_a_synthetic_board(tiny):
    """A board whose conv kernels are 3x slower and floor 2x: ten samples find it."""
    pool = calibration_suite(40, seed=9)
    features = features_matrix(pool, tiny.nchwc_block)
    parts = kernel_contributions(tiny.models[tiny.chosen], features)
    truth = np.array([3.0 if g == "conv" else 2.0 if g == "floor" else 1.0 for g in KERNEL_GROUPS])
    y = parts @ truth
    picks = choose_samples(tiny, pool, 10)
    model, report = fit_transfer(tiny, features[picks], y[picks])
    rel = model.predict(features) / y - 1
    assert np.mean(np.abs(rel) < 0.10) >= 0.9, report


@pytest.mark.slow
def test_transfer_cli_to_two_threads_writes_a_loadable_calibration(tiny_calibration_dir, tmp_path):
    out = tmp_path / "two-threads"
    result = _hostside("calibrate", "--board", "local", "--threads", "2", "--transfer-from",
                       str(tiny_calibration_dir / "calibration.json"), "--samples", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    moved = load_calibration(out / "calibration.json")
    assert moved.threads == 2 and moved.chosen == "transferred"
    assert moved.provenance["transfer"]["source_sha256"] == load_calibration(
        tiny_calibration_dir / "calibration.json").sha256
    prediction = moved.predict(calibration_suite(3, seed=1)[0])
    assert 0 < prediction.interval_ms[0] <= prediction.latency_ms <= prediction.interval_ms[1]


def test_emulated_boards_never_calibrate_into_calibration_data(tmp_path):
    from hostside.calibration.calibrate import check_emulated
    from hostside.calibration.registry import CALIBRATION_DATA

    class Rig:
        name = "qemu-arm64"

    with pytest.raises(UserError, match="emulated ARM rig"):
        check_emulated(Rig(), {"emulated": True}, tmp_path, allow_emulated=False)
    with pytest.raises(UserError, match="never go there"):
        check_emulated(Rig(), {"emulated": True}, CALIBRATION_DATA / "arm", allow_emulated=True)
    check_emulated(Rig(), {"emulated": True}, tmp_path, allow_emulated=True)


def test_the_search_gate_skips_fresh_calibrations_and_refuses_a_drifted_board(tiny, tmp_path):
    from hostside.calibration.drift import drift_gate

    said = []
    fresh = drift_gate("local", tiny, 0.15, said.append)
    assert fresh["sha256"] == tiny.sha256 and "min ago" in fresh["drift"] and not said
    assert "drift_tolerance = 0" in drift_gate("local", tiny, 0, said.append)["drift"]
    body = json.loads(json.dumps(tiny.body))
    body["provenance"]["date"] = "2020-01-01T00:00:00+00:00"
    old = load_calibration(Calibration(body).save(tmp_path / "old.json"))
    with pytest.raises(UserError, match="drifted .* re-calibrate with `hostside calibrate --board local"):
        drift_gate("local", old, 1e-6, said.append)
    assert any("measured/predicted" in line for line in said)


@pytest.mark.parametrize("content, fragment", [(b"\x00\x01binary", "not a text file"),
                                                ("[" * 100_000 + "]" * 100_000, "nested")],
                         ids=["binary", "deeply_nested"])
def test_a_calibration_file_that_is_no_json_document_is_one_line(content, fragment, tmp_path):
    path = tmp_path / "calibration.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = _hostside("predict", "--calibration", str(path), str(tmp_path / "x.json"))
    _one_line_error(result, fragment)


def test_the_drift_summary_names_both_onnxruntime_versions():
    report = DriftReport("pi4", "cal.json", "0" * 64, 0.15, 1.3, 1.2, 1.4, [1.3], [1.3], [1.0], "1.31.1", "1.32.0",
                         20.0, [0.5, 0.5, 0.5])
    assert report.drifted and "onnxruntime 1.31.1" in report.summary() and "1.32.0" in report.summary()
    with pytest.raises(UserError, match=r"drifted \+30.0%"):
        report.raise_if_drifted()
