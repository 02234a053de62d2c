"""``runs precision``: every trained model of a run's journal analysed, fronts and JSON written."""

import json
import shutil

import pytest

from hostside.cli import main
from hostside.errors import UserError
from hostside.journal import Journal
from hostside.precision.runs import front, precision_of_run


def _candidate(journal, key, onnx_path, status="measured"):
    return journal.add_candidate(
        key=key, arch_hash=key, generation=0, status=status, operator="sample", parents=[], genotype={},
        spec={}, cost={}, params=1, macs=1, activation_bytes=1, filter_accepted=1, filter_reason="",
        onnx_path=onnx_path, accuracy=0.9,
    )


def test_front_keeps_only_non_dominated_points():
    points = [(100, 0.9), (50, 0.8), (100, 0.85), (200, 0.95), (60, 0.7)]
    assert front(points) == [(50, 0.8), (100, 0.9), (200, 0.95)]
    assert front([]) == []


@pytest.mark.slow
def test_runs_precision_writes_fronts_and_json(trained_digits, tmp_path, capsys):
    run = tmp_path / "run"
    journal = Journal.create(run)
    try:
        journal.set_meta("config", {"dataset": "digits"})
        (run / "c1").mkdir()
        shutil.copy(trained_digits.onnx, run / "c1" / "model.onnx")
        _candidate(journal, "a", "c1/model.onnx")
        _candidate(journal, "b", None, status="rejected")
    finally:
        journal.close()
    trained_digits.split.save(run / "split.json")
    assert main(["runs", "precision", str(run), "--part", "val", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert len(result["models"]) == 1 and "[1/1] candidate" in captured.err
    model = result["models"][0]
    assert model["float"]["weight_bytes"] == 4 * model["params"]
    assert model["half"]["weight_bytes"] == 2 * model["params"] and model["T(4,3)"]["bits"] == 8
    assert model["best"]["bits"] <= 16
    assert set(result["fronts"]) == {"float", "half", "T(4,3)", "best"}
    saved = json.loads((run / "precision.json").read_text())
    assert saved["models"][0]["best"] == model["best"]
    assert (run / "precision_fronts.png").read_bytes()[:4] == b"\x89PNG"


def test_the_best_type_is_chosen_on_validation_and_scored_on_test(trained_digits):
    """The test part takes part in no choice: the type is the validation grid's best, its
    reported accuracy that type's on the test part."""
    from hostside.precision.analysis import analyze_model
    from hostside.precision.formats import grid
    from hostside.precision.runs import _analyse

    split, dataset, onnx = trained_digits.split, trained_digits.dataset, str(trained_digits.onnx)
    analysis, best = _analyse(onnx, dataset, split, "test", "extrinsic")
    on_val = analyze_model(onnx, dataset, split.val, grid(), "extrinsic")["best"]
    assert best["chosen_on"] == "val" and best["format"] == on_val["format"]
    assert best["val_accuracy"] == on_val["accuracy"]
    assert analysis["images"] == len(split.test)
    assert best["accuracy"] == next(r["accuracy"] for r in analysis["formats"] if r["format"] == best["format"])


def test_run_without_trained_models_is_one_clear_error(tmp_path):
    run = tmp_path / "empty"
    Journal.create(run).close()
    with pytest.raises(UserError, match="no trained model"):
        precision_of_run(run)
