"""MENNDL's steady-state GA: ``hostside search --strategy menndl`` breeds as results arrive,
and an accuracy-driven search measures every network after the last training."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hostside.search.loopback_cluster import cluster_env

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_menndl_search_evolves_as_results_arrive(tmp_path, digits_calibration):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "search", "--strategy", "menndl", "--budget", "8", "--population", "3",
         "--epochs", "1", "--final-epochs", "1", "--workers", "2", "--calibration", str(digits_calibration),
         "--out", str(run_dir)], cwd=REPO, env=cluster_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    config = json.loads((run_dir / "config.json").read_text())
    assert config["space"] == "menndl" and config["policy"] == "steady-state"
    db = sqlite3.connect(run_dir / "journal.sqlite")
    rows = db.execute("SELECT id, operator, parents, status FROM candidates ORDER BY id").fetchall()
    attrs = {(cid, key) for cid, key in db.execute("SELECT candidate_id, key FROM attrs")}
    db.close()
    trained = [r for r in rows if r[3] != "rejected"]
    assert len(trained) == 8
    assert [r[1] for r in trained[:3]] == ["sample"] * 3
    children = [r for r in trained[3:] if r[1] != "sample"]
    assert children and all(json.loads(r[2]) for r in children)  # bred from the population
    assert any((r[0], "menndl.fitness") in attrs for r in trained)


@pytest.mark.slow
def test_an_accuracy_driven_search_keeps_training_and_measures_after_the_last_training(tmp_path, digits_calibration):
    """Nothing the run judges by comes from the board, which shares this host: the workers are
    not held for measurements; children are bred from trained, not yet measured, parents; every
    network is measured once the trainings are done."""
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "search", "--strategy", "menndl", "--objectives", "accuracy,params",
         "--budget", "6", "--population", "2", "--epochs", "1", "--final-epochs", "1", "--workers", "2",
         "--calibration", str(digits_calibration), "--out", str(run_dir)],
        cwd=REPO, env=cluster_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "networks are measured after the last training" in done.stderr
    search_phase = done.stderr.split("re-training the Pareto front")[0].splitlines()
    trained = [i for i, line in enumerate(search_phase) if ": trained - " in line]
    measured = [i for i, line in enumerate(search_phase) if ": measured - " in line]
    assert len(trained) == 6 and len(measured) == 6 and max(trained) < min(measured)
    db = sqlite3.connect(run_dir / "journal.sqlite")
    rows = db.execute("SELECT operator, parents, status, latency_ms FROM candidates ORDER BY id").fetchall()
    db.close()
    assert all(status == "measured" and latency > 0 for _, _, status, latency in rows)
    assert any(op != "sample" and json.loads(parents) for op, parents, _, _ in rows)  # bred before any measurement
