"""MENNDL's asynchronous genetic algorithm (Young et al., MENNDL): a population that evolves as results arrive.

MENNDL's master never waits for a generation: whenever a worker returns a trained network, the
master puts it into the population (keeping the best ``population`` by fitness), picks two
parents by tournament, crosses them over, mutates the child and sends it to the free worker.
Here that is the ``steady-state`` policy (default) asking for one child per freed slot. Fitness
is validation accuracy (minimised as 1 - accuracy), as in MENNDL, which judges each network on
held-out validation data; ``fitness = "<objective>"`` makes any other configured objective the
one optimised, and all objectives are still measured and journaled for the post-hoc analysis
(``hostside runs analyze``). Children train from a fresh initialisation: the paper does not say
whether a child inherits weights, and a fresh start keeps every network's accuracy comparable.

Stateless: the population is recomputed from the records at every ask, so a resumed run
continues with the population the killed one had.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from hostside.errors import UserError
from hostside.options import setting
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy
import hostside.spaces.menndl  # noqa: F401 - registers the default space


@dataclass
class MenndlOptions:
    fitness: str = setting("val_accuracy", "the objective the GA optimises (validation accuracy, the paper's); "
                           "every configured objective is still measured and journaled")
    tournament: int = setting(2, "candidates drawn per parent selection", minimum=1)
    crossover_rate: float = setting(0.5, "probability a child has two parents (else it is a mutated copy of one)",
                                    minimum=0, maximum=1, aliases=("p_crossover",))


@register_strategy("menndl")
class Menndl(Strategy):
    Options = MenndlOptions
    default_space = "menndl"
    default_policy = "steady-state"

    def _fitness_index(self) -> int:
        """The run's objective that is ``fitness``, by what it reads (``accuracy`` is the older
        name of ``val_accuracy``, so either names the other)."""
        from hostside.search.objectives import objective

        objectives = list(self.settings.objectives)
        wanted = objective(self.options.fitness)
        same = [i for i, name in enumerate(objectives)
                if (objective(name).column, objective(name).sense) == (wanted.column, wanted.sense)]
        if not same:
            raise UserError(f"strategy 'menndl' option 'fitness' is {self.options.fitness!r}, which is not one of the "
                            f"run's objectives ({', '.join(objectives)}); add it to --objectives")
        return same[0]

    def fitness(self, candidate: Candidate) -> float:
        """Lower is better (the objective in minimisation form); NaN (missing) is worst."""
        value = candidate.objectives[self._fitness_index()]
        return math.inf if value is None or math.isnan(value) else float(value)

    def population(self, ctx: AskContext) -> List[Candidate]:
        """The best ``population`` measured candidates (ties: the older one stays)."""
        evaluated = sorted(ctx.evaluated(), key=lambda c: (self.fitness(c), c.id))
        return evaluated[: self.settings.population]

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        population = self.population(ctx)
        proposals: List[Proposal] = []
        started = len([c for c in ctx.records if c.status != "rejected"])
        for _ in range(n):
            if started + len(proposals) < self.settings.population or len(population) < 2:
                proposals.append(Proposal(ctx.space.sample(ctx.rng), "sample"))
                continue
            first = self._tournament(population, ctx)
            if ctx.rng.random() < self.options.crossover_rate:
                second = self._tournament([c for c in population if c.id != first.id], ctx)
                genotype = ctx.space.crossover(first.genotype, second.genotype, ctx.rng)
                child, op = ctx.space.mutate(genotype, ctx.rng)
                proposals.append(Proposal(child, f"crossover+{op}", parents=(first.id, second.id)))
            else:
                child, op = ctx.space.mutate(first.genotype, ctx.rng)
                proposals.append(Proposal(child, op, parents=(first.id,)))
        return proposals

    def _tournament(self, population: Sequence[Candidate], ctx: AskContext) -> Candidate:
        picks = ctx.rng.choice(len(population), size=min(self.options.tournament, len(population)), replace=False)
        return min((population[int(i)] for i in picks), key=lambda c: (self.fitness(c), c.id))

    def tell(self, finished: Sequence[Candidate], ctx: AskContext) -> Dict[int, Dict[str, Any]]:
        """Journal each finished candidate's fitness and whether it entered the population."""
        members = {c.id for c in self.population(ctx)}
        return {c.id: {"menndl.fitness": None if math.isinf(self.fitness(c)) else self.fitness(c),
                       "menndl.in_population": c.id in members}
                for c in finished if c.evaluated}
