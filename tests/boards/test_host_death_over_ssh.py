"""A one-shot measurement on a board stops when the host process that started it dies: its
stdin is the SSH channel and ends with the session, or, through the board's control process,
the control process sees its client go and calls the measurement off."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

REPO = Path(__file__).resolve().parents[2]


def _agent_pids(digest: str):
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and "device_agent" in cmdline and "measure" in cmdline and digest in cmdline:
            pids.append(int(entry.name))
    return pids


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def _start_control_process(home: Path, model: Path) -> None:
    """A first short measurement, which leaves the board's control process listening."""
    subprocess.run(
        [sys.executable, "-m", "hostside.cli", "measure", "--board", "loop", str(model), "--runs", "1", "--warmup", "0"],
        check=True, capture_output=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(home), "OMP_NUM_THREADS": "1"},
    )
    assert _wait(lambda: list((home / "control").glob("loop-*.sock")), 30), "no control process started"


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
@pytest.mark.parametrize("via_control", [False, True], ids=["own-connection", "via-control"])
def test_killing_hostside_measure_stops_the_measurement_on_the_board(installed_board, home, slow_model, how, via_control):
    digest = hashlib.sha256(slow_model.read_bytes()).hexdigest()
    if via_control:
        _start_control_process(home, slow_model)
    host = subprocess.Popen(
        [sys.executable, "-m", "hostside.cli", "measure", "--board", "loop", str(slow_model), "--runs", "1000000", "--warmup", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(home), "OMP_NUM_THREADS": "1",
             **({} if via_control else {"HOSTSIDE_NO_CONTROL": "1"})},
    )
    try:
        assert _wait(lambda: _agent_pids(digest), 60), "the measurement never started on the board"
        time.sleep(0.5)
        host.send_signal(how)
        host.wait(timeout=20)
        assert _wait(lambda: not _agent_pids(digest), 15), "the board's measurement outlived the host"
        if how == signal.SIGINT:
            assert host.returncode == 130 and "Traceback" not in host.stderr.read()
    finally:
        host.kill()
        for pid in _agent_pids(digest):
            os.kill(pid, signal.SIGKILL)
