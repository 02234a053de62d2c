"""``hostside runs analyze`` on a real run: every trained network timed at batch
100 and 1 over the validation split, params, energy from a power source sampled every 100 ms.
The host has no power meter, so the source is an INA219 hwmon sysfs fixture tree (2.5 W), as the
agent tests use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, digits_calibration) -> Path:
    run_dir = tmp_path_factory.mktemp("analysis") / "run"
    done = subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--budget", "4", "--population", "2",
                           "--epochs", "1", "--final-epochs", "1", "--calibration", str(digits_calibration),
                           "--out", str(run_dir)], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return run_dir


@pytest.fixture
def ina219_sysfs_fixture(tmp_path) -> Path:
    """An INA219 on hwmon0 reporting a constant 2.5 W (the agent tests' Pi fixture tree)."""
    hwmon = tmp_path / "sys/class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    for name, value in (("name", "ina219"), ("power1_input", "2500000"), ("curr1_input", "500"), ("in1_input", "5000")):
        (hwmon / name).write_text(value + "\n")
    return tmp_path


def test_analyze_measures_every_network_and_labels_the_picks(trained_run, ina219_sysfs_fixture):
    done = subprocess.run([sys.executable, "-m", "hostside.cli", "runs", "analyze", str(trained_run),
                           "--sysfs-root", str(ina219_sysfs_fixture)], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((trained_run / "analysis.json").read_text())
    split = json.loads((trained_run / "split.json").read_text())
    assert result["images"] == len(split["val"]) and result["power_source"]
    assert len(result["networks"]) >= 4  # every trained network, the re-trained front included
    for net in result["networks"]:
        assert net["time_per_image_ms"] > 0 and net["time_per_image_batch1_ms"] > 0 and net["params"] > 0
        # constant 2.5 W integrated over the timed pass: energy/image = 2.5 W x time/image (within sampling)
        assert net["energy_per_image_mj"] == pytest.approx(2.5 * net["time_per_image_ms"], rel=0.5)
    labels = [p["label"] for info in result["metrics"].values() for p in info["picks"]]
    assert labels == list("ABCDEFGHI")
    for key, info in result["metrics"].items():
        values = {n["id"]: n for n in result["networks"]}
        lowest, accurate, best = info["picks"]
        assert lowest[key] == min(n[key] for n in values.values())
        assert accurate["accuracy"] == max(n["accuracy"] for n in values.values())
        assert best["id"] in info["front"]
    assert (trained_run / "analysis.png").stat().st_size > 10_000
    assert "| A |" in (trained_run / "analysis.md").read_text() and "| A |" in done.stdout


def test_analyze_with_another_board_or_bad_weights_is_one_line(trained_run):
    for extra, needle in ((["--board", "pi4"], "--board 'pi4'"), (["--weights", "x"], "--weights 'x'")):
        done = subprocess.run([sys.executable, "-m", "hostside.cli", "runs", "analyze", str(trained_run), *extra],
                              env=ENV, capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and needle in done.stderr, done.stderr
