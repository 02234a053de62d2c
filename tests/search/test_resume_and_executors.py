"""Resume after SIGKILL of a real ``hostside search`` process, local workers that end with their master,
and training on a real Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostside.cli import main
from hostside.journal import JOURNAL_FILE, Journal, run_status

pytestmark = pytest.mark.slow


def _rows(run_dir):
    path = run_dir / JOURNAL_FILE
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=30)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM candidates ORDER BY id")]
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        db.close()


@pytest.mark.parametrize("policy", ["generational", "steady-state"])
def test_resume_after_sigkill_retrains_nothing_finished_and_duplicates_nothing(in_tmp_cwd, digits_calibration, policy):
    run_dir = in_tmp_cwd / "run"
    command = [sys.executable, "-m", "hostside.cli", "search", "--budget", "9", "--population", "3", "--epochs", "2",
               "--final-epochs", "2", "--policy", policy, "--calibration", str(digits_calibration),
               "--out", str(run_dir)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    # Kill while a later generation (steady-state: after `population` results) is training.
    while not any(r["status"] == "training" and r["generation"] >= 1 for r in _rows(run_dir)):
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "the search trained no second generation within two minutes"
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the search and its training workers
    process.wait()
    interrupted = [r["id"] for r in _rows(run_dir) if r["status"] in ("pending", "training")]
    assert interrupted

    before = {r["id"]: r for r in _rows(run_dir) if r["status"] in ("measured", "rejected", "failed")}
    metrics_mtimes = {cid: (run_dir / "candidates" / f"{cid:05d}" / "metrics.json").stat().st_mtime_ns
                      for cid, r in before.items() if r["status"] == "measured"}
    assert not (run_dir / "pareto.json").exists()
    journal = Journal.open(run_dir)
    assert run_status(journal) == "interrupted"
    journal.close()

    assert main(["search", "--resume", str(run_dir)]) == 0

    after = {r["id"]: r for r in _rows(run_dir)}
    for cid, row in before.items():  # finished candidates are untouched: not retrained, not re-measured
        assert after[cid]["updated_at"] == row["updated_at"] and after[cid]["onnx_sha256"] == row["onnx_sha256"]
    for cid, mtime in metrics_mtimes.items():
        assert (run_dir / "candidates" / f"{cid:05d}" / "metrics.json").stat().st_mtime_ns == mtime
    assert len({r["key"] for r in after.values()}) == len(after)
    assert sum(r["status"] in ("trained", "measured", "failed") for r in after.values()) == 9
    assert not [r for r in after.values() if r["status"] in ("pending", "training", "trained")]
    assert all(after[cid]["status"] == "measured" for cid in interrupted)  # re-queued and finished
    assert json.loads((run_dir / "pareto.json").read_text())
    journal = Journal.open(run_dir)
    told = journal.all_attrs()
    assert all(told.get(cid, {}).get("engine.told") for cid, r in after.items() if r["status"] != "pending")
    assert journal.meta("config")["policy"] == policy
    journal.close()


MASTER_WITH_A_BUSY_WORKER = """
import os, time
from hostside.search.executors import TrainingExecutor
with TrainingExecutor(1) as pool:
    worker = pool.executor.submit(os.getpid).result()
    busy = pool.executor.submit(time.sleep, 600)
    while not busy.running():
        time.sleep(0.05)
    print(worker, flush=True)
    time.sleep(600)
