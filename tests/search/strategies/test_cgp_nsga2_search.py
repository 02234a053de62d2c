"""End to end: a tiny CGP search with approximate multipliers journals and reports the circuit."""

import json
import sqlite3
import subprocess
import sys

import pytest

from hostside.approx.library import energy_per_mult_pj


@pytest.mark.slow
def test_tiny_cgp_search_records_multiplier_energy_and_inherits_weights(tmp_path, digits_calibration):
    config = tmp_path / "cgp.toml"
    config.write_text(
        'dataset = "digits"\npopulation = 2\nbudget = 4\nepochs = 1\nfinal_epochs = 1\nworkers = 1\n'
        'objectives = ["accuracy", "mult_energy_mj"]\n\n[strategy]\nname = "cgp-nsga2"\ntrain_fraction = 0.3\n\n'
        '[space_options]\nrows = 2\ncols = 4\nlevels_back = 2\nmultipliers = ["mul8u_18DU", "mul8u_1JFF"]\n'
    )
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--config", str(config), "--calibration",
                           str(digits_calibration), "--out", str(run)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    models = json.loads((run / "pareto.json").read_text())
    assert models
    for m in models:
        assert m["multiplier"] in ("mul8u_18DU", "mul8u_1JFF")
        assert m["energy_per_mult_pj"] == energy_per_mult_pj(m["multiplier"])
        assert m["mult_energy_mj"] == pytest.approx(m["n_mult"] * m["energy_per_mult_pj"] * 1e-9)
        assert any(node["f"] == "FC" for node in m["genotype"]["nodes"])
    db = sqlite3.connect(run / "journal.sqlite")
    rows = db.execute("select generation, train_metrics, exercise, parents from candidates "
                      "where status = 'measured'").fetchall()
    by_generation = {}
    for generation, metrics, exercise, parents in rows:
        metrics, exercise = json.loads(metrics), json.loads(exercise or "{}")
        assert metrics["n_mult"] > 0 and metrics["multiplier"]
        by_generation.setdefault(generation, set()).add(exercise.get("data_seed"))
        if generation > 0:
            assert exercise["weights_from"] == json.loads(parents)  # children start from their parent
    assert all(len(seeds) == 1 for seeds in by_generation.values())   # one D_train per generation
    assert len({s for seeds in by_generation.values() for s in seeds}) == len(by_generation) == 2
