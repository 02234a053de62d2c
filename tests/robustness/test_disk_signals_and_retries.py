"""A full disk, SIGTERM, a failed start and a closed pipe, each as a user meets them: one
error line saying what happened and what to do, and a retry (or ``--resume``) that works.

The full-disk tests mount a real 8 MiB tmpfs (root only; skipped elsewhere) and fill it
with one file, so every write fails the way it does on a full disk, SQLite's included."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import pytest

from robustness_helpers import REPO, assert_one_error_line, candidate_statuses, run_cli, run_status

pytestmark = pytest.mark.slow

TINY = ["--population", "2", "--epochs", "1", "--final-epochs", "1", "--workers", "1"]


class SmallDisk:
    """A mounted tmpfs that ``fill`` makes (almost) full and ``free`` empties again."""

    def __init__(self, root: Path):
        self.root = root
        self.filler = root / ".filler"

    def fill(self, leave_bytes: int = 0) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for chunk in (1 << 16, 512):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    pass
        finally:
            os.close(fd)
        if leave_bytes:
            os.truncate(self.filler, max(0, self.filler.stat().st_size - leave_bytes))

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path) -> SmallDisk:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("a full disk is simulated with a small tmpfs, which only root can mount")
    root = tmp_path / "disk"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()})")
    try:
        yield SmallDisk(root)
    finally:
        if subprocess.run(["umount", str(root)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> dict:
    return {"HOSTSIDE_HOME": str(tmp_path_factory.mktemp("home"))}


@pytest.fixture(scope="module")
def old_calibration(digits_calibration, tmp_path_factory) -> Path:
    """The digits calibration dated 2020, so a search checks the board against it (a fresh
    calibration skips the drift check)."""
    from hostside.calibration.artifact import Calibration, load_calibration

    body = json.loads(json.dumps(load_calibration(digits_calibration).body))
    body["provenance"]["date"] = "2020-01-01T00:00:00+00:00"
    return Path(Calibration(body).save(tmp_path_factory.mktemp("old_calibration") / "calibration.json"))


@pytest.fixture(scope="module")
def model_alone(tmp_path_factory, home) -> Path:
    """A trained digits model in a folder of its own (no split.json beside it), so precision
    and quantize draw and write a split."""
    from hostside.arch.examples import digits_small_cnn

    work = tmp_path_factory.mktemp("model")
    (work / "arch.json").write_text(json.dumps(digits_small_cnn()))
    trained = run_cli(["train", str(work / "arch.json"), "--epochs", "1", "--out", str(work / "trained")], env=home)
    assert trained.returncode == 0, trained.stderr
    alone = work / "alone"
    alone.mkdir()
    shutil.copy(work / "trained" / "model.onnx", alone / "model.onnx")
    return alone / "model.onnx"


def error_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    """For commands that also report progress on stderr: no traceback, a non-zero exit, and
    exactly one error line, the last one, naming what is wrong."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("hostside: error:")]
    assert len(errors) == 1 and done.stderr.strip().splitlines()[-1] == errors[0], done.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _search(args: List[str], home: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hostside.cli", "search", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **home})


def _wait_for_candidates(process: subprocess.Popen, run_dir: Path, statuses: tuple) -> None:
    deadline = time.monotonic() + 120
    while not any(status in statuses for status in candidate_statuses(run_dir)):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, f"no candidate {statuses} within two minutes"
        time.sleep(0.05)


def test_a_full_disk_at_search_start_is_one_line_and_leaves_no_run_behind(small_disk, digits_calibration, home):
    run_dir = small_disk.root / "run"
    small_disk.fill(leave_bytes=8192)
    done = run_cli(["search", "--budget", "2", *TINY, "--calibration", str(digits_calibration), "--out", str(run_dir)],
                   env=home)
    line = error_line(done, "no space left on the disk holding", str(run_dir))
    assert "run the command again" in line
    assert not run_dir.exists()  # nothing half-made that a retry would call "already holds a search run"


def test_a_disk_filling_up_during_a_search_stops_it_in_one_line_and_resume_finishes(small_disk, digits_calibration,
                                                                                     home):
    run_dir = small_disk.root / "run"
    search = _search(["--budget", "6", *TINY, "--calibration", str(digits_calibration), "--out", str(run_dir)], home)
    try:
        _wait_for_candidates(search, run_dir, ("measured",))
        small_disk.fill()
        _, err = search.communicate(timeout=120)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    stopped = subprocess.CompletedProcess(search.args, search.returncode, "", err)
    error_line(stopped, "no space left on the disk holding", str(run_dir), f"--resume {run_dir}")
    finished = [status for status in candidate_statuses(run_dir) if status in ("measured", "rejected", "failed")]
    assert "failed" not in finished  # the disk's fault is no candidate's: they are re-trained on resume

    small_disk.fill()  # a full disk also stops `runs analyze` in one line naming where
    analyzed = run_cli(["runs", "analyze", str(run_dir)], env=home)
    error_line(analyzed, "no space left on the disk holding", str(run_dir))

    small_disk.free()
    resumed = run_cli(["search", "--resume", str(run_dir)], env=home, timeout_s=240)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "pareto.json").read_text())
    assert len([s for s in candidate_statuses(run_dir) if s in ("measured", "rejected", "failed")]) >= len(finished)