"""


def _state_and_parent(pid):
    """A process's state letter and parent pid from the kernel's /proc (None: no such process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None, None
    return fields[0], int(fields[1])


def test_a_local_worker_ends_when_its_master_is_killed():
    """SIGKILL to the master alone (the OOM killer's way): its worker, mid-task, must not train on."""
    master = subprocess.Popen([sys.executable, "-c", MASTER_WITH_A_BUSY_WORKER], stdout=subprocess.PIPE, text=True)
    worker = int(master.stdout.readline())
    state, parent = _state_and_parent(worker)
    assert state not in (None, "Z") and parent == master.pid
    master.kill()
    master.wait()
    deadline = time.monotonic() + 10
    while _state_and_parent(worker)[0] not in (None, "Z", "X"):  # an orphan's zombie may wait for a reaper
        assert time.monotonic() < deadline, "the worker outlived its master by 10 s"
        time.sleep(0.1)


def test_resume_refuses_other_flags_in_one_line(in_tmp_cwd, capsys):
    assert main(["search", "--resume", "somewhere", "--budget", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume continues a run with the settings it started with" in err
    assert main(["search", "--resume", "nowhere"]) == 2
    assert "no search run at 'nowhere'" in capsys.readouterr().err


@pytest.mark.parametrize("policy", ["generational", "steady-state"])
def test_trainings_run_on_a_dask_local_cluster(in_tmp_cwd, digits_calibration, policy):
    from dask.distributed import Client, LocalCluster, get_task_stream

    from hostside.search.config import SearchConfig
    from hostside.search.run import start_run

    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as observer, get_task_stream(client=observer) as stream:
        config = SearchConfig(budget=4, population=2, epochs=1, final_epochs=1, strategy="random", policy=policy,
                              cluster=cluster.scheduler_address, calibration=str(digits_calibration))
        report = start_run(config, in_tmp_cwd / "run", progress=lambda message: None)
    trained_on_dask = sum(task["key"].startswith("run_training_task") for task in stream.data)  # read on exit
    assert trained_on_dask == 4 + len(report["models"])
    assert report["counts"]["measured"] == 4 and report["models"]


def test_an_unreachable_dask_scheduler_is_one_clear_error(in_tmp_cwd, digits_calibration, capsys, monkeypatch):
    monkeypatch.setenv("HOSTSIDE_CLUSTER_CONNECT_S", "2")
    code = main(["search", "--budget", "2", "--cluster", "tcp://127.0.0.1:9", "--calibration", str(digits_calibration),
                 "--out", str(in_tmp_cwd / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err


@pytest.mark.parametrize("flags, message", [
    (["--objectives", "accuracy,speed"], "config key 'objectives': 'speed' is not allowed; choose from val_accuracy"),
    (["--strategy", "hillclimb"], "config key 'strategy': 'hillclimb' is not allowed; choose one of "),
    (["--budget", "0"], "config key 'budget': 0 is not allowed"),
    (["--dataset", "nosuch.npz"], "nosuch.npz"),
])
def test_bad_flags_give_one_line_and_exit_2(in_tmp_cwd, capsys, flags, message):
    assert main(["search", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hostside: error: ") and err.count("\n") == 1 and message in err
    assert not (in_tmp_cwd / "runs").exists()


def _as_schema_1_run(source, target):
    """A copy of run ``source`` as the schema-1 code would have left it: its SQL, its config keys,
    pre-uid genotypes (positional node ids, v1 keys and hashes) and no weights files."""
    import hashlib
    import shutil

    from hostside.spaces import make_space

    v1_columns = ("id", "key", "arch_hash", "generation", "status", "operator", "parents", "genotype", "spec", "cost",
                  "params", "macs", "activation_bytes", "predicted_latency_ms", "filter_accepted", "filter_reason",
                  "filter_margins", "accuracy", "val_accuracy", "train_seconds", "train_metrics", "onnx_path",
                  "onnx_sha256", "latency_ms", "energy_mj", "measurement", "timings", "error",
                  "created_at", "updated_at")
    target.mkdir()
    shutil.copy(source / "split.json", target / "split.json")
    shutil.copytree(source / "candidates", target / "candidates", ignore=shutil.ignore_patterns("weights.npz"))
    old = sqlite3.connect(source / JOURNAL_FILE)
    old.row_factory = sqlite3.Row
    new = sqlite3.connect(target / JOURNAL_FILE)
    new.executescript((Path(__file__).parent / "data" / "journal_v1_schema.sql").read_text())
    for row in old.execute("SELECT key, value FROM meta"):
        value = json.loads(row["value"])
        if row["key"] == "schema_version":
            value = 1
        if row["key"] == "config":
            value = {k: v for k, v in value.items() if k not in ("strategy_options", "policy", "budget_unit", "precision")}
            value["budget"] = 6
        new.execute("INSERT INTO meta VALUES (?, ?)", (row["key"], json.dumps(value)))
    space = make_space("layer_list", (1, 8, 8), 10)
    for row in old.execute("SELECT * FROM candidates ORDER BY id"):
        values = {k: row[k] for k in v1_columns}
        genotype = json.loads(row["genotype"])
        for layer in genotype["layers"]:
            del layer["uid"]
        spec = space.decode(genotype)
        values.update(genotype=json.dumps(genotype), spec=json.dumps(spec.to_dict()), arch_hash=spec.content_hash())
        training = space.training_overrides(genotype)
        values["key"] = hashlib.sha256((spec.content_hash() + json.dumps(training, sort_keys=True)).encode()).hexdigest()
        new.execute(f"INSERT INTO candidates ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                    list(values.values()))
    new.commit()
    new.close()
    old.close()


def test_a_run_journaled_by_schema_1_resumes_and_breeds_from_its_candidates(in_tmp_cwd, digits_calibration):
    from hostside.search.config import SearchConfig
    from hostside.search.run import start_run

    start_run(SearchConfig(budget=3, population=3, epochs=1, final_epochs=1, spot_checks=0,
                           calibration=str(digits_calibration)), in_tmp_cwd / "new", progress=lambda message: None)
    _as_schema_1_run(in_tmp_cwd / "new", in_tmp_cwd / "old")
    before = {r["id"]: r for r in _rows(in_tmp_cwd / "old")}

    assert main(["search", "--resume", str(in_tmp_cwd / "old")]) == 0

    journal = Journal.open(in_tmp_cwd / "old")
    assert journal.schema_version == 3
    after = {r["id"]: r for r in journal.candidates()}
    for cid, row in before.items():  # the schema-1 candidates are kept as they were
        assert after[cid]["updated_at"] == row["updated_at"] and after[cid]["weights_path"] is None
        assert journal.artifacts(cid)[0]["kind"] == "onnx"
    born = [r for cid, r in after.items() if cid not in before and r["status"] != "rejected"]
    assert len(born) == 3 and all(r["status"] == "measured" and r["generation"] == 1 for r in born)
    assert any(set(r["parents"]) & set(before) for r in born)  # NSGA-II bred from the old candidates
    assert all((in_tmp_cwd / "old" / r["weights_path"]).is_file() for r in born)
    assert journal.meta("status") == "finished" and journal.results("final")
    journal.close()
