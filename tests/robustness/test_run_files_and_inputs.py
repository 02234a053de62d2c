"""A run's own files and a user's input files, as a careless user leaves them: an ONNX file of
another network copied over a candidate's, a journal copied away from its run, a FIFO or a
link to /dev/zero given as a model or dataset, a file that is no IDX, a one-class image folder.
Each is one line (an error, or for the report a warning), never a hang or a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robustness_helpers import REPO, assert_one_error_line, run_cli

SWAPPED = "candidates/00001/model.onnx"
CALIBRATION = REPO / "hostside/calibration_data/amd-epyc-2c-x86_64-ort1.31.1-threads1/calibration.json"
SPEC = {
    "format": "hostside.archspec", "version": 1, "input_shape": [1, 8, 8], "num_classes": 2,
    "nodes": [
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3, "padding": 1},
        {"id": "g", "op": "global_avgpool", "inputs": ["c"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 2},
    ],
    "output": "l",
}


def _cli(tmp_path: Path, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    return run_cli([str(a) for a in args], env={"HOSTSIDE_HOME": str(tmp_path / "home")}, cwd=tmp_path,
                   timeout_s=timeout_s)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """The smallest real digits search: two candidates of one epoch, one re-trained model."""
    root = tmp_path_factory.mktemp("tiny-run")
    done = _cli(root, "search", "--budget", "2", "--population", "2", "--epochs", "1", "--final-epochs", "1",
                "--workers", "1", "--out", root / "run", timeout_s=600)
    assert done.returncode == 0, done.stderr
    return root / "run"


def _another_network(run: Path, candidate_id: int) -> Path:
    """A candidate's ONNX file of another network than ``candidate_id``'s: copied over that
    candidate's final model it is certainly a different file (its own search-time file need not
    be: re-trained on the same data with the same seed, the bytes can come out the same)."""
    other = 2 if candidate_id == 1 else 1
    return run / f"candidates/{other:05d}/model.onnx"


@pytest.fixture
def swapped_run(tiny_run, tmp_path) -> Path:
    """A copy of the run with candidate 2's network copied over candidate 1's ONNX file."""
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    shutil.copyfile(run / "candidates/00002/model.onnx", run / SWAPPED)
    return run


def test_analyze_refuses_a_swapped_onnx_file(swapped_run, tmp_path):
    line = assert_one_error_line(_cli(tmp_path, "runs", "analyze", swapped_run), SWAPPED, "journal")
    assert "candidate 1" in line
    assert not (swapped_run / "analysis.json").exists()  # refused before the first measurement


def test_precision_of_a_run_refuses_a_swapped_onnx_file(swapped_run, tmp_path):
    assert_one_error_line(_cli(tmp_path, "runs", "precision", swapped_run), SWAPPED, "journal")
    assert not (swapped_run / "precision.json").exists()


def test_the_final_measurement_refuses_a_swapped_onnx_file(tiny_run, tmp_path):
    from hostside.errors import UserError
    from hostside.journal import Journal
    from hostside.search.config import SearchConfig
    from hostside.search.final import _measure_finals

    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    journal = Journal.open(run)
    try:
        finals = journal.results("final")
        final = run / finals[0]["onnx_path"]
        shutil.copyfile(_another_network(run, finals[0]["candidate_id"]), final)

        class NoPool:
            def measure_many(self, *_args, **_kwargs):
                raise AssertionError("a swapped file must be refused before it is measured")

        with pytest.raises(UserError, match=f"final model {finals[0]['candidate_id']}'s ONNX file {final}"):
            _measure_finals(journal, SearchConfig.from_dict(journal.meta("config")), run, NoPool(),
                            lambda _m: None, finals)
    finally:
        journal.close()


def test_the_report_marks_a_swapped_front_model(tiny_run, tmp_path):
    run = Path(shutil.copytree(tiny_run, tmp_path / "run"))
    front_model = json.loads((run / "pareto.json").read_text())[0]
    final = front_model["onnx"]
    shutil.copyfile(_another_network(run, front_model["id"]), run / final)
    done = _cli(tmp_path, "runs", "show", run)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostside: warning: ") and final in lines[0], done.stderr
    assert f"`{final}` **(changed)**" in done.stdout


def test_show_with_a_journal_copied_away_from_its_run_warns_the_files_are_missing(tiny_run, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(tiny_run / "journal.sqlite", elsewhere / "journal.sqlite")
    done = _cli(tmp_path, "runs", "show", elsewhere)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostside: warning: "), done.stderr
    assert "missing" in lines[0] and str(elsewhere) in lines[0] and "copy the whole run directory" in lines[0]


def test_show_of_an_intact_run_warns_nothing(tiny_run, tmp_path):
    done = _cli(tmp_path, "runs", "show", tiny_run)
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _special_files(tmp_path: Path) -> dict:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.onnx"
    zero.symlink_to("/dev/zero")
    return {"fifo": fifo, "dev-zero link": zero}


READERS = {
    "arch stats": lambda f, t: ["arch", "stats", f],
    "arch import": lambda f, t: ["arch", "import", f, "--out", t / "imported"],
    "predict": lambda f, t: ["predict", "--calibration", CALIBRATION, f],
    "precision": lambda f, t: ["precision", f, "--out", t / "precision"],
    "quantize": lambda f, t: ["quantize", f, "--out", t / "q.onnx", "--no-measure"],
    "train dataset": lambda f, t: ["train", t / "spec.json", "--dataset", f"npz:{f}", "--out", t / "trained"],
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", ["fifo", "dev-zero link"])
def test_a_fifo_or_a_link_to_dev_zero_is_not_a_regular_file(tmp_path, reader, kind):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    path = _special_files(tmp_path)[kind]
    done = _cli(tmp_path, *READERS[reader](path, tmp_path), timeout_s=30)  # a hang is a TimeoutExpired
    assert_one_error_line(done, str(path), "not a regular file")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["pipe.onnx", "spec.json", "zero.onnx"]


def test_a_fifo_as_archspec_is_not_a_regular_file(tmp_path):
    os.mkfifo(tmp_path / "spec.json")
    assert_one_error_line(_cli(tmp_path, "arch", "stats", tmp_path / "spec.json", timeout_s=30), "not a regular file")


def test_a_fifo_as_split_file_is_not_a_regular_file(tiny_run, tmp_path):
    os.mkfifo(tmp_path / "split.json")
    done = _cli(tmp_path, "precision", tiny_run / SWAPPED, "--split", tmp_path / "split.json", "--out", tmp_path / "out",
                timeout_s=60)
    assert_one_error_line(done, "split.json", "not a regular file")
    assert not (tmp_path / "out").exists()


def test_a_fifo_inside_a_dataset_folder_is_not_a_regular_file(tmp_path):
    from hostside.errors import UserError
    from hostside.train.datasets import load_dataset

    for name in ("a", "b"):
        (tmp_path / "set" / name).mkdir(parents=True)
    os.mkfifo(tmp_path / "set/a/stuck.png")
    with pytest.raises(UserError, match="stuck.png is not a regular file"):
        load_dataset(f"images:{tmp_path / 'set'}")
    idx = tmp_path / "idx"
    idx.mkdir()
    os.mkfifo(idx / "train-images-idx3-ubyte")
    os.mkfifo(idx / "train-labels-idx1-ubyte")
    with pytest.raises(UserError, match="train-images-idx3-ubyte is not a regular file"):
        load_dataset(str(idx))


@pytest.mark.parametrize("head", [b"\x00\x00\x08\x2a", b"\x00\x00\x08\x00", b"GIF8", b""],
                         ids=["42-dims", "0-dims", "gif", "empty"])
def test_a_wrong_magic_idx_file_says_so_without_dimensions(tmp_path, head):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(head + bytes(range(256)) * 4 if head else b"")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01")
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    done = _cli(tmp_path, "train", "spec.json", "--dataset", tmp_path, "--out", tmp_path / "trained")
    line = assert_one_error_line(done, "train-images-idx3-ubyte: not an IDX file: magic ")
    assert (f"magic 0x{head.hex()}," if head else "the file is empty") in line
    assert "shape" not in line and not (tmp_path / "trained").exists()


def test_an_image_folder_of_one_class_is_refused(tmp_path):
    from PIL import Image

    (tmp_path / "set/cats").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(tmp_path / f"set/cats/{i}.png")
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    done = _cli(tmp_path, "train", "spec.json", "--dataset", tmp_path / "set", "--out", tmp_path / "trained")
    line = assert_one_error_line(done, "one class ('cats')", "at least 2 classes")
    assert "accuracy" not in done.stdout and not (tmp_path / "trained").exists(), line


def test_arch_import_of_a_torch_export_keeps_stderr_empty(tmp_path):
    """The imported weights reach torch as arrays it may write to: no UserWarning from
    torch.from_numpy about read-only NumPy arrays on a successful import."""
    script = (
        "import sys, warnings, torch\n"
        f"sys.path.insert(0, {str(REPO / 'tests/arch')!r})\n"
        "import classic_torch_nets as zoo\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('ignore')\n"
        "    torch.onnx.export(zoo.make('lenet5').eval(), (torch.rand(1, 1, 32, 32),), sys.argv[1], dynamo=False,\n"
        "                      input_names=['input'], output_names=['logits'])\n"
    )
    model = tmp_path / "lenet.onnx"
    subprocess.run([sys.executable, "-c", script, str(model)], check=True, capture_output=True, timeout=300)
    done = _cli(tmp_path, "arch", "import", model, "--out", tmp_path / "imported")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "imported/spec.json").is_file() and (tmp_path / "imported/weights.npz").is_file()
