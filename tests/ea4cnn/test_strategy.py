"""The EA4CNN strategy's arithmetic (fitness, tournament, replacement with speciation), its
options, and Algorithm 1 over ask/tell on journal-like records: ages, resets, replay."""

from __future__ import annotations

import math
from typing import List

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.search.candidate import Candidate
from hostside.search.strategies.base import AskContext, StrategySettings, make_strategy
from hostside.search.strategies.ea4cnn import Member, fitness, replace_with_speciation, tournament
from hostside.spaces.ea4cnn import Ea4cnnSpace


def test_fitness_is_equation_1():
    assert fitness(0.79, 1000, 1000) == 0.0
    assert fitness(None, 1000, 1000) == 0.0
    assert fitness(0.9, 1000, 1000) == pytest.approx(0.9 * (0.5 / math.log(2) + 1))
    # Half the parameters of the reference at the same accuracy scores higher.
    assert fitness(0.9, 500, 1000) > fitness(0.9, 1000, 1000) > fitness(0.9, 4000, 1000)
    assert fitness(0.9, 1000, 1000, k=1.0, a_min=0.95) == 0.0
    assert fitness(0.96, 1000, 1000, k=1.0, a_min=0.95) == pytest.approx(0.96 * (1 / math.log(2) + 1))


def members(spec: List[tuple]) -> List[Member]:
    return [Member(i, f, age, 100) for i, (f, age) in enumerate(spec)]


def test_replacement_takes_the_same_number_of_best_per_age_level():
    pool = members([(0.9, 1), (0.8, 1), (0.7, 1), (0.6, 1), (0.5, 2), (0.4, 2), (0.3, 3), (0.2, 3), (0.1, 3)])
    chosen = replace_with_speciation(pool, 6)
    assert sorted(m.id for m in chosen) == [0, 1, 4, 5, 6, 7]  # two best of each of the 3 levels
    assert sorted(m.id for m in replace_with_speciation(pool, 6, speciation=False)) == [0, 1, 2, 3, 4, 5]


def test_replacement_fills_places_a_level_cannot():
    pool = members([(0.9, 1), (0.8, 1), (0.7, 1), (0.6, 1), (0.1, 2)])
    # 4 places over 2 levels: level 2 has one member; its free place goes to the best left over.
    assert sorted(m.id for m in replace_with_speciation(pool, 4)) == [0, 1, 2, 4]
    many_levels = members([(0.5, 0), (0.9, 1), (0.1, 2), (0.7, 3)])
    assert sorted(m.id for m in replace_with_speciation(many_levels, 2)) == [1, 3]


def test_two_member_tournament_keeps_the_fitter():
    rng = np.random.default_rng(0)
    pool = members([(0.1, 1), (0.9, 1), (0.5, 1)])
    wins = [tournament(pool, rng).id for _ in range(300)]
    assert wins.count(0) == 0  # the worst never wins a two-member tournament
    assert wins.count(1) > wins.count(2) > 0


def settings(population=4):
    return StrategySettings(objectives=("accuracy", "params"), budgets={}, population=population, epochs=1,
                            budget=100, seed=0)


@pytest.mark.parametrize("options, message", [
    ({"crossover_rate": 1.5}, "option 'crossover_rate': 1.5 is not allowed; give a number in [0, 1]"),
    ({"p_m": -0.1}, "option 'p_m' (now 'mutation_rate'): -0.1 is not allowed; give a number in [0, 1]"),
    ({"mo_probabilities": [0.5, 0.5, 0.1, 0, 0, 0]}, "sums to 1.1; the six probabilities must sum to 1"),
    ({"mo_probabilities": [1.0]}, "needs 6 values"),
    ({"mo_probabilities": [1.2, -0.2, 0, 0, 0, 0]}, "MO1 = 1.2 is not a probability"),
    ({"ablation": "EA4"}, "choose one of EA1, EA2, EA3"),
    ({"p_cc": 0.3}, "option 'p_cc' is unknown"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(UserError, match="strategy 'ea4cnn'") as info:
        make_strategy("ea4cnn", options, settings())
    assert message in str(info.value) and "\n" not in str(info.value)


def test_paper_defaults():
    strategy = make_strategy("ea4cnn", {}, settings(population=8))
    o = strategy.options
    assert (o.crossover_rate, o.mutation_probability, o.mo_probabilities, o.k, o.a_min) == (
        0.35, 0.7, [0.41, 0.07, 0.03, 0.29, 0.10, 0.10], 0.5, 0.8)
    # The ablation study's EA2 mutates with 0.8 unless mutation_rate says otherwise.
    assert make_strategy("ea4cnn", {"ablation": "EA2"}, settings()).options.mutation_probability == 0.8
    assert make_strategy("ea4cnn", {"ablation": "EA2", "mutation_rate": 0.3}, settings()).options.mutation_probability == 0.3
    assert o.epochs_per_generation == 1 and strategy.age_max == 4 and strategy.split_fractions == (0.10, 0.15)


class Run:
    """The records a journal would hold: proposals become candidates with made-up but
    consistent training results (accuracy from the genotype's learning rate and filters)."""

    def __init__(self, strategy, space, accuracy):
        self.strategy, self.space, self.accuracy = strategy, space, accuracy
        self.records: List[Candidate] = []

    def ctx(self, generation):
        return AskContext(self.space, tuple(self.records), np.random.default_rng([0, generation]), generation,
                          len(self.records))

    def generation(self, g: int) -> List[Candidate]:
        proposals = self.strategy.ask(4, self.ctx(g))
        born = []
        for p in proposals:
            spec = self.space.decode(p.genotype)
            metrics = {"val_accuracy": self.accuracy(p), "params": spec.cost.params, "accuracy": 0.5}
            born.append(Candidate(id=len(self.records) + len(born), genotype=p.genotype, parents=p.parents,
                                  operator=p.operator, generation=g, status="measured", arch_hash=spec.content_hash(),
                                  objectives=(0.5, 1.0), violation=0.0, metrics=metrics, attrs=dict(p.attrs),
                                  weights_path="w.npz", weights_from=p.weights_from, epochs=p.epochs))
        self.records += born
        updates = self.strategy.tell(born, self.ctx(g))
        self.records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}})
                        for c in self.records]
        return [r for r in self.records if r.generation == g]


