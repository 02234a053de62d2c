"""End to end on emulated ARM boards, reached over SSH exactly like a real Raspberry Pi.

For every variant (arm64 bookworm with onnxruntime from PyPI, armhf trixie with Debian's
onnxruntime, arm64 bullseye with Python 3.9): an unknown host key is refused, and ``boards
trust`` shows the board's real key; ``boards install`` passes its one-inference preflight
with the board's own Python, and names the fix when that Python is missing; ``boards check``
reports the board's architecture, Python and onnxruntime; ``measure`` through the daemon
returns outputs equal to the host's onnxruntime on the same seeded input. Emulated timings
mean nothing, so nothing measured here may reach ``calibration_data/``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from hostside.calibration.registry import CALIBRATION_DATA

pytestmark = [pytest.mark.arm, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]


def write_small_model(path: Path) -> Path:
    """Conv -> Relu -> Flatten -> Gemm, the operators our search spaces export.

    ir_version 8 / opset 17: the oldest onnxruntime we support on a board (Debian's 1.21
    on armhf, 1.19 on Python 3.9) must accept the file, whatever the host's onnx writes by
    default.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    conv_w = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    conv_b = rng.standard_normal(4).astype(np.float32)
    gemm_w = rng.standard_normal((10, 4 * 6 * 6)).astype(np.float32)
    gemm_b = rng.standard_normal(10).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("Flatten", ["relu"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "gemm_w", "gemm_b"], ["logits"], transB=1),
        ],
        "arm_e2e",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(gemm_w, "gemm_w"),
            numpy_helper.from_array(gemm_b, "gemm_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def host_outputs(model_path: Path, input_facts: Dict[str, object]) -> List[np.ndarray]:
    """The host's onnxruntime on the same seeded input the agent generated on the board."""
    import onnxruntime

    from device_agent.bench import make_input

    feed = make_input(input_facts["shape"], input_facts["seed"], np.float32)
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {input_facts["name"]: feed})


def files_mentioning(root: Path, needles: List[str]) -> List[str]:
    """Files under root whose text contains any of the needles (board names, device keys).

    Other engineers and CI steps may write calibration_data/ while these tests run, so the
    check looks for this board's traces rather than for any change at all.
    """
    hits = []
    for path in root.rglob("*") if root.exists() else []:
        if path.is_file():
            text = path.read_text(errors="replace")
            hits += [f"{path}: {needle}" for needle in needles if needle in text]
    return hits


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_unknown_host_key_is_refused(board, tmp_path: Path, hostside_cli, add_board_to) -> None:
    add_board_to(tmp_path, "untrusted", board)
    result = hostside_cli(tmp_path, "boards", "check", "untrusted")
    assert result.returncode == 2, result.stdout + result.stderr
    error = last_line(result.stderr)
    assert error.startswith("hostside: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert "boards trust untrusted" in error, error


def test_install_with_a_python_the_board_lacks_is_one_clear_error(board, tmp_path: Path, hostside_cli,
                                                                    add_board_to) -> None:
    add_board_to(tmp_path, "nopython", board, "--python", "/opt/no-such-python3")
    assert hostside_cli(tmp_path, "boards", "trust", "nopython", "--yes").returncode == 0
    result = hostside_cli(tmp_path, "boards", "install", "nopython")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    error = last_line(result.stderr)
    assert error.startswith("hostside: error:") and "--python" in error, result.stderr


def test_trust_shows_the_boards_own_host_key(installed_board: Dict[str, object]) -> None:
    board = installed_board["board"]
    shown = installed_board["trust"].stdout
    fingerprints = {kind: "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(blob)).digest()).decode().rstrip("=")
                    for kind, blob in board.host_keys}
    assert any(f"{kind} {fp}" in shown for kind, fp in fingerprints.items()), (shown, fingerprints)


def test_install_passes_preflight(installed_board: Dict[str, object]) -> None:
    result = installed_board["install"]
    assert result.returncode == 0, result.stdout + result.stderr
    board = installed_board["board"]
    # The preflight ran one inference with the board's own Python and onnxruntime.
    assert f"onnxruntime {board.manifest['onnxruntime']} on {board.manifest['machine']}" in result.stdout, result.stdout


def test_check_reports_architecture_python_and_onnxruntime(installed_board: Dict[str, object], hostside_cli) -> None:
    board = installed_board["board"]
    result = hostside_cli(installed_board["home"], "boards", "check", installed_board["name"], "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)["info"]
    reported = (info["architecture"], info["python"], info["onnxruntime"]["version"])
    assert reported == (board.manifest["machine"], board.manifest["python"], board.manifest["onnxruntime"])
    assert info["emulated"] is True


def test_calibrating_an_emulated_board_is_refused(installed_board: Dict[str, object], tmp_path: Path,
                                                  hostside_cli) -> None:
    result = hostside_cli(installed_board["home"], "calibrate", "--board", installed_board["name"], "--quick",
                          "--out", str(tmp_path / "cal"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "emulated ARM rig" in last_line(result.stderr), result.stderr
    assert not (tmp_path / "cal" / "measurements.csv").exists()


def test_measure_through_daemon_matches_host_outputs(installed_board: Dict[str, object], tmp_path: Path,
                                                     hostside_cli) -> None:
    model = write_small_model(tmp_path / "small.onnx")
    result = hostside_cli(installed_board["home"], "measure", "--board", installed_board["name"], str(model),
                          "--json", "--threads", "1", "--warmup", "1", "--runs", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    measured = json.loads(result.stdout)
    assert measured.get("error") is None, measured.get("error")
    assert measured["host"]["path"] == "daemon", measured["host"]
    assert measured["latency_ms"]["median"] > 0
    expected = host_outputs(model, measured["input"])
    assert [out["name"] for out in measured["outputs"]] == ["logits"]
    for out, host in zip(measured["outputs"], expected):
        assert out["shape"] == list(host.shape)
        np.testing.assert_allclose(np.asarray(out["values"], dtype=np.float32).reshape(host.shape), host,
                                   rtol=1e-4, atol=1e-5)
    traces = [installed_board["name"], measured["model"]["sha256"]]
    assert files_mentioning(CALIBRATION_DATA, traces) == [], \
        "a measurement from an emulated board was written to hostside/calibration_data/"
