"""Searches, and bad input to them, on a real Dask scheduler and real worker processes
on loopback, a worker SIGKILLed mid-training, the scheduler going away and coming back."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import numpy as np
import pytest

from hostside.search.loopback_cluster import cluster_env

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.slow


def _search(args: List[str], cwd: Path = REPO, env=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hostside.cli", "search", *args], cwd=cwd, env=cluster_env(env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _search_args(address: str, run_dir: Path, calibration: Path, budget: int = 4, epochs: int = 1) -> List[str]:
    return ["--cluster", address, "--budget", str(budget), "--population", "2", "--epochs", str(epochs),
            "--final-epochs", "1", "--policy", "steady-state", "--calibration", str(calibration), "--out", str(run_dir)]


def _rows(run_dir: Path):
    try:
        db = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT id, status, train_metrics, weights_sha256 FROM candidates")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


def _wait_for(predicate, process: subprocess.Popen, timeout_s: float = 240):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert process.poll() is None, process.communicate()
        time.sleep(0.2)
    raise AssertionError("timed out")


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.strip() and not line.startswith("[")]
    assert len(errors) == 1, stderr
    return errors[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_search_on_two_workers_journals_every_training_once(loopback_cluster, digits_calibration, tmp_path):
    loopback_cluster.start("w1", "w2")
    run_dir = tmp_path / "run"
    search = _search(_search_args(loopback_cluster.address, run_dir, digits_calibration, budget=6))
    out, err = search.communicate(timeout=400)
    assert search.returncode == 0, err
    rows = [r for r in _rows(run_dir) if r["status"] != "rejected"]
    assert len(rows) == 6 and all(r["status"] == "measured" for r in rows), rows
    trained_on = {json.loads(r["train_metrics"])["worker"] for r in rows}
    assert trained_on == {"w1", "w2"}, trained_on  # both workers trained; the master wrote every file
    for row in rows:
        assert (run_dir / "candidates" / f"{row['id']:05d}" / "weights.npz").is_file()


def test_a_worker_killed_mid_training_costs_only_that_training(loopback_cluster, digits_calibration, tmp_path):
    loopback_cluster.start("w1", "w2")
    run_dir = tmp_path / "run"
    search = _search(_search_args(loopback_cluster.address, run_dir, digits_calibration, budget=4, epochs=6))
    _wait_for(lambda: sum(r["status"] == "training" for r in _rows(run_dir)) >= 2, search)
    time.sleep(1.0)  # both workers are inside a training now
    loopback_cluster.kill_worker("w1")
    out, err = search.communicate(timeout=400)
    assert search.returncode == 0, err
    rows = [r for r in _rows(run_dir) if r["status"] != "rejected"]
    assert len(rows) == 4 and all(r["status"] == "measured" for r in rows), rows
    assert len({r["id"] for r in rows}) == 4
    workers = [json.loads(r["train_metrics"])["worker"] for r in rows]
    assert workers.count("w2") >= 3, workers  # the killed one's training was re-run on w2


def test_scheduler_lost_ends_in_one_line_and_resume_retrains_nothing_finished(loopback_cluster, digits_calibration,
                                                                               tmp_path):
    port = _free_port()
    loopback_cluster.start_scheduler(port)
    loopback_cluster.start_worker("w1")
    loopback_cluster.wait_for_workers(1)
    run_dir = tmp_path / "run"
    search = _search(_search_args(loopback_cluster.address, run_dir, digits_calibration, budget=5, epochs=3))
    _wait_for(lambda: any(r["status"] == "measured" for r in _rows(run_dir)), search)
    loopback_cluster.stop_scheduler()
    loopback_cluster.kill_worker("w1")
    out, err = search.communicate(timeout=120)
    assert search.returncode != 0
    assert "lost the Dask scheduler" in _one_line(err) and "--resume" in err
    before = {r["id"]: r["weights_sha256"] for r in _rows(run_dir) if r["status"] == "measured"}
    assert before

    loopback_cluster.start_scheduler(port)
    loopback_cluster.start_worker("w1b")
    loopback_cluster.wait_for_workers(1)
    resumed = _search(["--resume", str(run_dir)])
    out, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err
    after = {r["id"]: r for r in _rows(run_dir)}
    for cid, sha in before.items():  # nothing finished lost or retrained
        assert after[cid]["status"] == "measured" and after[cid]["weights_sha256"] == sha
        assert json.loads(after[cid]["train_metrics"])["worker"] == "w1"
    trained = [r for r in after.values() if r["status"] != "rejected"]
    assert len(trained) == 5 and all(r["status"] == "measured" for r in trained)


def test_unreachable_scheduler_is_one_line(digits_calibration, tmp_path):
    search = _search(_search_args(f"tcp://127.0.0.1:{_free_port()}", tmp_path / "run", digits_calibration),
                     env={"HOSTSIDE_CLUSTER_CONNECT_S": "2"})
    _, err = search.communicate(timeout=120)
    assert search.returncode != 0
    assert "cannot reach the Dask scheduler" in _one_line(err)


def test_scheduler_without_workers_is_one_line_after_a_bounded_wait(loopback_cluster, digits_calibration, tmp_path):
    loopback_cluster.start_scheduler()
    started = time.monotonic()
    search = _search(_search_args(loopback_cluster.address, tmp_path / "run", digits_calibration),
                     env={"HOSTSIDE_CLUSTER_WAIT_S": "2"})
    _, err = search.communicate(timeout=120)
    assert search.returncode != 0 and time.monotonic() - started < 100
    assert "has no workers after 2 s" in _one_line(err)


def test_worker_with_another_hostside_version_is_refused_with_both(loopback_cluster, digits_calibration, tmp_path):
    preload = tmp_path / "other_version.py"
    preload.write_text("import hostside\nhostside.__version__ = '9.9.9'\n")
    loopback_cluster.start_scheduler()
    worker = loopback_cluster.start_worker("old")
    worker.kill()
    worker.wait()
    loopback_cluster.workers["old"] = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", loopback_cluster.address, "--nthreads", "1",
         "--no-nanny", "--no-dashboard", "--name", "old", "--preload", str(preload)],
        env=cluster_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    loopback_cluster.wait_for_workers(1)
    search = _search(_search_args(loopback_cluster.address, tmp_path / "run", digits_calibration))
    _, err = search.communicate(timeout=120)
    assert search.returncode != 0
    line = _one_line(err)
    assert "hostside 9.9.9" in line and "hostside 0." in line, line


def test_dataset_a_worker_cannot_read_is_one_line(loopback_cluster, digits_calibration, tmp_path):
    from sklearn.datasets import load_digits

    digits = load_digits()
    master_dir = tmp_path / "master"
    master_dir.mkdir()
    np.savez(master_dir / "data.npz", x=digits.images[:, None].astype(np.float32), y=digits.target)
    loopback_cluster.start_scheduler()
    loopback_cluster.start_worker("w1")  # its cwd is the repository: no data.npz there
    loopback_cluster.wait_for_workers(1)
    run_dir = tmp_path / "run"
    search = _search(_search_args(loopback_cluster.address, run_dir, digits_calibration)[:-2] + ["--out", str(run_dir),
                     "--dataset", "npz:data.npz"], cwd=master_dir)
    _, err = search.communicate(timeout=120)
    assert search.returncode != 0
    line = _one_line(err)
    assert "cannot read the dataset 'npz:data.npz'" in line, line
    assert not [r for r in _rows(run_dir) if r["status"] != "rejected"]
