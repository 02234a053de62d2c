"""One process per run directory (hostside.run_lock)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hostside.errors import UserError
from hostside.run_lock import acquire_run_lock, hold_run_lock, holder
from robustness_helpers import REPO


def _hold_in_child(run_dir) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from hostside.run_lock import acquire_run_lock; "
         "lock = acquire_run_lock(sys.argv[1]); print('held', flush=True); time.sleep(120)", str(run_dir)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_naming_the_live_one(tmp_path):
    child = _hold_in_child(tmp_path)
    try:
        with pytest.raises(UserError) as refused:
            acquire_run_lock(tmp_path)
        message = str(refused.value)
        assert f"process {child.pid}" in message and f"kill -INT {child.pid}" in message
        assert "\n" not in message
        assert holder(tmp_path)["pid"] == child.pid
    finally:
        child.kill()
        child.wait()
    # SIGKILL leaves no stale lock: the kernel dropped it with the process.
    with hold_run_lock(tmp_path) as lock:
        assert holder(tmp_path) is not None
        assert lock.path == tmp_path / "run.lock"
    assert holder(tmp_path) is None


def test_the_lock_is_per_directory(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with hold_run_lock(tmp_path / "a"), hold_run_lock(tmp_path / "b"):
        assert holder(tmp_path / "a")["pid"] == os.getpid()
