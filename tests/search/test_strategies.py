"""NSGA-II picks parents among the best-ranked feasible candidates; random search ignores history."""

from __future__ import annotations

import numpy as np

from hostside.search.strategies import NSGA2, RandomSearch
from hostside.spaces import make_space


def _evaluated(space, count, rng):
    rows = []
    for i in range(count):
        genotype = space.sample(rng)
        cost = space.decode(genotype).cost
        rows.append({"id": i, "genotype": genotype, "accuracy": float(rng.uniform(0.5, 1.0)),
                     "latency_ms": float(rng.uniform(0.1, 2.0)), "params": cost.params})
    return rows


def test_nsga2_breeds_from_the_elite_of_feasible_candidates():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(0)
    evaluated = _evaluated(space, 30, rng)
    strategy = NSGA2(["accuracy", "measured_latency"], {"latency_ms": 1.0}, population=6)
    survivors, rank, _ = strategy.survivors(evaluated)
    feasible = [r for r in evaluated if r["latency_ms"] <= 1.0]
    assert len(survivors) == 6 and all(r["latency_ms"] <= 1.0 for r in survivors) and len(feasible) > 6
    front = {r["id"] for r in feasible if not any(o["accuracy"] >= r["accuracy"] and o["latency_ms"] <= r["latency_ms"]
                                                  and o is not r for o in feasible)}
    assert len(front) <= 6 and {r["id"] for r, k in zip(survivors, rank) if k == 0} == front
    elite = {r["id"] for r in survivors}
    operators = []
    for _ in range(80):
        proposal = strategy.propose(space, evaluated, rng)
        operators.append(proposal.operator)
        assert space.is_valid(proposal.genotype)
        if proposal.operator == "immigrant":
            assert proposal.parents == []
        else:
            assert proposal.parents and set(proposal.parents) <= elite
            assert proposal.operator.split("+")[0] in ("crossover", "add_layer", "remove_layer", "modify_layer",
                                                       "modify_head", "modify_lr")
    assert 0 < operators.count("immigrant") < 40  # about a quarter are fresh samples


def test_nsga2_samples_until_a_population_is_evaluated_and_random_always_samples():
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(1)
    few = _evaluated(space, 3, rng)
    assert NSGA2(["accuracy", "params"], {}, population=6).propose(space, few, rng).operator == "sample"
    proposal = RandomSearch().propose(space, _evaluated(space, 30, rng), rng)
    assert proposal.operator == "sample" and proposal.parents == []
