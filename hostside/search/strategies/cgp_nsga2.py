"""The CGP NAS algorithm (Pinos, Mrazek & Sekanina): NSGA-II (mu + lambda) by mutation only.

Each generation's offspring are one mutant of every one of the ``population`` survivors (the
paper's O = mutate(replicate(P)), no parent selection), and the survivors are the best by rank,
then crowding, over every evaluated candidate (mu + lambda). Fitness is read on the validation
split, like every choice a search makes here. All members of
one generation train on the same random subset D_train of the training set (``train_fraction``
of it, drawn by the generation's data seed), so their accuracies compare on equal data; the
next generation draws a new subset. A child starts from its parent's weights by node id (nodes
that stay active keep theirs, new ones start fresh). Augmentation and L2 are the run's
``[train]`` settings (``crop_padding``, ``hflip``, ``weight_decay``); the final front is
re-trained for ``final_epochs`` (E_retrain) on the full training set by the engine.

``immigrant_rate`` (0 in the paper, so 0 by default) replaces that share of the offspring with
fresh random samples, as ``nsga2`` does: on a large space a budget of a hundred or so trainings
otherwise spends every generation refining the first generation's best lineages.

``crossover_rate`` (0 in the paper, so 0 by default) makes that share of the mutants children of
their parent and a binary-tournament winner: the space's crossover joins them, then the mutation follows as always.
Why: a mutant changes one layer, so a network that needs a wide first layer from one lineage
and early downsampling from another is several selections away by mutation alone, and a small
population rarely keeps every intermediate step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from hostside.options import setting
from hostside.search.candidate import Proposal
from hostside.search.strategies.base import AskContext, register_strategy
from hostside.search.strategies.nsga2 import NSGA2


@dataclass
class CgpNsga2Options:
    train_fraction: float = setting(1.0, "share of the training set each generation trains on (D_train), drawn "
                                    "anew per generation", minimum=0, above_minimum=True, maximum=1)
    inherit_weights: bool = setting(True, "a child starts from its parent's weights (nodes that stay active keep "
                                    "theirs)")
    immigrant_rate: float = setting(0.0, "share of the offspring sampled fresh instead of mutated (0 in the "
                                    "paper); immigrants train on the generation's D_train too", minimum=0, maximum=1)
    crossover_rate: float = setting(0.0, "share of the mutants whose tournament winner is first crossed with a "
                                    "second one (the space's crossover; 0 in the paper, which has none): a mutant "
                                    "changes one layer, so traits of two lineages otherwise take several selections "
                                    "to meet", minimum=0, maximum=1)


@register_strategy("cgp-nsga2")
class CgpNsga2(NSGA2):
    Options = CgpNsga2Options
    default_space = "cgp"

    def _data(self, generation: int) -> dict:
        return {"data_seed": self.settings.seed * 100003 + generation, "train_fraction": self.options.train_fraction}

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        data = self._data(ctx.generation)
        complete = [c for c in ctx.evaluated() if c.complete]
        if len(complete) < self.settings.population:
            return [Proposal(ctx.space.sample(ctx.rng), "sample", **data) for _ in range(n)]
        parents, rank, crowding = self.survivors(complete)
        rng = ctx.rng
        children = []
        for i in range(n):
            # No draw at rate 0, so a seeded run of the paper's algorithm draws only its mutations.
            if self.options.immigrant_rate and rng.random() < self.options.immigrant_rate:
                children.append(Proposal(ctx.space.sample(rng), "immigrant", **data))
                continue
            parent = parents[i % len(parents)]  # every parent in turn: one mutant each per population
            ids, genotype, operators = (parent.id,), parent.genotype, []
            # As with immigrants, no draw at rate 0.
            if self.options.crossover_rate and rng.random() < self.options.crossover_rate:
                other = parents[self._tournament(rng, rank, crowding)]
                if other.id != parent.id:
                    genotype = ctx.space.crossover(genotype, other.genotype, rng)
                    ids, operators = (parent.id, other.id), ["crossover"]
            genotype, mutation = ctx.space.mutate(genotype, rng)
            weights_from = (parent.id,) if self.options.inherit_weights else ()
            children.append(Proposal(genotype, "+".join(operators + [mutation]), ids, weights_from, **data))
        return children