def test_algorithm_1_over_ask_and_tell():
    space = Ea4cnnSpace((1, 8, 8), 10)
    strategy = make_strategy("ea4cnn", {"generations": 3}, settings())
    run = Run(strategy, space, lambda p: 0.85 + 0.01 * len(p.genotype["layers"]))
    initial = run.generation(0)
    assert len(initial) == 4 and {c.operator for c in initial} == {"sample"}
    assert all(c.attrs["ea4cnn.age"] == 1 and c.attrs["ea4cnn.species"] == 1 for c in initial)
    assert max(c.attrs["ea4cnn.fitness"] for c in initial) > 0
    by_id = {c.id: c for c in run.records}
    for g in (1, 2, 3):
        for child in run.generation(g):
            parent = by_id[child.parents[0]]
            assert child.weights_from[0] == parent.id and child.epochs == 1
            expected_age = min(parent.attrs["ea4cnn.age"] + 1, strategy.age_max)
            if child.attrs["ea4cnn.age_reset"]:
                assert child.attrs["ea4cnn.changed"] and child.attrs["ea4cnn.fitness"] < parent.attrs["ea4cnn.fitness"]
                assert child.attrs["ea4cnn.age"] == 1
            else:
                assert child.attrs["ea4cnn.age"] == expected_age
            if child.operator == "retrain":
                assert child.genotype["layers"] == parent.genotype["layers"] and child.weights_from == (parent.id,)
            if "crossover" in child.operator:
                assert len(child.parents) == 2 and child.weights_from == child.parents
        by_id = {c.id: c for c in run.records}
    assert strategy.ask(4, run.ctx(4)) == []  # G_max generations done


def test_ablations_switch_operators_off():
    space = Ea4cnnSpace((1, 8, 8), 10)
    for ablation, allowed in (("EA1", {"retrain"}), ("EA2", None)):
        strategy = make_strategy("ea4cnn", {"ablation": ablation, "generations": 2}, settings())
        run = Run(strategy, space, lambda p: 0.9)
        run.generation(0)
        operators = {c.operator for g in (1, 2) for c in run.generation(g)}
        if allowed is not None:
            assert operators == allowed
        else:
            assert not any("crossover" in op for op in operators) and any(op.startswith("MO") for op in operators)


def test_fitness_drop_after_a_change_resets_the_age():
    space = Ea4cnnSpace((1, 8, 8), 10)
    strategy = make_strategy("ea4cnn", {"mutation_rate": 1.0, "crossover_rate": 0.0, "generations": 1}, settings())
    # Every change makes the network worse than its parent: the accuracy falls below a_min.
    run = Run(strategy, space, lambda p: 0.95 if p.operator == "sample" else 0.5)
    run.generation(0)
    children = run.generation(1)
    assert children and all(c.attrs["ea4cnn.changed"] for c in children)
    assert all(c.attrs["ea4cnn.age_reset"] and c.attrs["ea4cnn.age"] == 1 and c.attrs["ea4cnn.fitness"] == 0
               for c in children)


def test_rs_cnn_trains_population_networks_once_for_the_whole_run():
    space = Ea4cnnSpace((1, 8, 8), 10)
    strategy = make_strategy("rs-cnn", {"generations": 20}, settings())
    run = Run(strategy, space, lambda p: 0.9)
    first = run.generation(0)
    assert len(first) == 4 and all(c.epochs == 21 and not c.weights_from for c in first)
    assert all(c.attrs["rs-cnn.fitness"] > 0 for c in first)
    assert strategy.ask(4, run.ctx(1)) == []


def test_ea4cnn_refuses_another_space(tmp_path):
    from hostside.spaces import make_space

    strategy = make_strategy("ea4cnn", {}, settings())
    with pytest.raises(UserError, match="add --space ea4cnn"):
        strategy.prepare(tmp_path, make_space("layer_list", (1, 8, 8), 10))
    strategy.prepare(tmp_path, Ea4cnnSpace((1, 8, 8), 10))  # no seed: nothing to write
    assert not any(tmp_path.iterdir())


def test_the_strategies_bring_their_space():
    from hostside.search.config import SearchConfig

    assert SearchConfig(strategy="ea4cnn").space == "ea4cnn"
    assert SearchConfig(strategy="rs-cnn").space == "ea4cnn"
    assert SearchConfig(strategy="rs-cnn", space="layer_list").space == "layer_list"
