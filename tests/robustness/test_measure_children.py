"""A measuring child dies with the ``hostside measure`` that started it, and
numbers that would never end a measurement are refused before anything runs."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest

from robustness_helpers import REPO, assert_one_error_line, kill_quietly, processes_matching, run_cli, wait_for


def _start_measure(model, home) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hostside.cli", "measure", "--board", "local", str(model), "--runs", "1000000", "--warmup", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(home), "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill", "ctrl-c", "term"])
def test_killing_hostside_measure_stops_its_agent_child(slow_model, tmp_path, how):
    host = _start_measure(slow_model, tmp_path / "home")
    cached = hashlib.sha256(slow_model.read_bytes()).hexdigest()  # the agent measures its cached copy
    try:
        assert wait_for(lambda: processes_matching("device_agent", "measure", cached), 60)
        time.sleep(0.5)
        host.send_signal(how)
        host.wait(timeout=20)
        assert wait_for(lambda: not processes_matching("device_agent", "measure", cached), 10), \
            "the agent's measuring child outlived hostside measure"
        if how == signal.SIGINT:
            assert host.returncode == 130
            err = host.stderr.read()
            assert "Traceback" not in err and err.strip().count("\n") == 0
        # The board's lock is free: the next measurement starts at once.
        done = run_cli(["measure", "--board", "local", str(slow_model), "--runs", "1", "--warmup", "0", "--json"],
                       env={"HOSTSIDE_HOME": str(tmp_path / "home")}, timeout_s=60)
        assert done.returncode == 0, done.stderr
    finally:
        host.kill()
        kill_quietly(processes_matching("device_agent", "measure", cached))


@pytest.mark.parametrize("flags", [["--min-time", "nan"], ["--min-time", "inf"], ["--min-time", "-2"], ["--timeout-s", "nan"],
                                   ["--timeout-s", "0"], ["--idle-s", "nan"], ["--seed", "-1"], ["--threads", "0"]])
def test_non_finite_or_negative_numbers_are_refused_in_one_line(conv_model, flags, tmp_path):
    done = run_cli(["measure", "--board", "local", str(conv_model), *flags], env={"HOSTSIDE_HOME": str(tmp_path)}, timeout_s=60)
    assert_one_error_line(done, flags[0])
    assert not (tmp_path / "local-agent").exists()  # refused before anything ran


def test_device_agent_serve_with_an_impossible_port_is_one_line():
    assert_one_error_line(run_cli(["serve", "--port", "99999"], program="device_agent"), "1 to 65535")
