"""Regularized (aging) evolution (Real et al. 2019), multi-objective, on any space.

The population is the ``population`` most recently born evaluated candidates: each new child
joins it and the oldest member dies, however good it is. That is the whole of the method's
regularisation, and it is a pure function of the records (birth order is the candidate id),
so the strategy keeps no state and works under the steady-state policy (one child per
finished candidate) and the generational one (``n`` children from the same population) alike.
Candidates that failed or miss an objective never join.

Each child mutates the best of ``sample_size`` members drawn at random. With several
objectives "best" is the lower Pareto rank over the population (Deb's constraint rule first:
budget violations rank last), ties going to the larger crowding distance, as NSGA-II's
tournament judges; the paper's single accuracy is the one-objective case of the same rule.
Only ``space.sample`` and ``space.mutate`` are used, so every space works.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

import numpy as np

from hostside.errors import UserError
from hostside.options import setting
from hostside.metrics import rank_and_crowding
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy


@dataclass
class RegularizedEvolutionOptions:
    population: int = setting(0, "members alive at once; 0 uses the run's `population`", minimum=0)
    sample_size: int = setting(3, "members drawn for each tournament (the paper's S)", minimum=1)

    def validate(self) -> None:
        if self.population == 1:
            raise UserError("option 'population': 1 is not allowed; aging needs at least 2 members")


@register_strategy("regularized-evolution")
class RegularizedEvolution(Strategy):
    Options = RegularizedEvolutionOptions
    default_policy = "steady-state"

    @property
    def population_size(self) -> int:
        return max(2, self.options.population or self.settings.population)

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        alive = [c for c in ctx.evaluated() if c.complete][-self.population_size:]
        started = len(ctx.evaluated()) + len(ctx.in_flight)
        proposals = []
        for _ in range(n):
            if started + len(proposals) < self.population_size or not alive:  # the initial population
                proposals.append(Proposal(ctx.space.sample(ctx.rng), "sample"))
                continue
            parent = alive[self._tournament(ctx.rng, alive)]
            genotype, operator = ctx.space.mutate(dict(parent.genotype), ctx.rng)
            proposals.append(Proposal(genotype, operator, (parent.id,)))
        return proposals

    def _tournament(self, rng: np.random.Generator, alive: Sequence[Candidate]) -> int:
        """Index of the best of ``sample_size`` members drawn without replacement."""
        F = np.array([c.objectives for c in alive], dtype=float)
        cv = np.array([c.violation for c in alive], dtype=float)
        rank, crowding = rank_and_crowding(F, cv)
        drawn = rng.choice(len(alive), size=min(self.options.sample_size, len(alive)), replace=False)
        return int(min(drawn, key=lambda i: (rank[i], -crowding[i], i)))
