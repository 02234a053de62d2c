"""The ``batch`` measure option (MENNDL times its networks at batch 100): the
batch axis set on every input, recorded, refused where the model fixes another batch, bounded by
the protocol, forwarded by the daemon, and energy per image = energy per run / batch."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from device_agent.bench import MeasureError, make_input, measure_model
from device_agent.daemon import Agent, DaemonConfig
from device_agent.protocol import validate_request

SHA = "a" * 64


def test_batch_sets_the_input_shape_and_is_recorded(conv_model):
    result = measure_model(conv_model, warmup=1, runs=5, seed=3, batch=16)
    assert result["error"] is None
    assert result["input"] == {"name": "x", "shape": [16, 1, 8, 8], "seed": 3, "dtype": "float32"}
    assert result["protocol"]["batch"] == 16
    (output,) = result["outputs"]
    assert output["shape"] == [16, 10]
    session = ort.InferenceSession(str(conv_model), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"x": make_input([16, 1, 8, 8], 3, np.float32)})[0]
    np.testing.assert_allclose(np.array(output["values"]).reshape(16, 10), expected, rtol=1e-5, atol=1e-6)
    assert measure_model(conv_model, warmup=1, runs=5)["protocol"]["batch"] == 1


def test_a_model_with_a_fixed_batch_axis_is_refused_at_another_batch(slow_model):
    """slow_net's input is fixed at [256, 256]: measurable as it is, not at batch 100."""
    with pytest.raises(MeasureError) as caught:
        measure_model(slow_model, warmup=0, runs=1, batch=100)
    assert caught.value.code == "invalid_model"
    message = str(caught.value)
    assert "input 'x'" in message and "fixed batch size 256" in message and "dynamic batch axis" in message
    assert measure_model(slow_model, warmup=0, runs=1)["input"]["shape"] == [256, 256]
    assert measure_model(slow_model, warmup=0, runs=1, batch=256)["input"]["shape"] == [256, 256]


def test_cli_batch_flag_measures_and_reports_a_fixed_batch_with_its_code(conv_model, slow_model):
    def cli(*args):
        done = subprocess.run([sys.executable, "-m", "device_agent", "measure", *args, "--json"],
                              capture_output=True, text=True, timeout=120)
        return done.returncode, json.loads(done.stdout) if done.stdout.startswith("{") else None, done.stderr

    rc, result, _ = cli(str(conv_model), "--runs", "3", "--batch", "8")
    assert rc == 0 and result["input"]["shape"] == [8, 1, 8, 8] and result["protocol"]["batch"] == 8
    rc, result, _ = cli(str(slow_model), "--runs", "1", "--batch", "8")
    assert rc == 1 and result["error"]["code"] == "invalid_model"
    for bad in ("0", "65537", "x"):
        rc, result, stderr = cli(str(conv_model), "--batch", bad)
        assert rc == 2 and result is None and len(stderr.strip().splitlines()) == 1 and "--batch" in stderr


@pytest.mark.parametrize("value", [0, -1, 65537, True, 2.5, "100"])
def test_protocol_refuses_a_batch_out_of_range_or_of_another_type(value):
    refusal = validate_request({"op": "measure", "sha256": SHA, "batch": value})
    assert refusal is not None and "'batch'" in refusal


def test_protocol_accepts_a_batch_in_range():
    for value in (1, 100, 65536):
        assert validate_request({"op": "measure", "sha256": SHA, "batch": value}) is None


def test_daemon_forwards_the_batch_to_its_measuring_child(conv_model):
    agent = Agent(DaemonConfig(memory_limit_mb=2048, timeout_s=60))
    try:
        data = conv_model.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        assert agent.handle({"op": "upload", "sha256": digest, "data_b64": base64.b64encode(data).decode()})["cached"]
        result = agent.handle({"op": "measure", "sha256": digest, "runs": 3, "warmup": 1, "batch": 32})
        assert result["error"] is None and result["input"]["shape"] == [32, 1, 8, 8]
        assert result["protocol"]["batch"] == 32
        refused = agent.handle({"op": "measure", "sha256": digest, "batch": 0})
        assert refused["error"]["code"] == "bad_request"
    finally:
        agent.close()


def test_energy_per_image_is_energy_per_run_over_the_batch(conv_model, pi_sysfs_fixture, monkeypatch):
    """The INA219 fixture reports a constant 2.5 W."""
    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(pi_sysfs_fixture))
    result = measure_model(conv_model, warmup=1, runs=20, power="hwmon", idle_s=0.1, batch=50)
    power = result["power"]
    assert power["source"] == "hwmon:hwmon0:ina219"
    assert power["energy_per_inference_mj"] == pytest.approx(power["energy_total_mj"] / 20)
    assert power["energy_per_image_mj"] == pytest.approx(power["energy_per_inference_mj"] / 50)
    assert power["energy_total_mj"] == pytest.approx(2.5 * power["window_s"] * 1e3, rel=0.05)
    single = measure_model(conv_model, warmup=1, runs=20, power="hwmon", idle_s=0.1)["power"]
    assert single["energy_per_image_mj"] == single["energy_per_inference_mj"]
