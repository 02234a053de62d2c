"""Asynchronous successive halving (ASHA, Li et al. 2020), multi-objective: cheap trainings for
many networks, longer ones for the best of them.

Every new network is sampled at random and trained for the first rung's epochs. Whenever a
slot is free, the best not yet promoted candidate of the highest rung that has one is promoted:
it is in the top ``1/eta`` of its rung's evaluated candidates (by Pareto rank, then crowding,
as NSGA-II orders them: several objectives have no single "best"), and it trains on from its
trained weights (``Proposal.retrain``) for the epochs up to the next rung. With nothing to
promote, a new network starts at the lowest rung. No barrier: it suits the ``steady-state``
policy (its default), and the generational one simply asks a population of such choices.

Why this shape: in a table run a promotion costs only the seconds the extra epochs add
(``hostside.search.table_run``), so with ``budget_unit = "train_seconds"`` the search sees
many more networks than a single-fidelity search at the same cost. The strategy keeps no
state: a candidate's rung is its attribute ``asha.rung``, and a candidate is promoted when a
retraining of it exists, so a resumed run promotes exactly what the uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Set

import numpy as np

from hostside.errors import UserError
from hostside.options import setting
from hostside.metrics import rank_and_crowding
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy

RUNG = "asha.rung"


@dataclass
class AshaOptions:
    rungs: List[int] = setting(default_factory=lambda: [12, 200], help="total training epochs of each rung, "
                               "increasing (a table run: its fidelities)")
    eta: int = setting(3, "one in `eta` of a rung's candidates is promoted")

    def validate(self) -> None:
        rungs = self.rungs
        if (not isinstance(rungs, list) or len(rungs) < 2
                or not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in rungs)
                or any(b <= a for a, b in zip(rungs, rungs[1:]))):
            raise UserError(f"option 'rungs': {rungs!r} is not allowed; give two or more increasing epoch counts, "
                            f"e.g. [12, 200]")
        if not isinstance(self.eta, int) or isinstance(self.eta, bool) or self.eta < 2:
            raise UserError(f"option 'eta': {self.eta!r} is not allowed; give an integer >= 2")


@register_strategy("asha")
class Asha(Strategy):
    Options = AshaOptions
    default_policy = "steady-state"

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        rungs = self.options.rungs
        promoted: Set[int] = {c.parents[0] for c in ctx.records if c.operator == "retrain" and c.parents}
        proposals: List[Proposal] = []
        for _ in range(n):
            proposal = self._promotion(ctx, promoted)
            if proposal is None:
                proposal = Proposal(ctx.space.sample(ctx.rng), "sample", epochs=rungs[0], attrs={RUNG: 0})
            else:
                promoted.add(proposal.parents[0])
            proposals.append(proposal)
        return proposals

    def _promotion(self, ctx: AskContext, promoted: Set[int]) -> "Proposal | None":
        """A retraining of the best unpromoted top-1/eta candidate of the highest rung with one."""
        rungs = self.options.rungs
        by_rung: Dict[int, List[Candidate]] = {}
        for record in ctx.evaluated():
            rung = record.attr(RUNG)
            if isinstance(rung, int) and rung < len(rungs) - 1 and record.complete:
                by_rung.setdefault(rung, []).append(record)
        for rung in sorted(by_rung, reverse=True):
            members = by_rung[rung]
            top = len(members) // self.options.eta
            if top == 0:
                continue
            F = np.array([c.objectives for c in members], dtype=float)
            cv = np.array([c.violation for c in members], dtype=float)
            rank, crowding = rank_and_crowding(F, cv)
            order = sorted(range(len(members)), key=lambda i: (rank[i], -crowding[i], members[i].id))
            for i in order[:top]:
                if members[i].id not in promoted:
                    return Proposal.retrain(members[i], epochs=rungs[rung + 1] - rungs[rung],
                                            attrs={RUNG: rung + 1})
        return None
