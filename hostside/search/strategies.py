"""Search strategies: given what the journal knows, propose the next genotypes.

A strategy keeps no state of its own: it reads the evaluated candidates each time it is
asked (as Optuna's GA sampler reads its storage), so a resumed run continues exactly where
the journal says it is. Strategies only call the space's operators and never look inside a
genotype, so any space works with any strategy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from hostside.search.pareto import objective_matrix, rank_and_crowding, violation
from hostside.spaces.base import Genotype, SearchSpace


@dataclass
class Proposal:
    """A genotype to try, its parents' candidate ids and the operator that produced it."""

    genotype: Genotype
    operator: str
    parents: List[int] = field(default_factory=list)


class Strategy(ABC):
    name = ""

    @abstractmethod
    def propose(self, space: SearchSpace, evaluated: Sequence[Dict[str, Any]], rng: np.random.Generator) -> Proposal:
        """One new proposal; ``evaluated`` are the measured candidates of the run so far."""


class RandomSearch(Strategy):
    """Uniform samples from the space: the baseline every other strategy must beat."""

    name = "random"

    def propose(self, space: SearchSpace, evaluated: Sequence[Dict[str, Any]], rng: np.random.Generator) -> Proposal:
        return Proposal(space.sample(rng), "sample")


class NSGA2(Strategy):
    """NSGA-II (Deb et al. 2002) with elitist (mu + lambda) survival over all evaluated candidates.

    Ranks and crowding distances come from pymoo (``rank_and_crowding``); the binary
    tournament is the two comparisons the paper defines and is written here because pymoo's
    ``TournamentSelection`` works on its ``Population`` objects, not on journal rows.

    A share of each generation (``immigrant_rate``) is fresh random samples ("random
    immigrants", Grefenstette 1992): with the small populations a training budget allows, the
    elite collapses onto one lineage within a few generations, and crowding keeps its
    extreme members even when they are useless (a fast net at 30% accuracy), so without new
    blood the search stops exploring other regions of the space.
    """

    name = "nsga2"

    def __init__(self, objectives: Sequence[str], budgets: Mapping[str, float], population: int,
                 crossover_rate: float = 0.9, mutation_rate: float = 0.8, immigrant_rate: float = 0.25):
        self.objectives = list(objectives)
        self.budgets = dict(budgets)
        self.population = population
        self.crossover_rate = crossover_rate
        self.mutation_rate = mutation_rate
        self.immigrant_rate = immigrant_rate

    def survivors(self, evaluated: Sequence[Dict[str, Any]]) -> tuple:
        """The ``population`` best candidates by rank then crowding, with their rank and crowding."""
        F = objective_matrix(evaluated, self.objectives)
        cv = np.array([violation(r, self.budgets) for r in evaluated], dtype=float)
        rank, crowding = rank_and_crowding(F, cv)
        order = np.lexsort((-crowding, rank))[: self.population]
        return [evaluated[i] for i in order], rank[order], crowding[order]

    def propose(self, space: SearchSpace, evaluated: Sequence[Dict[str, Any]], rng: np.random.Generator) -> Proposal:
        complete = [r for r in evaluated if not np.isnan(objective_matrix([r], self.objectives)).any()]
        if len(complete) < self.population:
            return Proposal(space.sample(rng), "sample")
        if rng.random() < self.immigrant_rate:
            return Proposal(space.sample(rng), "immigrant")
        parents, rank, crowding = self.survivors(complete)

        def tournament() -> int:
            if len(parents) == 1:
                return 0
            a, b = rng.choice(len(parents), size=2, replace=False)
            if rank[a] != rank[b]:
                return int(a if rank[a] < rank[b] else b)
            return int(a if crowding[a] >= crowding[b] else b)

        first = tournament()
        operators = []
        ids = [parents[first]["id"]]
        genotype = parents[first]["genotype"]
        if rng.random() < self.crossover_rate:
            second = tournament()
            if second != first:
                genotype = space.crossover(genotype, parents[second]["genotype"], rng)
                ids.append(parents[second]["id"])
                operators.append("crossover")
        if not operators or rng.random() < self.mutation_rate:
            genotype, mutation = space.mutate(genotype, rng)
            operators.append(mutation)
        return Proposal(genotype, "+".join(operators), ids)


def make_strategy(name: str, objectives: Sequence[str], budgets: Mapping[str, float], population: int) -> Strategy:
    if name == "random":
        return RandomSearch()
    return NSGA2(objectives, budgets, population)
