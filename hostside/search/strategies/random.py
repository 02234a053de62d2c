"""Uniform samples from the space: the baseline every other strategy must beat."""

from __future__ import annotations

from typing import List

from hostside.search.candidate import Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy


@register_strategy("random")
class RandomSearch(Strategy):
    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        return [Proposal(ctx.space.sample(ctx.rng), "sample") for _ in range(n)]
