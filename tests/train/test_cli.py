"""``hostside train`` through the real CLI entry point: files written, summary printed, and
every bad input ending in one ``hostside: error:`` line with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hostside import cli
from tests.train.builders import write_idx


@pytest.fixture
def hostside(monkeypatch, capsys):
    """Run ``hostside ARGS`` in-process; returns (exit status, stdout, stderr). Only the
    train command is registered, so these tests do not depend on the other areas."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("hostside.train.commands",))

    def run(*args):
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def arch(tmp_path, small_cnn_dict):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(small_cnn_dict))
    return path


@pytest.mark.slow
def test_train_writes_model_metrics_and_split(hostside, arch, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = hostside("train", arch, "--dataset", "digits", "--epochs", "3", "--out", out_dir,
                              "--threads", "1", "--augment", "crop", "--seed", "4")
    assert code == 0, err
    assert "epoch 3/3" in err and "test accuracy" in out and "params" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["config"]["crop_padding"] == 1 and metrics["config"]["seed"] == 4
    assert metrics["accuracy"] == metrics["onnx_accuracy"]
    assert (out_dir / "model.onnx").stat().st_size == metrics["onnx_size_bytes"]
    split = json.loads((out_dir / "split.json").read_text())
    with Image.open(out_dir / "training.png") as curves:
        assert curves.format == "PNG" and curves.width > 400

    code, _, err = hostside("train", arch, "--epochs", "1", "--out", tmp_path / "again", "--threads", "1",
                            "--split", out_dir / "split.json")
    assert code == 0, err
    assert json.loads((tmp_path / "again" / "split.json").read_text())["test"] == split["test"]


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostside: error: "), err
    return lines[0]


def test_label_mismatch_is_one_line_naming_the_file(hostside, arch, tmp_path):
    np.savez(tmp_path / "set.npz", x=np.zeros((5, 8, 8)), y=np.zeros(4, dtype=int))
    code, _, err = hostside("train", arch, "--dataset", tmp_path / "set.npz", "--out", tmp_path / "run")
    assert code == 2
    assert "set.npz: 5 inputs but 4 labels" in _one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_wrong_format_is_one_line(hostside, arch, tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 8, 8)), magic=b"PK\x03\x04")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2))
    code, _, err = hostside("train", arch, "--dataset", tmp_path, "--out", tmp_path / "run")
    assert code == 2 and "train-images-idx3-ubyte: not an IDX file" in _one_error_line(err)


def test_arch_that_does_not_fit_the_dataset(hostside, tmp_path, small_cnn_dict):
    small_cnn_dict["input_shape"] = [3, 8, 8]
    path = tmp_path / "rgb.json"
    path.write_text(json.dumps(small_cnn_dict))
    code, _, err = hostside("train", path, "--out", tmp_path / "run")
    assert code == 2 and "input_shape [3, 8, 8] does not match dataset 'digits' [1, 8, 8]" in _one_error_line(err)


def test_bad_training_flag_and_missing_arch(hostside, arch, tmp_path):
    code, _, err = hostside("train", arch, "--epochs", "-1", "--out", tmp_path / "run")
    assert code == 2 and "epochs must be an integer >= 0" in _one_error_line(err)
    code, _, err = hostside("train", tmp_path / "missing.json", "--out", tmp_path / "run")
    assert code == 2 and "missing.json does not exist" in _one_error_line(err)


def test_unwritable_output_folder_fails_before_training(hostside, arch, tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = hostside("train", arch, "--out", tmp_path / "taken" / "run")
    assert code == 2 and "cannot create the folder" in _one_error_line(err) and "epoch" not in err


def test_debug_adds_the_traceback(hostside, arch, tmp_path):
    code, _, err = hostside("train", arch, "--dataset", tmp_path / "nope.npz", "--out", tmp_path / "r", "--debug")
    assert code == 2 and "Traceback" in err and err.strip().endswith("--dataset digits or an existing path")


def test_console_entry_point_prints_one_line_and_exits_2(arch, tmp_path):
    """The installed CLI as a user runs it, all areas registered: no traceback on bad data."""
    np.savez(tmp_path / "set.npz", x=np.array([np.zeros(2), "a"], dtype=object), y=np.zeros(2, dtype=int))
    proc = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "train", str(arch), "--dataset", str(tmp_path / "set.npz"),
         "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "set.npz: holds object arrays" in _one_error_line(proc.stderr)


def _save_weights_of(spec_dict, path):
    from hostside.arch.build import build_module
    from hostside.arch.spec import ArchSpec
    from hostside.arch.weights import save_state, state_of

    save_state(state_of(build_module(ArchSpec.from_dict(spec_dict))), path)
    return path


def test_init_weights_of_another_network_name_the_first_tensor(hostside, arch, tmp_path, small_cnn_dict):
    small_cnn_dict["nodes"][0]["out_channels"] = 8
    weights = _save_weights_of(small_cnn_dict, tmp_path / "other.npz")
    code, _, err = hostside("train", arch, "--init-weights", weights, "--epochs", "0", "--out", tmp_path / "run")
    line = _one_error_line(err)
    assert code == 2 and f"--init-weights {weights}: tensor 'c1/weight' has shape [8, 1, 3, 3]" in line
    assert "[16, 1, 3, 3]" in line and not (tmp_path / "run").exists()


def test_init_weights_epochs_0_evaluates_them_unchanged(hostside, arch, tmp_path, small_cnn_dict):
    """Train, then evaluate the saved weights with --epochs 0 on the same split: same accuracy."""
    code, _, err = hostside("train", arch, "--epochs", "2", "--out", tmp_path / "a", "--threads", "1")
    assert code == 0, err
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    code, _, err = hostside("train", arch, "--init-weights", tmp_path / "a" / "weights.npz", "--epochs", "0",
                            "--split", tmp_path / "a" / "split.json", "--out", tmp_path / "b")
    assert code == 0, err
    again = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert again["accuracy"] == first["accuracy"] and again["onnx_accuracy"] == first["onnx_accuracy"]
    assert again["epochs_run"] == 0


@pytest.mark.parametrize("filters", [10 ** 9, 10 ** 30, 10 ** 400])
def test_a_network_too_big_for_memory_is_refused_before_building(hostside, tmp_path, small_cnn_dict, filters):
    small_cnn_dict["nodes"][0]["out_channels"] = filters
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(small_cnn_dict))
    code, _, err = hostside("train", path, "--epochs", "1", "--out", tmp_path / "run")
    line = _one_error_line(err)
    assert code == 2 and "parameters and" in line and "bytes are available; make the network smaller" in line
    assert not (tmp_path / "run").exists()


def test_training_memory_estimate_counts_weights_gradients_adam_and_activations():
    from hostside.train.commands import training_memory_bytes

    assert training_memory_bytes(params=1000, activation_bytes=4096, batch_size=64) == 16 * 1000 + 2 * 64 * 4096
    assert training_memory_bytes(10 ** 30, 0, 1) == 16 * 10 ** 30  # no overflow
