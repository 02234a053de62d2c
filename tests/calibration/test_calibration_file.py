"""A real calibration of the local board: its files, predictions, resumption and bad files."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostside.arch.build import build_module
from hostside.arch.export import export_onnx
from hostside.arch.random_specs import random_spec
from hostside.calibration import load_calibration
from hostside.calibration.artifact import checksum
from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate
from hostside.calibration.kernel_probes import probe_count
from hostside.calibration.measure import CSV_COLUMNS, LATENCY_COLUMNS, MEASUREMENTS_CSV
from hostside.errors import UserError

TINY_SUITE = 14  # as in conftest.py


def _hostside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostside.cli", *args], capture_output=True, text=True, timeout=120)


def test_calibration_writes_measurements_provenance_report_and_plot(tiny_calibration_dir: Path):
    rows = list(csv.DictReader((tiny_calibration_dir / MEASUREMENTS_CSV).open()))
    provenance = json.loads((tiny_calibration_dir / "provenance.json").read_text())
    # the suite, the floor probe, the kernel probes and the refining round
    assert len(rows) == TINY_SUITE + 1 + probe_count(TINY_SUITE) + provenance.get("refined_models", 0)
    assert [r["name"] for r in rows].count("floor-probe") == 1
    assert sum(r["name"].startswith("probe-") for r in rows) == probe_count(TINY_SUITE)
    assert list(rows[0]) == list(CSV_COLUMNS)
    for row in rows:
        assert row["error"] == ""
        assert 0 < float(row["latency_min_ms"]) <= float(row["latency_median_ms"]) <= float(row["latency_p90_ms"])
        assert int(row["latency_runs"]) >= 10
    assert provenance["threads"] == 1 and provenance["board"]["name"] == "local"
    assert provenance["board"]["info"]["cpu_model"] == provenance["board"]["cpu_model"]
    session, = provenance["sessions"]
    assert len(session["load_average_before"]) == 3 and len(session["load_average_after"]) == 3
    assert provenance["onnxruntime_version"]
    report = json.loads((tiny_calibration_dir / "fit_report.json").read_text())
    assert 0 < report["floor_probe_measured_ms"] < 1.0
    for entry in report["models"].values():
        assert set(entry["cross_validated"]) >= {"r2_log", "mape", "within_10pct", "within_20pct", "spearman"}
    assert (tiny_calibration_dir / "predicted_vs_measured.png").read_bytes()[:4] == b"\x89PNG"


def test_prediction_from_spec_and_from_its_onnx_file_agree(tiny_calibration_dir: Path, tmp_path: Path):
    calibration = load_calibration(tiny_calibration_dir / CALIBRATION_JSON)
    spec = random_spec(5, 4, 10, (1, 16, 16))
    onnx_path = tmp_path / "m.onnx"
    export_onnx(build_module(spec), onnx_path, check=False)
    spec_path = tmp_path / "m.json"
    spec.save(spec_path)
    by_spec = calibration.predict(spec)
    assert calibration.predict(onnx_path).latency_ms == pytest.approx(by_spec.latency_ms, rel=1e-12)
    assert calibration.predict(spec_path).latency_ms == pytest.approx(by_spec.latency_ms, rel=1e-12)
    lo, hi = by_spec.interval_ms
    assert 0 < lo <= by_spec.latency_ms <= hi
    latency, lows, highs = calibration.predict_many([spec, spec.to_dict()])
    assert latency.shape == lows.shape == highs.shape == (2,)
    assert latency[0] == latency[1] == pytest.approx(by_spec.latency_ms)


def test_predict_cli_prints_a_json_list_offline(tiny_calibration_dir: Path, tmp_path: Path):
    spec = random_spec(9, 4, 10, (3, 32, 32))
    spec.save(tmp_path / "a.json")
    export_onnx(build_module(spec), tmp_path / "a.onnx", check=False)
    done = _hostside("predict", "--calibration", str(tiny_calibration_dir / CALIBRATION_JSON),
                     str(tmp_path / "a.json"), str(tmp_path / "a.onnx"), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [p["path"] for p in out] == [str(tmp_path / "a.json"), str(tmp_path / "a.onnx")]
    assert out[0]["latency_ms"] == pytest.approx(out[1]["latency_ms"])
    assert out[0]["interval_ms"][0] <= out[0]["latency_ms"] <= out[0]["interval_ms"][1]


def test_predictions_rank_the_measured_suite(tiny_calibration_dir: Path):
    from scipy.stats import spearmanr

    from hostside.calibration.measure import load_measured_specs, read_measurements

    calibration = load_calibration(tiny_calibration_dir / CALIBRATION_JSON)
    rows = read_measurements(tiny_calibration_dir / MEASUREMENTS_CSV)
    measured = [float(r["latency_min_ms"]) for r in rows]
    predicted, _, _ = calibration.predict_many(load_measured_specs(tiny_calibration_dir, rows))
    assert spearmanr(measured, predicted).statistic > 0.9


OLD_FEATURES = "hostside.kernel-features/0"


def _rewrite(path: Path, mutate) -> None:
    body = json.loads(path.read_text())
    mutate(body)
    path.write_text(json.dumps(body))


@pytest.mark.parametrize("damage, message", [
    (lambda b: b.update(version=99), "version 99 is not supported"),
    (lambda b: b.update(feature_set=OLD_FEATURES, sha256=checksum({**b, "feature_set": OLD_FEATURES})), "feature set"),
    (lambda b: b["models"][b["chosen_model"]].update(intercept_ms=1.0), "checksum mismatch"),
    (lambda b: b.update(format="something-else"), "not a hostside calibration file"),
])
def test_incompatible_or_corrupted_files_are_one_clear_error(calibration_copy: Path, damage, message):
    path = calibration_copy / CALIBRATION_JSON
    _rewrite(path, damage)
    with pytest.raises(UserError, match=message):
        load_calibration(path)
    done = _hostside("predict", "--calibration", str(path), str(calibration_copy / "specs" / next(
        p.name for p in (calibration_copy / "specs").iterdir())))
    assert done.returncode == 2
    assert done.stderr.startswith("hostside: error: ") and len(done.stderr.strip().splitlines()) == 1


def test_truncated_file_is_one_clear_error(calibration_copy: Path):
    path = calibration_copy / CALIBRATION_JSON
    path.write_text(path.read_text()[:200])
    with pytest.raises(UserError, match="not valid JSON"):
        load_calibration(path)


def test_rerun_measures_only_what_is_missing(calibration_copy: Path):
    from hostside.boards.board import open_board

    csv_path = calibration_copy / MEASUREMENTS_CSV
    rows = list(csv.DictReader(csv_path.open()))
    kept, dropped = rows[:-2], rows[-2:]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    with open_board("local") as board:
        calibrate([board], calibration_copy, threads=1, size=TINY_SUITE)
    after = list(csv.DictReader(csv_path.open()))

    def measured(row):
        # The feature columns are rewritten with the block size each fit chooses (on 14 noisy
        # models the choice may flip); the measured columns must stay as they were.
        return {k: row[k] for k in ("spec_sha256", *LATENCY_COLUMNS, "measured_at")}

    assert [measured(r) for r in after[:len(kept)]] == [measured(r) for r in kept]  # not repeated
    assert {r["spec_sha256"] for r in after[len(kept):]} == {r["spec_sha256"] for r in dropped}


def test_other_settings_in_the_same_directory_are_refused(calibration_copy: Path):
    from hostside.boards.board import open_board

    with open_board("local") as board, pytest.raises(UserError, match="threads=1"):
        calibrate([board], calibration_copy, threads=2, size=TINY_SUITE)


def test_bad_input_shape_flag_is_one_clear_error(tmp_path: Path):
    done = _hostside("calibrate", "--board", "local", "--input-shape", "3x32x32", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "--input-shape '3x32x32' is not C,H,W" in done.stderr
    assert not (tmp_path / "x").exists()


def test_throughput_batches_many_specs(tiny_calibration_dir: Path):
    calibration = load_calibration(tiny_calibration_dir / CALIBRATION_JSON)
    specs = [random_spec(seed) for seed in range(50)]
    latency, lo, hi = calibration.predict_many(specs)
    assert np.all(lo <= latency) and np.all(latency <= hi) and np.all(latency > 0)
