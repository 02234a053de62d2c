"""Latency measurement with real onnxruntime sessions, and the CLI's error results."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from device_agent.bench import make_input, measure_model


def run_cli(*args: str, env_extra=None):
    import os

    done = subprocess.run(
        [sys.executable, "-m", "device_agent", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env_extra or {})},
    )
    return done.returncode, (json.loads(done.stdout) if done.stdout.startswith("{") else None), done.stderr


def test_make_input_is_seeded_and_typed():
    a = make_input([1, 3, 4], 5, np.float32)
    assert a.dtype == np.float32 and a.shape == (1, 3, 4)
    np.testing.assert_array_equal(a, make_input([1, 3, 4], 5, np.float32))
    assert not np.array_equal(a, make_input([1, 3, 4], 6, np.float32))
    ints = make_input([100], 0, np.int64)
    assert ints.dtype == np.int64 and ints.min() >= 0 and ints.max() < 10


def test_measure_reports_latency_protocol_and_reproducible_outputs(conv_model):
    result = measure_model(conv_model, threads=2, warmup=3, runs=40, seed=11)
    assert result["error"] is None
    latency = result["latency_ms"]
    assert set(latency) == {"median", "mean", "p90", "p99", "min", "std", "count"}
    assert latency["count"] == 40 and 0 < latency["min"] <= latency["median"] <= latency["p90"] <= latency["p99"]
    assert result["protocol"]["threads"] == 2 and result["protocol"]["warmup"] == 3 and result["protocol"]["spinning"] is False
    assert result["input"] == {"name": "x", "shape": [1, 1, 8, 8], "seed": 11, "dtype": "float32"}
    session = ort.InferenceSession(str(conv_model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": make_input([1, 1, 8, 8], 11, np.float32)})[0]
    (output,) = result["outputs"]
    assert output["name"] == "logits" and output["shape"] == [1, 10]
    np.testing.assert_allclose(np.array(output["values"]).reshape(1, 10), expected, rtol=1e-5, atol=1e-6)
    assert result["power"] is None and result["throttled"] is False


def test_min_time_mode_runs_until_the_time_is_spent(slow_model):
    result = measure_model(slow_model, warmup=1, runs=None, min_time_s=0.3)
    assert result["protocol"]["min_time_s"] == 0.3 and result["protocol"]["runs"] is None
    assert result["latency_ms"]["count"] >= 10
    assert result["latency_ms"]["mean"] * result["latency_ms"]["count"] >= 0.3 * 1000 * 0.9


def test_frequency_change_during_run_is_flagged(slow_model, pi_sysfs_fixture, monkeypatch, set_value):
    """A fixture cpufreq whose clock drops mid-run (as on a Pi passing 60 degrees C)."""
    import threading

    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(pi_sysfs_fixture))
    cur = pi_sysfs_fixture / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
    timer = threading.Timer(0.4, lambda: set_value(cur, "1200000\n"))
    timer.start()
    result = measure_model(slow_model, warmup=0, runs=None, min_time_s=1.0)
    timer.join()
    assert result["frequency_changed"] is True
    assert result["system"]["min_freq_khz"] == 1200000 and result["system"]["max_freq_khz"] == 1400000
    assert any("governor" in w for w in result["warnings"])
    assert result["system"]["before"]["temperature_c"] == 61.234


def test_cli_measure_json(conv_model):
    code, result, _ = run_cli("measure", str(conv_model), "--runs", "5", "--json")
    assert code == 0 and result["error"] is None and result["latency_ms"]["count"] == 5
    assert result["limits"]["memory_limit_mb"] > 0 and result["queue_wait_s"] >= 0


@pytest.mark.parametrize(
    "fixture, extra, code",
    [
        ("not_onnx_file", [], "invalid_model"),
        ("huge_model", ["--memory-limit-mb", "1024"], "out_of_memory"),
    ],
)
def test_cli_measure_failures_carry_an_error_code(request, fixture, extra, code):
    model = request.getfixturevalue(fixture)
    rc, result, _ = run_cli("measure", str(model), "--json", *extra)
    assert rc == 1
    assert result["error"]["code"] == code and result["latency_ms"] is None


def test_cli_measure_missing_file_is_one_line(tmp_path):
    rc, _, stderr = run_cli("measure", str(tmp_path / "nope.onnx"))
    assert rc == 1 and stderr.strip().count("\n") == 0 and "does not exist" in stderr


def test_cli_timeout_kills_the_run(slow_model):
    rc, result, _ = run_cli("measure", str(slow_model), "--runs", "100000", "--timeout-s", "1", "--json")
    assert result is None and rc == -14  # SIGALRM: the parent reads it as a timeout
    from device_agent.protocol import classify_exit

    assert classify_exit(rc, killed_for_time=False)["code"] == "timeout"


def test_cli_info_json_and_selftest():
    rc, facts, _ = run_cli("info", "--json")
    assert rc == 0 and facts["cores"] >= 1 and "frequency" in facts
    rc, selftest, _ = run_cli("selftest", "--json")
    assert rc == 0 and selftest["ok"] is True
