"""End to end: a second process on a live run is refused in one line naming
the live one, and Ctrl-C stops a search within seconds, says how to resume, prints no worker
traceback and leaves the journal resumable (not "running")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from robustness_helpers import REPO, assert_one_error_line, candidate_statuses, run_cli, run_status

pytestmark = pytest.mark.slow


def test_a_live_run_is_locked_and_ctrl_c_leaves_it_resumable(tmp_path, digits_calibration):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    search = subprocess.Popen(
        [sys.executable, "-m", "hostside.cli", "search", "--budget", "30", "--population", "3", "--epochs", "3",
         "--calibration", str(digits_calibration), "--out", str(run_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while "training" not in candidate_statuses(run_dir):
            assert search.poll() is None, search.stderr.read()
            assert time.monotonic() < deadline, "no candidate started training within three minutes"
            time.sleep(0.1)

        second = run_cli(["search", "--resume", str(run_dir)], env={"HOSTSIDE_HOME": str(tmp_path / "home")}, timeout_s=60)
        assert_one_error_line(second, "in use by process", str(search.pid))
        assert run_status(run_dir) == "running"

        os.killpg(search.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        started = time.monotonic()
        _, err = search.communicate(timeout=30)
        took_s = time.monotonic() - started
    finally:
        if search.poll() is None:
            os.killpg(search.pid, signal.SIGKILL)
            search.wait()
    assert took_s < 10, f"the search took {took_s:.1f} s to stop"
    assert search.returncode == 130
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert "interrupted" in last and f"--resume {run_dir}" in last
    assert run_status(run_dir) != "running"
    listed = run_cli(["runs", "show", str(run_dir)], env={"HOSTSIDE_HOME": str(tmp_path / "home")}, timeout_s=60)
    assert listed.returncode == 0, listed.stderr
