"""No choice reads the test split: every strategy proposes the same children and records the
same attributes whatever the candidates' test accuracies are, the ``accuracy`` objective is the
validation accuracy, and a training the search runs never evaluates the test split."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from hostside.arch.spec import ArchSpec
from hostside.search.candidate import Candidate
from hostside.search.objectives import deprecation_note, objective
from hostside.search.pareto import objective_matrix, violation
from hostside.search.strategies import AskContext, StrategySettings, make_strategy
from hostside.spaces import make_space
from hostside.train.datasets import load_dataset
from hostside.train.loop import TrainConfig, train_model
from hostside.train.splits import make_split


def _unit(genotype, salt: str) -> float:
    """A value in [0, 1) fixed by the genotype: the same network always scores the same."""
    digest = hashlib.sha256((salt + json.dumps(genotype, sort_keys=True, default=str)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def _simulate(strategy_name, space_name, test_salt, val_salt="val", objectives=("accuracy", "params"), generations=3,
              population=4):
    """Ask / tell over synthetic trainings; returns every proposal and attribute update."""
    space = make_space(space_name, (1, 8, 8), 10)
    settings = StrategySettings(tuple(objectives), {}, population, epochs=1, budget=population * (generations + 1),
                                seed=0)
    strategy = make_strategy(strategy_name, {}, settings)
    records, seen = [], []
    for generation in range(generations):
        ctx = AskContext(space, tuple(records), np.random.default_rng([1, generation]), generation, len(records))
        proposals = strategy.ask(population, ctx)
        born = []
        for p in proposals:
            spec = space.decode(p.genotype)
            metrics = {"val_accuracy": 0.3 + 0.6 * _unit(p.genotype, val_salt), "params": spec.cost.params,
                       "accuracy": _unit(p.genotype, test_salt), "latency_ms": 1.0, "epochs": p.epochs}
            born.append(Candidate(
                id=len(records) + len(born), genotype=p.genotype, parents=p.parents, operator=p.operator,
                generation=generation, status="measured", arch_hash=spec.content_hash(),
                objectives=tuple(objective_matrix([metrics], objectives)[0]), violation=violation(metrics, {}),
                metrics=metrics, attrs=dict(p.attrs), weights_path=f"w{len(records) + len(born)}.npz",
                weights_from=p.weights_from, epochs=p.epochs))
        records += born
        updates = strategy.tell(born, AskContext(space, tuple(records), np.random.default_rng(9), generation,
                                                 len(records)))
        records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}}) for c in records]
        seen.append([(p.operator, p.parents, json.dumps(p.genotype, sort_keys=True, default=str)) for p in proposals])
    return seen, [sorted(c.attrs.items()) for c in records]


@pytest.mark.parametrize("strategy, space", [
    ("nsga2", "layer_list"), ("cgp-nsga2", "cgp"), ("spea2", "dense"), ("menndl", "menndl"),
    ("ea4cnn", "ea4cnn"), ("rs-cnn", "ea4cnn"), ("random", "layer_list"),
])
def test_every_strategy_chooses_the_same_whatever_the_test_accuracies(strategy, space):
    first = _simulate(strategy, space, "test-a")
    assert first == _simulate(strategy, space, "test-b")
    # ... while the validation accuracies do steer them (the check above could not pass by accident)
    assert (first != _simulate(strategy, space, "test-a", val_salt="other")) == (strategy != "random")


def test_the_accuracy_objective_and_budget_are_the_validation_accuracy():
    row = {"accuracy": 0.1, "val_accuracy": 0.8}
    assert objective("accuracy").value(row) == objective("val_accuracy").value(row) == 0.8
    assert violation(row, {"accuracy": 0.7}) == 0 and violation(row, {"accuracy": 0.9}) > 0
    assert "validation accuracy" in deprecation_note("accuracy") and deprecation_note("val_accuracy") is None


def test_a_search_training_never_evaluates_the_test_split():
    digits = load_dataset("digits")
    split = make_split(digits, 0)
    labels = digits.y.copy()
    labels[split.test] = np.random.default_rng(0).permutation(labels[split.test])
    permuted = dataclasses.replace(digits, y=labels)
    assert (permuted.y[split.test] != digits.y[split.test]).any()
    spec = ArchSpec.from_dict({"name": "tiny", "input_shape": [1, 8, 8], "num_classes": 10, "nodes": [
        {"id": "flat", "op": "flatten", "inputs": ["input"]},
        {"id": "fc", "op": "linear", "inputs": ["flat"], "out_features": 10}], "output": "fc"})
    config = TrainConfig(epochs=2, seed=0, evaluate_test=False)
    a, b = train_model(spec, digits, split, config), train_model(spec, permuted, split, config)
    assert a.val_accuracy == b.val_accuracy and np.isnan(a.test_accuracy) and np.isnan(b.test_accuracy)
    reported = train_model(spec, digits, split, TrainConfig(epochs=2, seed=0))
    assert reported.val_accuracy == a.val_accuracy and 0 < reported.test_accuracy <= 1


def test_the_worker_writes_no_test_figure_for_a_search_training(tmp_path):
    from hostside.train.worker import train_and_export

    spec = {"name": "tiny", "input_shape": [1, 8, 8], "num_classes": 10, "nodes": [
        {"id": "flat", "op": "flatten", "inputs": ["input"]},
        {"id": "fc", "op": "linear", "inputs": ["flat"], "out_features": 10}], "output": "fc"}
    metrics = train_and_export(spec, "digits", None, {"epochs": 1, "seed": 0, "evaluate_test": False}, tmp_path)
    assert metrics["val_accuracy"] > 0.1
    assert metrics["test_accuracy"] is None and metrics["onnx_accuracy"] is None and metrics["accuracy"] is None
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["test_accuracy"] is None and written["val_accuracy"] == metrics["val_accuracy"]
