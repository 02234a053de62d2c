"""``hostside search --strategy ea4cnn`` end to end through the real engine (process pool, journal,
local board): lineages can be followed from ``runs show --json``, and a seeded run starts from
the trained model exactly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from hostside import cli

pytestmark = pytest.mark.slow


def hostside(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def search(tmp_path: Path, capsys, calibration: Path, *extra, generations: int = 1):
    config = tmp_path / "search.toml"
    config.write_text(f'[strategy]\nname = "ea4cnn"\ngenerations = {generations}\n')
    run = tmp_path / "run"
    code, _, err = hostside(capsys, "search", "--config", config, "--space", "ea4cnn", "--population", "2",
                            "--budget", str(2 * (generations + 1)), "--objectives", "accuracy,params", "--no-filter",
                            "--final-epochs", "1", "--workers", "1", "--calibration", calibration, "--out", run,
                            *extra)
    assert code == 0, err
    code, out, err = hostside(capsys, "runs", "show", run, "--json")
    assert code == 0, err
    return run, json.loads(out)["candidates"]


def test_lineages_can_be_followed_from_runs_show(tmp_path, capsys, digits_calibration):
    run, candidates = search(tmp_path, capsys, digits_calibration, generations=2)
    split = json.loads((run / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (1347, 180, 270)  # 75/10/15 of 1797
    by_id = {c["id"]: c for c in candidates}
    assert len(candidates) == 6
    for c in candidates:
        assert {"parents", "age", "species", "inherited_fraction", "fitness"} <= set(c), c
        assert c["species"] == c["age"] and c["fitness"] >= 0
        if c["parents"]:
            parent = by_id[c["parents"][0]]
            assert c["age"] in (1, min(parent["age"] + 1, 1))  # age_max = |P| / 2 = 1
            assert c["inherited_fraction"] > 0
            if c["operator"] == "retrain":
                assert c["inherited_fraction"] == 1.0
        else:
            assert c["operator"] == "sample" and c["inherited_fraction"] in (0, 0.0, None) and c["age"] == 1


def _export(net: torch.nn.Module, path: Path) -> Path:
    """The torch model as a user exports it: TorchScript exporter, batchnorm folded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "n"}})
    return path


def test_seed_model_starts_the_population_from_the_trained_model(tmp_path, capsys, digits_calibration,
                                                               trained_digits_cnn):
    from hostside.train.datasets import load_dataset
    from hostside.train.onnx_eval import evaluate_onnx
    from hostside.train.splits import Split

    seed = _export(trained_digits_cnn, tmp_path / "seed.onnx")
    run, candidates = search(tmp_path, capsys, digits_calibration, "--seed-model", seed)
    split = Split.load(run / "split.json")
    seeded = [c for c in candidates if c["operator"] == "seed"]
    assert len(seeded) == 1
    want = evaluate_onnx(seed, load_dataset("digits"), split.val)
    assert seeded[0]["val_accuracy"] == pytest.approx(want) and want > 0.8  # evaluated unchanged
    assert seeded[0]["attrs"]["ea4cnn.s_rel"] == 1.0  # sizes are relative to the seed
    initial = [c for c in candidates if c["generation"] == min(x["generation"] for x in candidates)]
    assert all(c["operator"].startswith("seed") and c["inherited_fraction"] > 0 for c in initial)
    assert (run / "seed" / "weights.npz").is_file() and (run / "seed" / "genotype.json").is_file()
