"""Pareto elaboration: the target grid, sliding windows, laws per window and every sample judged by
cost and predicted latency; windows the space cannot reach are skipped and listed."""

import json

import pytest

from hostside.calibration.artifact import load_calibration
from hostside.cli import main
from hostside.laws.elaborate import elaborate, target_grid, windows_of
from hostside.laws.ga import GASettings
from hostside.spaces.narrow import make_narrow



def test_grid_is_the_papers():
    grid = target_grid()
    assert grid[:4] == [1e3, 2e3, 5e3, 1e4] and grid[-1] == 1e7 and len(grid) == 13
    assert len(windows_of(grid)) == 12 and windows_of(grid)[0] == (1e3, 2e3)


def test_elaborate_judges_every_sample_and_skips_unreachable_windows(tmp_path, shipped_calibration):
    space = make_narrow("narrow:plain", (1, 8, 8), 10)
    calibration = load_calibration(shipped_calibration)
    windows = [(1e3, 2e3), (2e3, 5e3), (1e8, 2e8)]
    result = elaborate(space, calibration, windows, GASettings(n_init=10, n_steps=10, k=2), n_val=5, out_dir=tmp_path,
                       say=lambda _: None)
    assert [w["window"] for w in result["windows"]] == [[1e3, 2e3], [2e3, 5e3]]
    assert result["skipped"][0]["window"] == [1e8, 2e8] and "reachable range" in result["skipped"][0]["reason"]
    rows = result["population"]
    assert len(rows) == result["networks"] == 2 * 2 * 5
    for row in rows:
        spec = space.decode(row["config"])
        assert row["params"] == spec.cost.params and row["macs"] == spec.cost.macs
        assert row["latency_ms"] == pytest.approx(calibration.predict(spec).latency_ms, rel=1e-9)
    saved = json.loads((tmp_path / "population.json").read_text())
    assert saved["networks"] == 20 and (tmp_path / "population.png").stat().st_size > 5_000


def test_elaborate_command_needs_a_calibration(tmp_path, capsys, shipped_calibration):
    assert main(["laws", "elaborate", "--space", "narrow:plain", "--out", str(tmp_path)]) == 2
    assert "give --calibration FILE or --board NAME" in capsys.readouterr().err
    assert main(["laws", "elaborate", "--space", "narrow:plain", "--input-shape", "1,8,8", "--calibration",
                 shipped_calibration, "--decades", "3", "--n-init", "10", "--n-steps", "5", "-k", "2", "--n-val", "3",
                 "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "population.json").read_text())["networks"] == 3 * 2 * 3
