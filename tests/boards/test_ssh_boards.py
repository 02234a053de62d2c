"""End-to-end board tests against a real sshd on loopback (see conftest.py)."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from device_agent.bench import make_input
from hostside.boards import open_board
from hostside.errors import UserError

pytestmark = pytest.mark.ssh


def _reference_output(model: Path, shape, seed: int) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: make_input(shape, seed, np.float32)})[0]


def test_measure_over_ssh_one_shot_matches_host_onnxruntime(installed_board, conv_model):
    with open_board("loop") as board:
        result = board.measure(conv_model, runs=30, seed=7)
    assert result["error"] is None
    assert result["host"]["path"] == "one-shot"
    assert result["host"]["upload_s"] > 0
    assert result["latency_ms"]["count"] == 30
    assert 0 < result["latency_ms"]["min"] <= result["latency_ms"]["median"] <= result["latency_ms"]["p99"]
    assert result["protocol"]["threads"] == 1 and result["protocol"]["runs"] == 30
    expected = _reference_output(conv_model, result["input"]["shape"], result["input"]["seed"])
    np.testing.assert_allclose(np.array(result["outputs"][0]["values"]).reshape(expected.shape), expected, rtol=1e-5, atol=1e-6)


def test_measure_through_daemon_uploads_once(daemon, conv_model):
    with open_board("loop") as board:
        first = board.measure(conv_model, runs=10)
        second = board.measure(conv_model, runs=10)
    assert first["error"] is None and second["error"] is None
    assert first["host"]["path"] == second["host"]["path"] == "daemon"
    assert first["host"]["upload_s"] > 0
    assert second["host"]["upload_s"] == 0.0
    assert first["outputs"][0]["sha256"] == second["outputs"][0]["sha256"]


def test_unknown_host_key_is_refused_then_trusted(board_config, home, capsys):
    from hostside.cli import main

    (home / "known_hosts").unlink()
    assert main(["boards", "check", "loop"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0
    assert "unknown host key ssh-ed25519 SHA256:" in line and "hostside boards trust loop" in line
    assert main(["boards", "trust", "loop", "--yes"]) == 0
    assert "SHA256:" in capsys.readouterr().out
    with open_board("loop") as board:
        assert board.info()["cores"] >= 1


def test_changed_host_key_is_refused(board_config, home, sshd, capsys, tmp_path):
    import paramiko

    from hostside.boards import ssh
    from hostside.cli import main

    ssh.trust(board_config, paramiko.Ed25519Key.from_private_key_file(str(sshd.client_key)))
    assert main(["boards", "check", "loop"]) == 2
    assert "differs from the trusted one" in capsys.readouterr().err


def test_wrong_user_key_is_refused(board_config, tmp_path, capsys):
    import subprocess

    from hostside.boards import inventory
    from hostside.cli import main

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    inventory.remove("loop")
    inventory.add(dataclasses.replace(board_config, key=str(other)))
    assert main(["boards", "check", "loop"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hostside: error: board 'loop' refused") and "ssh-copy-id" in err


def test_wrong_port_is_one_clear_line(home, conv_model, capsys):
    from hostside.boards import inventory
    from hostside.cli import main

    inventory.add(inventory.BoardConfig(name="nowhere", host="127.0.0.1", port=1, user="root", retries=0))
    assert main(["measure", "--board", "nowhere", str(conv_model)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "connection refused" in err


def test_board_without_agent_or_python_says_what_to_do(board_config, bare_python, conv_model):
    from hostside.boards import inventory

    inventory.remove("loop")
    inventory.add(dataclasses.replace(board_config, python=bare_python))
    with open_board("loop") as board, pytest.raises(UserError, match="hostside boards install loop"):
        board.measure(conv_model, runs=5)
    inventory.remove("loop")
    inventory.add(dataclasses.replace(board_config, python="/nonexistent/python3"))
    with open_board("loop") as board, pytest.raises(UserError, match="has no Python"):
        board.info()


def test_install_names_what_is_missing_and_how_to_fix_it(board_config, bare_python):
    from hostside.boards.install import install

    with pytest.raises(UserError, match="cannot run '/nonexistent/python3'.*Python 3.9"):
        install(dataclasses.replace(board_config, python="/nonexistent/python3"), say=lambda _: None)
    with pytest.raises(UserError, match="numpy cannot be imported.*pip install onnxruntime numpy"):
        install(dataclasses.replace(board_config, python=bare_python), say=lambda _: None)


@pytest.mark.slow
@pytest.mark.parametrize("with_daemon", [False, True], ids=["one-shot", "daemon"])
def test_link_cut_mid_measurement_is_retried_and_reported_once(request, installed_board, sshd, slow_model, with_daemon):
    if with_daemon:
        request.getfixturevalue("daemon")
    results = []
    with open_board("loop") as board:
        first = board.measure(slow_model, runs=1, warmup=0)  # upload first, so the cut hits the measurement
        # Enough runs to last about 4 s on this machine, so the cut after 1 s lands mid-measurement
        # (150 fixed runs took 0.75 s on a fast core and finished before the cut).
        runs = max(150, math.ceil(4000.0 / first["latency_ms"]["median"]))
        worker = threading.Thread(target=lambda: results.append(board.measure(slow_model, runs=runs, warmup=1)))
        worker.start()
        time.sleep(1.0)
        assert sshd.cut_connections() >= 1
        worker.join(timeout=120)
    assert len(results) == 1
    result = results[0]
    assert result["error"] is None, result["error"]
    assert result["host"]["attempts"] == 2
    assert result["latency_ms"]["count"] == runs
    if with_daemon:
        assert result.get("replayed") is True  # the daemon's finished result, not a second run


def test_check_reports_the_daemon_and_what_is_missing(daemon, capsys):
    from hostside.cli import main

    assert main(["boards", "check", "loop", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["daemon"]["pid"] == daemon.process.pid
    assert report["info"]["protocol_version"] == 1
    daemon.stop()
    assert main(["boards", "check", "loop"]) == 0
    out = capsys.readouterr().out
    assert "daemon not running" in out and "install-agent.sh" in out


def test_daemon_killed_falls_back_then_restarted(daemon, conv_model):
    with open_board("loop") as board:
        assert board.measure(conv_model, runs=5)["host"]["path"] == "daemon"
        daemon.stop()
        fallback = board.measure(conv_model, runs=5)
        assert fallback["error"] is None and fallback["host"]["path"] == "one-shot"
        daemon.start()
        again = board.measure(conv_model, runs=5)
    assert again["error"] is None and again["host"]["path"] == "daemon"


@pytest.mark.parametrize("with_daemon", [False, True], ids=["one-shot", "daemon"])
def test_corrupt_onnx_is_an_invalid_model_result(request, installed_board, not_onnx_file, with_daemon, capsys):
    from hostside.cli import main

    if with_daemon:
        request.getfixturevalue("daemon")
    with open_board("loop") as board:
        result = board.measure(not_onnx_file, runs=5)
    assert result["error"]["code"] == "invalid_model"
    assert str(not_onnx_file) in result["error"]["message"]
    assert main(["measure", "--board", "loop", str(not_onnx_file)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "[invalid_model]" in err


def test_model_over_memory_limit_is_out_of_memory_and_daemon_lives(daemon, huge_model, conv_model):
    with open_board("loop") as board:
        result = board.measure(huge_model, runs=1, warmup=0)
        assert result["error"]["code"] == "out_of_memory", result["error"]
        assert board.measure(conv_model, runs=5)["host"]["path"] == "daemon"
    assert daemon.process.poll() is None


def test_daemon_refuses_paths_outside_its_cache(daemon):
    from hostside.boards.daemon_client import DaemonClient
    from hostside.boards.ssh import SSHTransport

    transport = SSHTransport(daemon.config)
    try:
        token = transport.daemon_token()
        client = DaemonClient(transport.open_daemon(daemon.config.daemon_port), transport.is_alive, "loop", token)
        for request in (
            {"op": "measure", "sha256": "../../../../etc/passwd"},
            {"op": "measure", "sha256": "0" * 64, "model_path": "/etc/passwd"},
            {"op": "upload", "sha256": "/tmp/x", "data_b64": ""},
        ):
            reply = client.request(request, 10.0)
            assert reply["error"]["code"] == "bad_request", reply
        missing = client.request({"op": "measure", "sha256": "0" * 64}, 10.0)
        assert missing["error"]["code"] == "upload_error"
        assert client.request({"op": "hello"}, 10.0)["error"] is None  # the connection survives refusals
    finally:
        transport.close()


def test_samples_come_back_through_the_daemon(daemon, conv_model):
    with open_board("loop") as board:
        result = board.measure(conv_model, runs=25, keep_samples=True)
        plain = board.measure(conv_model, runs=25)
    assert len(result["samples_ms"]) == 25 and "samples_ms" not in plain
