"""Strategies over frozen Candidate records: NSGA-II breeds from the feasible elite, random
ignores history, the registry and options give one clear line per mistake."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.search.candidate import Candidate, Proposal, record_from_row
from hostside.search.strategies import AskContext, StrategySettings, make_strategy, strategy_names
from hostside.search.strategies.nsga2 import NSGA2
from hostside.spaces import make_space

OBJECTIVES = ("accuracy", "latency_ms")


def _settings(population=6, objectives=OBJECTIVES, budgets=None):
    return StrategySettings(tuple(objectives), dict(budgets or {}), population, epochs=1, budget=40, seed=0)


def _evaluated(space, count, rng, budgets=None, objectives=OBJECTIVES):
    records = []
    for i in range(count):
        genotype = space.sample(rng)
        cost = space.decode(genotype).cost
        row = {"id": i, "genotype": genotype, "parents": [], "operator": "sample", "generation": 0,
               "status": "measured", "arch_hash": str(i), "val_accuracy": float(rng.uniform(0.5, 1.0)),
               "latency_ms": float(rng.uniform(0.1, 2.0)), "params": cost.params}
        records.append(record_from_row(row, {}, objectives, budgets or {}))
    return records


def _ctx(space, records, rng):
    return AskContext(space, tuple(records), rng, generation=1, exercises=len(records))


def test_nsga2_breeds_from_the_elite_of_feasible_candidates():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    budgets = {"latency_ms": 1.0}
    evaluated = _evaluated(space, 30, rng, budgets)
    strategy = make_strategy("nsga2", {}, _settings(budgets=budgets))
    assert isinstance(strategy, NSGA2)
    survivors, rank, _ = strategy.survivors(evaluated)
    feasible = [r for r in evaluated if r.metrics["latency_ms"] <= 1.0]
    assert len(survivors) == 6 and all(r.metrics["latency_ms"] <= 1.0 for r in survivors) and len(feasible) > 6
    front = {r.id for r in feasible if not any(o.metrics["val_accuracy"] >= r.metrics["val_accuracy"]
                                               and o.metrics["latency_ms"] <= r.metrics["latency_ms"]
                                               and o is not r for o in feasible)}
    assert len(front) <= 6 and {r.id for r, k in zip(survivors, rank) if k == 0} == front
    elite = {r.id for r in survivors}
    proposals = strategy.ask(80, _ctx(space, evaluated, rng))
    assert len(proposals) == 80
    for proposal in proposals:
        assert space.is_valid(proposal.genotype) and proposal.weights_from == ()
        if proposal.operator == "immigrant":
            assert proposal.parents == ()
        else:
            assert proposal.parents and set(proposal.parents) <= elite
            assert proposal.operator.split("+")[0] in ("crossover", *space.mutation_operators)
    assert 0 < [p.operator for p in proposals].count("immigrant") < 40  # about a quarter are fresh samples


def test_nsga2_with_inherit_weights_names_its_first_parent_first():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(3)
    strategy = make_strategy("nsga2", {"inherit_weights": True, "immigrant_rate": 0.0}, _settings())
    for proposal in strategy.ask(20, _ctx(space, _evaluated(space, 12, rng), rng)):
        assert proposal.weights_from == proposal.parents and proposal.parents


def test_nsga2_samples_until_a_population_is_evaluated_and_random_always_samples():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(1)
    few = _evaluated(space, 3, rng, objectives=("accuracy", "params"))
    nsga2 = make_strategy("nsga2", None, _settings(objectives=("accuracy", "params")))
    assert [p.operator for p in nsga2.ask(2, _ctx(space, few, rng))] == ["sample", "sample"]
    (proposal,) = make_strategy("random", {}, _settings()).ask(1, _ctx(space, _evaluated(space, 30, rng), rng))
    assert proposal.operator == "sample" and proposal.parents == ()


def test_cgp_nsga2_brings_in_immigrants_only_when_asked_and_keeps_the_generation_subset():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(4)
    evaluated = _evaluated(space, 12, rng)
    paper = make_strategy("cgp-nsga2", {}, _settings()).ask(40, _ctx(space, evaluated, rng))
    assert all(p.operator in space.mutation_operators and p.parents for p in paper)
    mixed = make_strategy("cgp-nsga2", {"immigrant_rate": 0.5}, _settings()).ask(40, _ctx(space, evaluated, rng))
    immigrants = [p for p in mixed if p.operator == "immigrant"]
    assert 5 < len(immigrants) < 35 and all(p.parents == () and p.weights_from == () for p in immigrants)
    assert len({(p.data_seed, p.train_fraction) for p in mixed}) == 1  # immigrants train on the same D_train


def test_cgp_nsga2_crosses_two_winners_only_when_asked_and_then_mutates():
    space = make_space("layer_list", (1, 8, 8), 10)
    evaluated = _evaluated(space, 12, np.random.default_rng(4))
    by_id = {c.id: c for c in evaluated}
    paper = make_strategy("cgp-nsga2", {}, _settings())
    crossing = make_strategy("cgp-nsga2", {"crossover_rate": 0.5}, _settings())
    assert not any("crossover" in p.operator for p in paper.ask(40, _ctx(space, evaluated, np.random.default_rng(5))))
    children = crossing.ask(40, _ctx(space, evaluated, np.random.default_rng(5)))
    crossed = [p for p in children if p.operator.startswith("crossover+")]
    assert 5 < len(crossed) < 35
    for child in crossed:
        first, second = (by_id[i] for i in child.parents)
        assert first.id != second.id and child.operator.split("+")[1] in space.mutation_operators
        assert space.is_valid(child.genotype)
    alone = [p for p in children if "crossover" not in p.operator]
    assert alone and all(len(p.parents) == 1 and p.operator in space.mutation_operators for p in alone)


def test_val_accuracy_selection_ignores_the_test_accuracy():
    space = make_space("layer_list", (1, 8, 8), 10)
    objectives = ("val_accuracy", "params")
    rows = [{"id": i, "genotype": space.sample(np.random.default_rng(i)), "parents": [], "operator": "sample",
             "generation": 0, "status": "measured", "arch_hash": str(i), "params": 1000,
             "accuracy": 0.9 - 0.1 * i, "val_accuracy": 0.5 + 0.1 * i} for i in range(4)]
    records = [record_from_row(r, {}, objectives, {"val_accuracy": 0.65}) for r in rows]
    strategy = make_strategy("nsga2", {}, _settings(population=1, objectives=objectives,
                                                    budgets={"val_accuracy": 0.65}))
    (best,), _, _ = strategy.survivors(records)
    assert best.id == 3  # the best on validation, the worst on test
    assert [r.violation > 0 for r in records] == [True, True, False, False]


def test_records_are_frozen_and_retrain_proposals_continue_a_lineage():
    space = make_space("layer_list", (1, 8, 8), 10)
    (record,) = _evaluated(space, 1, np.random.default_rng(2))
    with pytest.raises(FrozenInstanceError):
        record.status = "failed"
    assert record.objectives[0] == pytest.approx(1 - record.metrics["val_accuracy"]) and record.complete
    again = Proposal.retrain(record, epochs=1, data_seed=7, attrs={"ea4cnn.age": 2})
    assert (again.operator, again.parents, again.weights_from) == ("retrain", (record.id,), (record.id,))
    assert again.exercise() == {"weights_from": [record.id], "epochs": 1, "data_seed": 7}
    assert Proposal(record.genotype, "sample").exercise() == {}


@pytest.mark.parametrize("name, options, message", [
    ("anneal", {}, "config key 'strategy': 'anneal' is not allowed; choose one of "),
    ("nsga2", {"crossover": 0.5}, "strategy 'nsga2': option 'crossover' is unknown; allowed options: crossover_rate"),
    ("nsga2", {"crossover_rate": "high"}, "strategy 'nsga2': option 'crossover_rate': 'high' is not allowed; give a number"),
    ("nsga2", {"mutation_rate": 1.5}, "strategy 'nsga2': option 'mutation_rate': 1.5 is not allowed; give a number in [0, 1]"),
    ("random", {"x": 1}, "strategy 'random': option 'x' is unknown; allowed options: none"),
    ("cgp-nsga2", {"immigrant_rate": 2}, "strategy 'cgp-nsga2': option 'immigrant_rate': 2 is not allowed; give a "
     "number in [0, 1]"),
    ("cgp-nsga2", {"crossover_rate": -0.1}, "strategy 'cgp-nsga2': option 'crossover_rate': -0.1 is not allowed; give "
     "a number in [0, 1]"),
])
def test_unknown_strategies_and_bad_options_are_one_line(name, options, message):
    with pytest.raises(UserError) as info:
        make_strategy(name, options, _settings())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_registry_lists_the_built_in_strategies():
    assert {"nsga2", "random"} <= set(strategy_names())
    assert isinstance(_evaluated(make_space("layer_list", (1, 8, 8), 10), 1, np.random.default_rng(0))[0], Candidate)
