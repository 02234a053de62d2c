"""RS-CNN, the random-search baseline of EA4CNN (Badan & Sekanina 2019, section 5.1).

``population`` random networks of the same space, each trained once for as many epochs as
EA4CNN spends on one lineage: ``initial_epochs + generations * epochs_per_generation``, so at
the same settings both use the same number of training epochs (|P| x that). Each network is
then one long training exercise; the run's budget (``budget_unit = "epochs"`` counts epochs)
decides how many may start. Every network gets EA4CNN's fitness (``rs-cnn.fitness``), with
the best of these networks as the s_rel reference, so the two are compared on one scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

from hostside.options import setting
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy
from hostside.search.strategies.ea4cnn import fitness

NAME = "rs-cnn"


@dataclass
class RsCnnOptions:
    generations: int = setting(20, "rounds of training", minimum=1)
    epochs_per_generation: int = setting(1, "epochs per round", minimum=1)
    initial_epochs: int = setting(1, "epochs before the first evaluation", minimum=0)
    k: float = setting(0.5, "as for `ea4cnn`", minimum=0, above_minimum=True)
    a_min: float = setting(0.8, "as for `ea4cnn`", minimum=0, maximum=1)

    @property
    def epochs(self) -> int:
        """Epochs per network: what one EA4CNN lineage trains over the whole run."""
        return self.initial_epochs + self.generations * self.epochs_per_generation


@register_strategy(NAME)
class RsCnn(Strategy):
    Options = RsCnnOptions
    split_fractions = (0.10, 0.15)
    default_space = "ea4cnn"

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        if any(c.generation < ctx.generation for c in ctx.records):
            return []
        asked = [c for c in ctx.records if c.status != "rejected"]
        wanted = max(0, min(n, self.settings.population - len(asked)))
        return [Proposal(ctx.space.sample(ctx.rng), "sample", epochs=self.options.epochs,
                         data_seed=int(ctx.rng.integers(0, 2 ** 31))) for _ in range(wanted)]

    def tell(self, finished: Sequence[Candidate], ctx: AskContext) -> Dict[int, Dict[str, Any]]:
        trained = [c for c in ctx.records if c.trained and c.metrics.get("val_accuracy") is not None]
        if not trained:
            return {}
        best = max(trained, key=lambda c: (c.metrics["val_accuracy"], -int(c.metrics["params"]), -c.id))
        reference = int(best.metrics["params"])
        return {
            c.id: {f"{NAME}.fitness": fitness(c.metrics["val_accuracy"], int(c.metrics["params"]), reference,
                                              self.options.k, self.options.a_min),
                   f"{NAME}.s_rel": int(c.metrics["params"]) / reference}
            for c in finished if c.trained and c.metrics.get("val_accuracy") is not None
        }
