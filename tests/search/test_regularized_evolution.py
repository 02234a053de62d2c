"""Regularized (aging) evolution: parents only from the youngest ``population`` evaluated
candidates, the Pareto-best of each sample, any space, the same children from the same records."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.metrics import non_dominated
from hostside.search.candidate import record_from_row
from hostside.search.strategies import AskContext, make_strategy
from hostside.spaces import make_space
from tests.search.nb201_records import drive, settings, space


def _ctx(space_, records, seed, in_flight=()):
    return AskContext(space_, tuple(records), np.random.default_rng(seed), len(records), len(records),
                      tuple(in_flight))


def test_parents_are_the_pareto_best_of_the_youngest_members():
    nb201 = space()
    strategy = make_strategy("regularized-evolution", {"population": 8, "sample_size": 8}, settings())
    records = drive(strategy, nb201, 40, seed=0)
    assert all(r.operator == "sample" for r in records[:8])
    assert all(r.operator == "edge" and len(r.parents) == 1 for r in records[8:])
    for i, child in enumerate(records[8:], start=8):
        alive = records[i - 8:i]  # drive drops duplicates, so the population is the 8 records before
        assert child.parents[0] in {r.id for r in alive}
        F = np.array([r.objectives for r in alive])
        front = {alive[j].id for j in non_dominated(F)}
        assert child.parents[0] in front  # the whole population is the sample: a front member wins


def test_a_generation_is_bred_from_one_population_and_in_flight_samples_count():
    nb201 = space()
    strategy = make_strategy("regularized-evolution", {"population": 6, "sample_size": 3}, settings())
    records = drive(strategy, nb201, 6, seed=1)
    children = strategy.ask(6, _ctx(nb201, records, 5))
    assert all(p.operator == "edge" and p.parents[0] in {r.id for r in records} for p in children)
    for proposal in children:
        nb201.decode(dict(proposal.genotype))
    # Four measured and two still training: the initial population is complete, so no more samples.
    training = [type(r)(**{**r.__dict__, "status": "training"}) for r in records[4:]]
    proposals = strategy.ask(3, _ctx(nb201, records[:4] + training, 5, training))
    assert all(p.operator == "edge" for p in proposals)
    assert {p.parents[0] for p in proposals} <= {r.id for r in records[:4]}


def test_resumes_identically_from_the_records():
    nb201 = space()
    options = {"population": 5, "sample_size": 2}
    records = drive(make_strategy("regularized-evolution", options, settings()), nb201, 15, seed=2)
    first = make_strategy("regularized-evolution", options, settings()).ask(4, _ctx(nb201, records, 9))
    again = make_strategy("regularized-evolution", options, settings()).ask(4, _ctx(nb201, records, 9))
    assert [(p.genotype, p.parents) for p in first] == [(p.genotype, p.parents) for p in again]


def test_works_on_a_space_without_categorical_genes():
    layers = make_space("layer_list", (1, 8, 8), 10)
    strategy = make_strategy("regularized-evolution", {"population": 3}, settings())
    rng = np.random.default_rng(3)
    records = [record_from_row({"id": i, "genotype": layers.sample(rng), "parents": [], "operator": "sample",
                                "generation": 0, "status": "measured", "arch_hash": str(i),
                                "val_accuracy": float(rng.uniform(0.5, 1)), "latency_ms": float(rng.uniform(1, 9))},
                               {}, ("val_accuracy", "latency_ms"), {}) for i in range(1, 4)]
    for proposal in strategy.ask(5, _ctx(layers, records, 4)):
        layers.decode(dict(proposal.genotype))
        assert proposal.parents[0] in {1, 2, 3}


@pytest.mark.parametrize("options, key", [({"population": 1}, "population"), ({"sample_size": 0}, "sample_size")])
def test_bad_options_are_one_line(options, key):
    with pytest.raises(UserError, match=key):
        make_strategy("regularized-evolution", options, settings())
