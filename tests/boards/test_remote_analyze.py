"""``hostside runs analyze RUN --board NAME`` times every trained network of a
real run on a board through its device agent (here the loopback board: this machine reached
through a real sshd), at batch 100 and 1, with energy from the board's power source (an INA219
hwmon sysfs fixture tree seen by the board's daemon, 2.5 W), accuracy computed on this host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostside import cli
from hostside.analysis import analyze_run, board_power
from device_agent.protocol import agent_flags

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, digits_calibration) -> Path:
    root = tmp_path_factory.mktemp("remote-analysis")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HOSTSIDE_HOME": str(root / "home")}
    done = subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--budget", "2", "--population", "2",
                           "--epochs", "1", "--final-epochs", "1", "--calibration", str(digits_calibration),
                           "--out", str(root / "run")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return root / "run"


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    """A private copy: each test writes its own analysis.json."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.fixture
def ina219_root(tmp_path, monkeypatch) -> Path:
    """An INA219 on hwmon0 at a constant 2.5 W, for the agent started after this fixture."""
    hwmon = tmp_path / "sensors/sys/class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    for name, value in (("name", "ina219"), ("power1_input", "2500000"), ("curr1_input", "500"), ("in1_input", "5000")):
        (hwmon / name).write_text(value + "\n")
    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(tmp_path / "sensors"))
    return tmp_path / "sensors"


@pytest.fixture
def sensor_daemon(ina219_root, daemon):
    """The board's daemon, started (after ina219_root set its environment) with the sensor tree."""
    return daemon


def _analyze(capsys, *args: str):
    code = cli.main(["runs", "analyze", *args])
    return code, capsys.readouterr()


def test_analyze_on_a_board_times_every_network_there(run_copy, sensor_daemon, capsys):
    local = analyze_run(run_copy, sysfs_root=run_copy / "no-sensors", progress=lambda _: None)
    code, out = _analyze(capsys, str(run_copy), "--board", "loop", "--power", "hwmon")
    assert code == 0, out.err
    result = json.loads((run_copy / "analysis.json").read_text())
    assert result["board"] == "loop" and result["complete"] is True
    assert result["board_key"] and result["agent"]["agent_version"] and result["agent"]["cores"] >= 1
    assert result["power_source"] == "hwmon" and "board loop" in (run_copy / "analysis.md").read_text()
    accuracy = {net["id"]: net["accuracy"] for net in local["networks"]}
    assert len(result["networks"]) == len(accuracy) >= 2
    for net in result["networks"]:
        assert net["time_per_image_ms"] > 0 and net["time_per_image_batch1_ms"] > 0 and net["params"] > 0
        assert net["accuracy"] == accuracy[net["id"]]  # the same ONNX file gives the same predictions
        # the board's sensor reads a constant 2.5 W: mJ/image = 2.5 W x ms/image (the agent's mean
        # power comes from a window of a few ms here, whose two ends a loaded host may stall)
        assert net["energy_per_image_mj"] == pytest.approx(2.5 * net["time_per_image_ms"], rel=0.2)
    assert all(info["available"] for info in result["metrics"].values())
    assert (run_copy / "analysis.png").stat().st_size > 10_000
    assert "on board loop" in out.err and "| A |" in out.out


def test_a_failed_board_measurement_is_one_line_and_keeps_what_was_measured(run_copy, installed_board, capsys, monkeypatch):
    """Through the one-shot path (no daemon): the second network's file is damaged on the way."""
    local = analyze_run(run_copy, sysfs_root=run_copy / "no-sensors", progress=lambda _: None)
    second = run_copy / local["networks"][1]["onnx"]
    good = second.read_bytes()
    second.write_bytes(b"not an onnx model")
    # Past the journal's hash check (which would refuse the damaged file before any board
    # work), so the failure comes from the board, after the first network was measured.
    monkeypatch.setattr("hostside.safe_io._sha256_mismatch", lambda path, sha256: None)
    code, out = _analyze(capsys, str(run_copy), "--board", "loop")
    assert code != 0 and "Traceback" not in out.err
    line = out.err.strip().splitlines()[-1]
    assert line.startswith("hostside: error: candidate ") and f"candidate {local['networks'][1]['id']} " in line
    assert "invalid_model" in line and "board 'loop'" in line
    partial = json.loads((run_copy / "analysis.json").read_text())
    assert partial["complete"] is False and [n["id"] for n in partial["networks"]] == [local["networks"][0]["id"]]
    assert partial["power_source"] is None  # this machine has no sensor the agent could find

    second.write_bytes(good)
    code, out = _analyze(capsys, str(run_copy), "--board", "loop")
    assert code == 0, out.err
    assert "kept from the interrupted analysis 1/" in out.err
    result = json.loads((run_copy / "analysis.json").read_text())
    assert result["complete"] is True and len(result["networks"]) == len(local["networks"])
    assert result["networks"][0] == partial["networks"][0]
    assert all(n["energy_per_image_mj"] is None for n in result["networks"])
    assert not result["metrics"]["energy_per_image_mj"]["available"]


def test_unknown_board_or_sysfs_root_for_a_board_is_one_line(run_copy, home, capsys):
    for extra, needle in ((["--board", "nope"], "--board 'nope': unknown board 'nope'"),
                          (["--board", "nope", "--sysfs-root", "/tmp"], "--sysfs-root applies to --board local only")):
        code, out = _analyze(capsys, str(run_copy), *extra)
        assert code != 0 and len(out.err.strip().splitlines()) == 1 and needle in out.err, out.err
    assert not (run_copy / "analysis.json").exists()


def test_board_power_is_the_given_source_else_the_first_readable_one(ina219_root):
    from device_agent.system import info

    facts = info(ina219_root)
    assert board_power(None, facts) == "hwmon:hwmon0"
    assert board_power("rapl", facts) == "rapl"
    assert board_power(None, {**facts, "power_sources": [{"spec": "rapl:package", "readable": False}]}) is None


def test_batch_travels_only_when_not_one():
    options = {"threads": 1, "warmup": 1, "seed": 0, "runs": 4, "timeout_s": 60.0, "batch": 1}
    assert "--batch" not in agent_flags(options)
    flags = agent_flags({**options, "batch": 100})
    assert flags[flags.index("--batch") + 1] == "100"
