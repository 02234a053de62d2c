"""MENNDL's 32-position switchable layer space and its steady-state GA."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from cluster_helpers import REPO, cluster_env
from hostside.arch.spec import SpecError
from hostside.spaces import make_space
from hostside.spaces.menndl import CLASSIFIER_KINDS, FEATURE_KINDS, POSITIONS


def _only(space, features=(), classifier=()):
    g = space.sample(np.random.default_rng(0))
    for layer in g["features"] + g["classifier"]:
        layer["on"] = False
    for i, layer in enumerate(features):
        g["features"][i] = {"on": True, "uid": 100 + i, **layer}
    for i, layer in enumerate(classifier):
        g["classifier"][i] = {"on": True, "uid": 200 + i, **layer}
    return g


def test_genotype_has_16_feature_and_16_classifier_positions_of_the_allowed_kinds():
    space = make_space("menndl", (1, 28, 28), 10)
    rng = np.random.default_rng(3)
    for _ in range(50):
        g = space.sample(rng)
        assert len(g["features"]) == POSITIONS == len(g["classifier"]) == 16
        assert {layer["kind"] for layer in g["features"]} <= set(FEATURE_KINDS)
        assert {layer["kind"] for layer in g["classifier"]} <= set(CLASSIFIER_KINDS)
        child, op = space.mutate(g, rng)
        assert op in space.mutation_operators
        space.decode(space.crossover(g, child, rng))  # every child decodes (repaired if needed)


def test_non_square_kernels_and_inception_decode_to_the_shapes_the_cost_model_gives():
    space = make_space("menndl", (1, 28, 28), 10)
    g = _only(space, [{"kind": "conv", "filters": 8, "kernel": [20, 3], "stride": 1},
                      {"kind": "inception", "branch1": 4, "branch3": 8, "branch5": 4, "pool_proj": 4},
                      {"kind": "pool", "mode": "max", "kernel": 2}], [{"kind": "fc", "units": 32}])
    spec = space.decode(g)
    nodes = {n.id: n for n in spec.nodes}
    assert list(nodes["conv100"].attrs["kernel"]) == [20, 3]
    assert len(nodes["inc101"].inputs) == 4  # 1x1, 3x3, 5x5 and pool-projection branches concatenated
    assert "pool102" in nodes and "fc200" in nodes and nodes["classifier"].attrs["out_features"] == 10


def test_invalid_shape_sequences_are_repaired_before_training():
    space = make_space("menndl", (1, 8, 8), 10)
    pools = [{"kind": "pool", "mode": "max", "kernel": 3}] * 4  # 8 -> 3 -> 1: the last two cannot apply
    g = _only(space, [{"kind": "conv", "filters": 4, "kernel": [20, 3], "stride": 1}, *pools])
    spec = space.decode(g)
    nodes = {n.id: n for n in spec.nodes}
    assert list(nodes["conv100"].attrs["kernel"]) == [8, 3]  # clipped to the 8x8 map
    assert [i for i in nodes if i.startswith("pool")] == ["pool101", "pool102"]


def test_an_unrepairable_genotype_is_rejected_with_a_spec_error():
    space = make_space("menndl", (1, 8, 8), 10)
    g = _only(space, [{"kind": "act", "fn": "no-such-activation"}])
    with pytest.raises(SpecError):
        space.decode(g)


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