def test_train_calibrate_and_precision_on_a_full_disk_are_one_line(small_disk, model_alone, home):
    from hostside.arch.examples import digits_small_cnn

    arch = model_alone.parent / "arch.json"
    arch.write_text(json.dumps(digits_small_cnn()))
    small_disk.fill(leave_bytes=8192)

    trained = run_cli(["train", str(arch), "--epochs", "1", "--out", str(small_disk.root / "train")], env=home)
    error_line(trained, "no space left on the disk holding", str(small_disk.root / "train"))
    assert not (small_disk.root / "train").exists()  # no half-written split.json left to trip over

    calibrated = run_cli(["calibrate", "--board", "local", "--quick", "--input-shape", "1,8,8",
                          "--out", str(small_disk.root / "cal")], env=home)
    error_line(calibrated, "no space left on the disk holding", str(small_disk.root / "cal"))

    precision = ["precision", str(model_alone), "--formats", "half", "--out", str(small_disk.root / "precision")]
    error_line(run_cli(precision, env=home), "no space left on the disk holding", str(small_disk.root))
    small_disk.free()
    again = run_cli(precision, env=home)  # not "split.json exists and was not given with --split"
    assert again.returncode == 0, again.stderr
    assert (small_disk.root / "precision" / "split.json").is_file()


def test_a_failed_quantize_leaves_no_split_and_the_retry_runs(model_alone, tmp_path, home):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    failing = ["quantize", str(model_alone), "--out", str(out / "m.int8.onnx"), "--board", "no-such-board"]
    error_line(run_cli(failing, env=home), "no-such-board")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    error_line(run_cli([*failing[:3], str(tmp_path / "new" / "m.int8.onnx"), *failing[4:]], env=home), "no-such-board")
    assert not (tmp_path / "new").exists()

    retried = run_cli(["quantize", str(model_alone), "--out", str(out / "m.int8.onnx"), "--no-measure"], env=home)
    assert retried.returncode == 0, retried.stderr
    assert sorted(p.name for p in out.iterdir()) == ["m.int8.onnx", "notes.txt", "split.json"]


def test_a_refused_drift_check_leaves_the_out_folder_as_it_was(tmp_path, old_calibration, home):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")
    command = ["search", "--budget", "2", *TINY, "--calibration", str(old_calibration), "--latency-budget-ms", "1000",
               "--drift-tolerance", "1e-6", "--out", str(out)]
    error_line(run_cli(command, env=home), "drifted", "re-calibrate")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    again = error_line(run_cli(command, env=home), "drifted")  # the same check again, not "already holds a run"
    assert "already holds" not in again


def test_sigterm_prints_the_resume_command_and_resume_may_only_change_the_drift_tolerance(tmp_path, old_calibration,
                                                                                          home):
    run_dir = tmp_path / "run"
    search = _search(["--budget", "6", *TINY, "--calibration", str(old_calibration), "--latency-budget-ms", "1000",
                      "--drift-tolerance", "0", "--out", str(run_dir)], home)
    try:
        _wait_for_candidates(search, run_dir, ("pending", "training", "trained", "measured"))
        search.send_signal(signal.SIGTERM)  # what `kill PID`, a batch scheduler or `docker stop` sends
        _, err = search.communicate(timeout=30)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert search.returncode == 143, err
    stopped = subprocess.CompletedProcess(search.args, search.returncode, "", err)
    error_line(stopped, "SIGTERM", f"`hostside search --resume {run_dir}`")
    assert run_status(run_dir) == "interrupted"

    strict = run_cli(["search", "--resume", str(run_dir), "--drift-tolerance", "1e-6"], env=home)
    error_line(strict, "drifted")  # the override is honoured: the board is checked at this resume
    assert run_status(run_dir) == "interrupted"
    assert_one_error_line(run_cli(["search", "--resume", str(run_dir), "--epochs", "3"], env=home),
                          "drop the other flags", "epochs")

    resumed = run_cli(["search", "--resume", str(run_dir)], env=home, timeout_s=240)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run_dir / "pareto.json").read_text())


def test_a_closed_pipe_ends_quietly(tmp_path):
    from hostside.journal import Journal

    for n in range(40):  # more rows than a pipe holds before the reader is gone
        journal = Journal.create(tmp_path / "runs" / f"run{n:02d}")
        journal.set_meta("config", {"strategy": "nsga2", "dataset": "digits", "board": "local"})
        journal.close()
    for command in (["runs", "list"], ["runs", "show", str(tmp_path / "runs" / "run00")]):
        reader = subprocess.Popen([sys.executable, "-m", "hostside.cli", *command], cwd=tmp_path,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        reader.stdout.close()  # like `| head -1` that has read its line
        err = reader.stderr.read()
        reader.wait(timeout=60)
        assert err == "", err
        assert reader.returncode != 0
