"""SPEA-II: survival checked against the definition and pymoo on fixed objective matrices,
ForcedMutation never repeating a tried network, the paper's Score recorded, stop rules and the
iteration limit ending the search, bad rules refused before a search starts."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.search.candidate import Candidate
from hostside.search.config import SearchConfig
from hostside.search.stop_rules import parse_rules
from hostside.search.strategies.base import AskContext, StrategySettings, make_strategy
from hostside.search.strategies.spea2 import forced_mutation, spea2_survival
from hostside.spaces import make_space


def test_survival_keeps_the_front_and_truncates_the_most_crowded():
    # Front: (0,1) (0.1,0.9) (0.11,0.89) (1,0); dominated: (0.5,0.95) (1,1)
    F = np.array([[0, 1], [0.1, 0.9], [0.11, 0.89], [1, 0], [0.5, 0.95], [1, 1]], float)
    keep, fitness = spea2_survival(F, np.zeros(6), 3)
    assert set(keep) <= {0, 1, 2, 3} and {0, 3} <= set(keep)  # extremes survive; one of the close pair goes
    assert len({1, 2} & set(keep)) == 1
    assert (fitness[[0, 1, 2, 3]] < 1).all() and (fitness[[4, 5]] >= 1).all()  # R = 0 on the front
    # raw fitness R: (0.5,0.95) is dominated by (0.1,0.9) and (0.11,0.89), each dominating 2 -> R = 4
    assert int(fitness[4]) == 4
    keep, _ = spea2_survival(F, np.zeros(6), 5)  # front too small: filled by fitness
    assert set(keep) == {0, 1, 2, 3, 4}


def test_survival_equals_pymoo_spea2_and_infeasible_rows_come_last():
    from pymoo.algorithms.moo.spea2 import SPEA2Survival
    from pymoo.core.population import Population

    rng = np.random.default_rng(7)
    for _ in range(5):
        F = rng.random((20, 2))
        pop = Population.new("F", F, "index", np.arange(20))
        expected = SPEA2Survival(filter_infeasible=False).do(None, pop, n_survive=8).get("index")
        keep, _ = spea2_survival(F, np.zeros(20), 8)
        assert list(keep) == list(expected)
    cv = np.zeros(20)
    cv[:15] = np.arange(1, 16)
    keep, fitness = spea2_survival(F, cv, 8)
    assert set(keep[:5]) == set(range(15, 20)) and list(keep[5:]) == [0, 1, 2]
    assert fitness[15:].max() < fitness[:15].min()


def test_forced_mutation_never_repeats_a_tried_network():
    space = make_space("dense", (1, 8, 8), 10, activations=["relu", "elu", "tanh"], condense_layers=[1, 2],
                       fels=[16, 28], kernels=[3])
    rng = np.random.default_rng(0)
    parent = space.sample(rng)
    tried = {space.decode(parent).structure_hash()}
    children = []
    while True:
        child = forced_mutation(space, parent, rng, tried)
        if child is None:
            break
        children.append(child[0])
        assert child[1]
    hashes = [space.decode(c).structure_hash() for c in children]
    assert len(set(hashes)) == len(hashes)
    # 3 x 3 activations x 2 layer counts x 2 FEL counts = 36 networks, the parent among them: the
    # random walk finds (nearly) all the others, then gives up rather than repeat one
    assert 33 <= len(children) <= 35


def _settings(population=6):
    return StrategySettings(objectives=("accuracy", "params"), budgets={}, population=population, epochs=1,
                            budget=100, seed=0)


class Run:
    """Journal-like records over ask/tell with a synthetic accuracy (no training)."""

    def __init__(self, strategy, space, latency=lambda spec: 5.0, test_accuracy=lambda g: 0.5):
        self.strategy, self.space, self.records, self.latency = strategy, space, [], latency
        self.test_accuracy = test_accuracy

    def ctx(self, generation):
        return AskContext(space=self.space, records=tuple(self.records),
                          rng=np.random.default_rng([0, generation]), generation=generation,
                          exercises=len(self.records))

    def generation(self, g):
        proposals = self.strategy.ask(6, self.ctx(g))
        born = []
        for p in proposals:
            spec = self.space.decode(p.genotype)
            accuracy = 0.8 + 0.04 * p.genotype["condense_layers"] - (0.1 if p.genotype["left"] == "linear" else 0)
            params = spec.cost.params
            metrics = {"val_accuracy": accuracy, "accuracy": self.test_accuracy(p.genotype), "params": params,
                       "latency_ms": self.latency(spec)}
            born.append(Candidate(id=len(self.records) + len(born), genotype=p.genotype, parents=p.parents,
                                  operator=p.operator, generation=g, status="measured", arch_hash=spec.structure_hash(),
                                  objectives=(1 - accuracy, float(params)), violation=0.0, metrics=metrics,
                                  attrs={}))
        self.records += born
        updates = self.strategy.tell(born, self.ctx(g))
        self.records = [Candidate(**{**c.__dict__, "attrs": {**c.attrs, **updates.get(c.id, {})}})
                        for c in self.records]
        return proposals


def test_iterations_over_ask_and_tell_record_score_and_stop_at_the_limit(capsys):
    space = make_space("dense", (1, 8, 8), 10)
    run = Run(make_strategy("spea2", {"iterations": 3}, _settings()), space)
    for g in range(3):
        assert len(run.generation(g)) == 6
    for c in run.records:
        assert c.attrs["spea2.score"] == pytest.approx(c.metrics["val_accuracy"] / c.metrics["params"])
        assert "spea2.in_archive" in c.attrs
        if c.generation:
            assert c.parents and "forced_mutation" in c.operator
    assert len({c.arch_hash for c in run.records}) == len(run.records)
    assert run.strategy.ask(6, run.ctx(3)) == []
    assert "iteration limit (3 iterations) reached" in capsys.readouterr().err


def test_score_is_the_fitness_the_archive_keeps_the_best_scores_and_test_accuracy_changes_nothing():
    space = make_space("dense", (1, 8, 8), 10)
    runs = []
    for test_accuracy in (lambda g: 0.5, lambda g: float(np.random.default_rng(len(str(g))).random())):
        run = Run(make_strategy("spea2", {"iterations": 3}, _settings()), space, test_accuracy=test_accuracy)
        for g in range(3):
            run.generation(g)
        runs.append(run)
    assert [c.genotype for c in runs[0].records] == [c.genotype for c in runs[1].records]
    run = runs[0]
    _, archive, fitness = run.strategy.archives(run.records)[-1]
    scores = {c.id: c.metrics["val_accuracy"] / c.metrics["params"] for c in run.records}
    best = sorted(scores, key=lambda i: -scores[i])[: len(archive)]
    assert {c.id for c in archive} == set(best)
    assert fitness and all(f == pytest.approx(-scores[i]) for i, f in fitness.items())
    spea = Run(make_strategy("spea2", {"iterations": 3, "fitness": "spea"}, _settings()), space)
    for g in range(3):
        spea.generation(g)
    assert [c.genotype for c in spea.records] != [c.genotype for c in run.records]
    with pytest.raises(UserError, match="option 'fitness': 'nid' is not allowed; choose one of score, spea"):
        make_strategy("spea2", {"fitness": "nid"}, _settings())


def test_a_stop_rule_met_by_an_archive_member_ends_the_search():
    from types import SimpleNamespace

    from hostside.journal import Journal
    from hostside.search.terminations import StopRules

    space = make_space("dense", (1, 8, 8), 10)
    rules = parse_rules(["fast: accuracy >= 0.8 and latency_ms <= 2", "frugal: accuracy >= 0.99 and energy_mj <= 0.5"])
    strategy = make_strategy("spea2", {"iterations": 8}, _settings())
    run = Run(strategy, space, latency=lambda spec: 1.0 if spec.cost.params < 1500 else 9.0)
    journal = Journal.in_memory()
    engine = SimpleNamespace(records=lambda: run.records, strategy=strategy, journal=journal)
    termination = StopRules(rules)
    generations = 0
    while termination.reason(engine) is None:
        assert run.generation(generations)
        generations += 1
        assert generations < 8
    reason = termination.reason(engine)
    assert reason.startswith("stop rule 'fast'")
    archive_ids = {c.id for c in strategy.stop_candidates(run.records)}
    stopped = [cid for cid, attrs in journal.all_attrs().items() if "engine.stopped_by" in attrs]
    assert len(stopped) == 1 and stopped[0] in archive_ids
    met = next(c for c in run.records if c.id == stopped[0])
    assert met.metrics["latency_ms"] <= 2 and met.metrics["val_accuracy"] >= 0.8


def test_rules_parse_and_bad_ones_are_one_line():
    rules = parse_rules(["accuracy >= 0.97 and energy_mj <= 0.5 or latency_ms <= 2"])
    assert [r.text for r in rules] == ["accuracy >= 0.97 and energy_mj <= 0.5", "latency_ms <= 2"]
    assert rules[1].met_by({"latency_ms": 1.5}) and not rules[0].met_by({"accuracy": 0.99})
    with pytest.raises(UserError, match="metric 'joules' is unknown"):
        parse_rules(["joules <= 3"])
    with pytest.raises(UserError, match="cannot read 'accuracy is high'"):
        parse_rules(["accuracy is high"])


def test_an_energy_rule_without_a_power_source_is_refused_before_the_search():
    table = {"strategy": "spea2", "stop": {"frugal": "accuracy >= 0.97 and energy_mj <= 0.5"}}
    with pytest.raises(UserError, match="stop rule 'frugal' needs energy_mj, but this run measures no energy"):
        SearchConfig.from_dict(table)
    config = SearchConfig.from_dict({**table, "power": "rapl"})
    assert config.stop == ["frugal: accuracy >= 0.97 and energy_mj <= 0.5"]
    assert SearchConfig.from_dict({"strategy": {"name": "spea2", "iterations": 2},
                                   "stop": {"fast": "latency_ms <= 2"}}).strategy_options == {"iterations": 2}
    # any strategy takes stop rules: the scheduler checks them
    assert SearchConfig.from_dict({"strategy": "nsga2", "stop": {"fast": "latency_ms <= 2"}}).stop == [
        "fast: latency_ms <= 2"]
    # a journal from when the rules were spea2's option still loads
    old = SearchConfig.from_dict({"strategy": "spea2", "strategy_options": {"stop": ["fast: latency_ms <= 2"]}})
    assert old.stop == ["fast: latency_ms <= 2"] and old.strategy_options == {}
