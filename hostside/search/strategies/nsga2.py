"""NSGA-II (Deb et al. 2002) with elitist (mu + lambda) survival over all evaluated candidates.

Ranks and crowding distances come from pymoo (``hostside.metrics.rank_and_crowding``); the
binary tournament is the two comparisons the paper defines and is written here because
pymoo's ``TournamentSelection`` works on its ``Population`` objects, not on our records.

A share of each generation (``immigrant_rate``) is fresh random samples ("random
immigrants", Grefenstette 1992): with the small populations a training budget allows, the
elite collapses onto one lineage within a few generations, and crowding keeps its extreme
members even when they are useless (a fast net at 30% accuracy), so without new blood the
search stops exploring other regions of the space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np

from hostside.options import setting
from hostside.metrics import rank_and_crowding
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy


@dataclass
class NSGA2Options:
    crossover_rate: float = setting(0.9, "probability that a child comes from a one-point crossover of two "
                                    "tournament winners", minimum=0, maximum=1)
    mutation_rate: float = setting(0.8, "probability that a child is mutated (one operator of the space)",
                                   minimum=0, maximum=1)
    immigrant_rate: float = setting(0.25, "share of each generation sampled fresh, for diversity",
                                    minimum=0, maximum=1)
    inherit_weights: bool = setting(False, "children start from their first parent's weights (matched by node id) "
                                    "instead of a fresh initialisation")


@register_strategy("nsga2")
class NSGA2(Strategy):
    Options = NSGA2Options

    def survivors(self, evaluated: Sequence[Candidate]) -> Tuple[List[Candidate], np.ndarray, np.ndarray]:
        """The ``population`` best candidates by rank then crowding, with their rank and crowding."""
        F = np.array([c.objectives for c in evaluated], dtype=float)
        cv = np.array([c.violation for c in evaluated], dtype=float)
        rank, crowding = rank_and_crowding(F, cv)
        order = np.lexsort((-crowding, rank))[: self.settings.population]
        return [evaluated[i] for i in order], rank[order], crowding[order]

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        complete = [c for c in ctx.evaluated() if c.complete]
        if len(complete) < self.settings.population:
            return [Proposal(ctx.space.sample(ctx.rng), "sample") for _ in range(n)]
        parents, rank, crowding = self.survivors(complete)
        return [self._child(ctx, parents, rank, crowding) for _ in range(n)]

    def _child(self, ctx: AskContext, parents: List[Candidate], rank: np.ndarray, crowding: np.ndarray) -> Proposal:
        rng, space, options = ctx.rng, ctx.space, self.options
        if rng.random() < options.immigrant_rate:
            return Proposal(space.sample(rng), "immigrant")

        first = self._tournament(rng, rank, crowding)
        operators = []
        ids = [parents[first].id]
        genotype = parents[first].genotype
        if rng.random() < options.crossover_rate:
            second = self._tournament(rng, rank, crowding)
            if second != first:
                genotype = space.crossover(genotype, parents[second].genotype, rng)
                ids.append(parents[second].id)
                operators.append("crossover")
        if not operators or rng.random() < options.mutation_rate:
            genotype, mutation = space.mutate(genotype, rng)
            operators.append(mutation)
        weights_from = tuple(ids) if options.inherit_weights else ()
        return Proposal(genotype, "+".join(operators), tuple(ids), weights_from)

    @staticmethod
    def _tournament(rng: np.random.Generator, rank: np.ndarray, crowding: np.ndarray) -> int:
        """Binary tournament: the lower rank wins, then the larger crowding distance; ties go to the first."""
        if len(rank) == 1:
            return 0
        a, b = (int(i) for i in rng.choice(len(rank), size=2, replace=False))
        return a if (rank[a], -crowding[a]) <= (rank[b], -crowding[b]) else b
