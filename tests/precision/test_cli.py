"""``hostside precision`` and ``hostside quantize`` end to end on a trained digits CNN, and
their one-line errors."""

import json

import numpy as np
import pytest

from hostside.cli import main
from hostside.precision.analysis import best_type, weight_bytes
from hostside.precision.quantize import calibration_indices
from hostside.errors import UserError


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_precision_named_formats(trained_digits, tmp_path, capsys):
    rc, out, err = _run(capsys, "precision", trained_digits.onnx, "--formats", "half,t4.3,fx16,int8,t2.2,q3.2",
                        "--out", tmp_path, "--json")
    assert rc == 0, err
    result = json.loads(out)
    assert "split.json (the split written with the model)" in err and result["images"] == len(trained_digits.split.test)
    rows = {r["format"]: r for r in result["formats"]}
    assert list(rows) == ["half", "T(4,3)", "fx16", "T(2,2)", "Q3.2", "int8"]
    float_acc = result["float"]["accuracy"]
    assert abs(float_acc - trained_digits.metrics["onnx_accuracy"]) < 1e-9
    params = result["params"]
    assert params == trained_digits.metrics["deployed_params"]
    assert rows["half"]["weight_bytes"] == 2 * params and rows["T(4,3)"]["weight_bytes"] == params
    assert rows["int8"]["weight_bytes"] == params - result["bias_params"] + 4 * result["bias_params"]
    assert abs(rows["half"]["drop_points"]) < 1 and abs(rows["int8"]["drop_points"]) < 3
    assert rows["T(2,2)"]["accuracy"] is None and "NaN" in rows["T(2,2)"]["reason"]
    assert rows["Q3.2"]["accuracy"] < float_acc  # 2 fractional bits hurt
    assert (tmp_path / "model.int8.onnx").is_file() and json.loads((tmp_path / "precision.json").read_text())
    assert "best" not in result


@pytest.mark.slow
def test_precision_grid_heatmap_and_best_type(trained_digits, tmp_path, capsys):
    rc, out, err = _run(capsys, "precision", trained_digits.onnx, "--formats", "grid", "--part", "val",
                        "--out", tmp_path)
    assert rc == 0, err
    result = json.loads((tmp_path / "precision.json").read_text())
    grid_rows = [r for r in result["formats"] if r["grid"]]
    assert len(grid_rows) == 184 and result["images"] == len(trained_digits.split.val)
    best = result["best"]
    assert best == best_type(result["formats"], result["float"]["accuracy"])
    assert best["accuracy"] >= result["float"]["accuracy"] - 0.01 - 1e-9 and best["bits"] <= 16
    narrower = [r for r in grid_rows if r["bits"] < best["bits"] and r["accuracy"] is not None]
    assert all(r["accuracy"] < result["float"]["accuracy"] - 0.01 for r in narrower)
    assert any(r["accuracy"] is None for r in grid_rows)  # T(1,*) overflow on raw pixels: NaN, no crash
    assert (tmp_path / "precision_grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best type: T(" in out


def test_best_type_rule():
    rows = [{"grid": True, "format": f, "bits": b, "accuracy": a, "w": w}
            for f, b, a, w in [("A", 8, 0.95, 4), ("B", 8, 0.975, 3), ("C", 12, 0.99, 5), ("D", 6, None, 2)]]
    assert best_type(rows, 0.98)["format"] == "B"  # 8 bits within 1 point; the more accurate of the two
    assert best_type(rows, 0.999)["format"] == "C"
    assert best_type(rows, 1.5) is None
    assert weight_bytes(None, 10, 2) == 40


def test_quantize_measures_both_files(trained_digits, tmp_path, capsys):
    out_file = tmp_path / "m.int8.onnx"
    rc, out, err = _run(capsys, "quantize", trained_digits.onnx, "--out", out_file, "--runs", "30", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert out_file.is_file() and report["int8_size_bytes"] < report["float_size_bytes"]
    assert report["calibration_samples"] == min(256, len(trained_digits.split.train))
    assert abs(report["int8_accuracy"] - report["float_accuracy"]) < 0.03
    assert report["board"] == "local" and report["float_latency_ms"] > 0 and report["int8_latency_ms"] > 0
    assert report["speedup"] == pytest.approx(report["float_latency_ms"] / report["int8_latency_ms"])
    import onnx
    ops = {n.op_type for n in onnx.load(str(out_file)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


@pytest.mark.parametrize("argv,words", [
    (["--formats", "half,float12"], "unknown number format 'float12'"),
    (["--formats", "t9.3"], "w must be 1..8"),
    (["--formats", "t3.30"], "t must be 1..23"),
])
def test_bad_formats_are_one_line(trained_digits, tmp_path, capsys, argv, words):
    rc, out, err = _run(capsys, "precision", trained_digits.onnx, *argv, "--out", tmp_path)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1


def test_dataset_shape_mismatch_is_one_line(trained_digits, tmp_path, capsys):
    data = tmp_path / "rgb.npz"
    rng = np.random.default_rng(0)
    np.savez(data, x=rng.random((40, 3, 4, 4)).astype(np.float32), y=np.arange(40) % 4)
    rc, _, err = _run(capsys, "precision", trained_digits.onnx, "--dataset", data, "--out", tmp_path / "o",
                      "--formats", "half")
    assert rc == 2 and "does not fit dataset" in err and len(err.strip().splitlines()) == 1


def test_empty_calibration_split_is_one_line(trained_digits, tmp_path, capsys):
    with pytest.raises(UserError, match="train part is empty"):
        calibration_indices([])
    split = trained_digits.split.to_dict()
    split["train"] = []
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    rc, _, err = _run(capsys, "quantize", trained_digits.onnx, "--out", tmp_path / "q.onnx", "--split", path)
    assert rc == 2 and "train part is empty" in err and len(err.strip().splitlines()) == 1
