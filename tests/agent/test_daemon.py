"""The daemon's request handling, and a real Unix-socket daemon serving a measurement."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from device_agent.daemon import Agent, DaemonConfig
from device_agent.protocol import PROTOCOL_VERSION, ProtocolError, classify_exit, decode, encode, read_message


def _upload(agent: Agent, data: bytes):
    return agent.handle({"op": "upload", "sha256": hashlib.sha256(data).hexdigest(), "data_b64": base64.b64encode(data).decode()})


def test_requests_naming_paths_or_bad_ops_are_refused():
    agent = Agent(DaemonConfig(memory_limit_mb=1024))
    for request in (
        {"op": "measure", "sha256": "../../etc/passwd"},
        {"op": "measure", "sha256": "a" * 64, "path": "/etc/passwd"},
        {"op": "shell", "cmd": "rm -rf /"},
        {"op": "measure", "sha256": "a" * 64, "runs": -3},
    ):
        assert agent.handle(request)["error"]["code"] == "bad_request"


def test_upload_is_checked_and_cached(conv_model):
    agent = Agent(DaemonConfig(memory_limit_mb=1024))
    data = conv_model.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert agent.handle({"op": "has_model", "sha256": digest})["cached"] is False
    bad = agent.handle({"op": "upload", "sha256": digest, "data_b64": base64.b64encode(data[:-1]).decode()})
    assert bad["error"]["code"] == "upload_error" and "does not match" in bad["error"]["message"]
    assert _upload(agent, data)["cached"] is True
    assert agent.handle({"op": "has_model", "sha256": digest})["cached"] is True


def test_measure_in_child_with_replay_of_a_repeated_id(conv_model, not_onnx_file):
    agent = Agent(DaemonConfig(memory_limit_mb=2048, timeout_s=60))
    digest = hashlib.sha256(conv_model.read_bytes()).hexdigest()
    _upload(agent, conv_model.read_bytes())
    first = agent.handle({"op": "measure", "sha256": digest, "runs": 5, "id": "req-1"})
    assert first["error"] is None and first["latency_ms"]["count"] == 5
    assert first["system"]["pid"] != os.getpid()  # measured in a child process
    again = agent.handle({"op": "measure", "sha256": digest, "runs": 5, "id": "req-1"})
    assert again["replayed"] is True and again["system"]["pid"] == first["system"]["pid"]
    broken = hashlib.sha256(not_onnx_file.read_bytes()).hexdigest()
    _upload(agent, not_onnx_file.read_bytes())
    assert agent.handle({"op": "measure", "sha256": broken})["error"]["code"] == "invalid_model"
    agent.close()


def test_measure_for_a_minimum_time_runs_until_that_time_not_a_fixed_count(conv_model):
    agent = Agent(DaemonConfig(memory_limit_mb=2048, timeout_s=60))
    digest = hashlib.sha256(conv_model.read_bytes()).hexdigest()
    _upload(agent, conv_model.read_bytes())
    result = agent.handle({"op": "measure", "sha256": digest, "min_time_s": 0.5, "warmup": 1})
    agent.close()
    assert result["error"] is None
    assert result["protocol"]["runs"] is None and result["protocol"]["min_time_s"] == 0.5
    # The runs' own latencies add up to nearly the whole window (the loop takes the rest).
    timed_s = result["latency_ms"]["mean"] * result["latency_ms"]["count"] / 1000
    assert timed_s >= 0.8 * 0.5


def test_child_timeout_is_a_timeout_result(slow_model):
    agent = Agent(DaemonConfig(memory_limit_mb=2048, timeout_s=1))
    digest = hashlib.sha256(slow_model.read_bytes()).hexdigest()
    _upload(agent, slow_model.read_bytes())
    result = agent.handle({"op": "measure", "sha256": digest, "runs": 100000})
    agent.close()
    assert result["error"]["code"] == "timeout"


def test_classify_exit_names_crashes():
    assert classify_exit(-signal.SIGSEGV, False)["code"] == "runtime_error"
    assert "SIGSEGV" in classify_exit(-signal.SIGSEGV, False)["message"]
    assert "Illegal instruction" in classify_exit(128 + signal.SIGILL, False)["message"]
    assert classify_exit(-signal.SIGKILL, False)["code"] == "out_of_memory"
    assert classify_exit(-signal.SIGKILL, True)["code"] == "timeout"


def test_protocol_lines_are_versioned():
    line = encode({"op": "hello"})
    assert decode(line) == {"op": "hello", "v": PROTOCOL_VERSION}
    with pytest.raises(ProtocolError, match="does not match"):
        decode(b'{"op": "hello", "v": 99}\n')
    with pytest.raises(ProtocolError):
        decode(b"not json\n")


def test_unix_socket_daemon_serves_and_survives_a_garbage_line(tmp_path, conv_model, agent_home):
    socket_path = tmp_path / "agent.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "device_agent", "serve", "--socket", str(socket_path), "--memory-limit-mb", "2048"],
        env={**os.environ, "DEVICE_AGENT_HOME": str(agent_home)},
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert oct(socket_path.stat().st_mode & 0o777) == "0o600"
        with socket.socket(socket.AF_UNIX) as garbage:
            garbage.connect(str(socket_path))
            garbage.sendall(b"garbage\n")
            assert b"bad_request" in garbage.makefile("rb").readline()
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(socket_path))
            stream = conn.makefile("rwb")
            data = conv_model.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            stream.write(encode({"op": "upload", "sha256": digest, "data_b64": base64.b64encode(data).decode()}))
            stream.flush()
            assert read_message(stream)["cached"] is True
            stream.write(encode({"op": "measure", "sha256": digest, "runs": 5}))
            stream.flush()
            result = read_message(stream)
        assert result["error"] is None and result["latency_ms"]["count"] == 5
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)
    assert daemon.returncode == 0


def test_thermal_guard_waits_for_the_fixture_zone_to_cool(conv_model, pi_sysfs_fixture, monkeypatch, set_value):
    """The Pi fixture's thermal zone reads 61.2 C; the guard at 60 C waits until it drops."""
    import threading

    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(pi_sysfs_fixture))
    agent = Agent(DaemonConfig(memory_limit_mb=2048, thermal_guard_c=60.0, thermal_poll_s=0.05))
    digest = hashlib.sha256(conv_model.read_bytes()).hexdigest()
    _upload(agent, conv_model.read_bytes())
    zone = pi_sysfs_fixture / "sys/class/thermal/thermal_zone0/temp"
    timer = threading.Timer(0.5, lambda: set_value(zone, "52000\n"))
    timer.start()
    result = agent.handle({"op": "measure", "sha256": digest, "runs": 3})
    timer.join()
    agent.close()
    assert result["error"] is None
    assert result["thermal_guard_wait_s"] >= 0.45
    assert result["system"]["before"]["temperature_c"] == 52.0


def test_serve_on_a_busy_port_is_one_clear_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "device_agent", "serve", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "cannot listen on 127.0.0.1:" in done.stderr


def test_model_cache_keeps_to_its_bound_evicting_the_least_recently_used(agent_home, monkeypatch):
    from device_agent import store

    monkeypatch.setenv(store.CACHE_MAX_ENV, str(2.5 / 1024))  # 2.5 KiB: room for two 1 KiB models
    blobs = [bytes([i]) * 1024 for i in range(4)]
    digests = [hashlib.sha256(b).hexdigest() for b in blobs]
    store.store_model(digests[0], blobs[0])
    time.sleep(0.01)
    store.store_model(digests[1], blobs[1])
    time.sleep(0.01)
    assert store.has_model(digests[0])  # a hit makes model 0 the most recently used
    time.sleep(0.01)
    store.store_model(digests[2], blobs[2])
    assert [store.has_model(d) for d in digests[:3]] == [True, False, True]
    store.store_model(digests[3], blobs[3])
    assert store.has_model(digests[3])
    assert sum(p.stat().st_size for p in store.models_dir().glob("*.onnx")) <= 2.5 * 1024
