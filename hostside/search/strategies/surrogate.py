"""Surrogate-assisted multi-objective search: a model of the genes, hypervolume gain near the front.

Every ask refits a model per objective on the evaluated candidates (one-hot genes in, the
objective's rank among them out: a ridge regression plus a random forest on its residuals),
predicts a pool of unseen architectures and proposes the one whose prediction would add the
most hypervolume to the front found so far; a batch of ``n`` adds each pick's prediction to
the front before choosing the next (the "believer" rule), so a batch spreads along the front
instead of piling onto one spot.

- Ridge plus forest, because neither needs tuning: the linear part learns additive effects
  from few candidates, the forest the cliffs of cell spaces (a cell whose paths all cross a
  ``none`` edge does not learn at all).
- Ranks, not raw values, because the candidates that matter differ by a sliver of the
  range (``_ranks``).
- The pool is every architecture within ``radius`` changed genes of a front member plus an
  ``explore`` share of random samples of the space: local search around the front is what
  works on NAS benchmarks (White et al. 2021), the random share keeps distant regions in
  reach, and a pool of a few thousand keeps an ask fast in a space of any size.
- The hypervolume gain, because it is the figure a front is judged by and values both
  improving a front member and filling a gap. Its reference point is, per objective, the
  median of the first ``initial`` (random) candidates: the front that matters is the part
  better than a typical network of the space in every objective; without that bound the gain
  favours the long tail of tiny networks nobody wants (1 ms at 30 % accuracy).

A network already in the records (evaluated, failed, rejected or in flight, whatever genes
built it) is never proposed again, nor genes the space cannot build. Budgets: only feasible
candidates form the front (the models do not predict the violation). Stateless: everything is
refitted from the records on every ask; only spaces with categorical genes work.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Set, Tuple

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import Ridge

from hostside.arch.ops.base import SpecError
from hostside.options import setting
from hostside.metrics import hypervolume, non_dominated
from hostside.search.candidate import Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy
from hostside.search.strategies.genes import GeneCoder
from hostside.spaces.base import SearchSpace

NAME = "surrogate-hv"
#: How many of the most promising candidates (by their margin over the front) get their exact
#: hypervolume gain computed; the rest cannot win and would only cost time.
SHORTLIST = 256
#: Tries at drawing an unseen architecture at random before giving up on one.
SAMPLE_TRIES = 50


@dataclass
class SurrogateOptions:
    initial: int = setting(10, "random networks before the first model (also where the reference point comes from)",
                           minimum=2)
    trees: int = setting(30, "trees of the residual forest", minimum=2)
    pool: int = setting(3000, "networks scored per ask", minimum=1)
    radius: int = setting(2, "genes changed at most around each front member, for the pool's local part", minimum=1)
    explore: float = setting(0.25, "least share of the pool drawn at random from the whole space",
                             minimum=0, maximum=1)


@register_strategy(NAME)
class SurrogateHV(Strategy):
    Options = SurrogateOptions
    default_space = "nasbench201"
    default_policy = "steady-state"

    def prepare(self, run_dir: Path, space: SearchSpace) -> None:
        GeneCoder(space, self.name)

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        coder = GeneCoder(ctx.space, self.name)
        seen = {code for code in (coder.encode(r.genotype) for r in ctx.records) if code is not None}
        data = [(code, r) for code, r in ((coder.encode(r.genotype), r) for r in ctx.evaluated())
                if code is not None and r.complete]
        if len(data) < self.options.initial:
            return self._random(n, ctx, coder, seen)
        F = np.array([r.objectives for _, r in data], dtype=float)
        feasible = np.array([r.violation <= 0 for _, r in data])
        ranks = np.column_stack([_ranks(F[:, j], F[:, j]) for j in range(F.shape[1])])
        reference = np.array([_ranks(np.median(F[: self.options.initial, j], keepdims=True), F[:, j])[0]
                              for j in range(F.shape[1])])
        elite = np.flatnonzero(feasible) if feasible.any() else np.arange(len(F))
        front = ranks[elite][non_dominated(ranks[elite])] if feasible.any() else np.zeros((0, F.shape[1]))
        parents = [data[i][0] for i in elite[non_dominated(F[elite])]]
        pool = self._pool(ctx, coder, seen, parents)
        if not pool:
            return []
        mean = self._predict(coder.one_hot([code for code, _ in data]), ranks, coder.one_hot(pool), ctx.rng)
        known = {r.arch_hash for r in ctx.records}
        taken: List[int] = []
        proposals: List[Proposal] = []
        while len(proposals) < n and len(taken) < len(pool):
            pick = self._best(mean, front, reference, taken)
            taken.append(pick)
            genotype = coder.decode(pool[pick])
            network = _network(ctx.space, genotype)
            if network is None or network in known:
                continue
            known.add(network)
            proposals.append(Proposal(genotype, "model"))
            front = np.vstack([front, mean[pick]])
        return proposals

    # -- candidates ---------------------------------------------------------------------------

    def _random(self, n: int, ctx: AskContext, coder: GeneCoder, seen: Set[Tuple[int, ...]]) -> List[Proposal]:
        proposals, taken = [], set(seen)
        for _ in range(n):
            for _ in range(SAMPLE_TRIES):
                genotype = ctx.space.sample(ctx.rng)
                code = coder.encode(genotype)
                if code not in taken:
                    break
            taken.add(code)
            proposals.append(Proposal(genotype, "sample"))
        return proposals

    def _pool(self, ctx: AskContext, coder: GeneCoder, seen: Set[Tuple[int, ...]],
              parents: Sequence[Tuple[int, ...]]) -> List[Tuple[int, ...]]:
        """Unseen architectures to score: those within ``radius`` changed genes of a front member
        (a random subset when they are too many), the rest of the ``pool`` (``explore`` of it at
        least) random samples of the space."""
        near: Set[Tuple[int, ...]] = set()
        for code in parents:
            for radius in range(1, self.options.radius + 1):
                for genes in itertools.combinations(range(len(code)), radius):
                    near.update(_changed(code, genes, coder.sizes))
        near -= seen
        wanted = self.options.pool - int(self.options.pool * self.options.explore)
        near_list = sorted(near)
        if len(near_list) > wanted:
            near_list = [near_list[i] for i in np.sort(ctx.rng.choice(len(near_list), wanted, replace=False))]
        far = {coder.encode(ctx.space.sample(ctx.rng)) for _ in range(self.options.pool - len(near_list))}
        return near_list + sorted(code for code in far - seen - near if code is not None)

    # -- model and choice ---------------------------------------------------------------------

    def _predict(self, X: np.ndarray, Y: np.ndarray, candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Each objective's prediction (one column per objective): a ridge regression on the genes
        plus a random forest on what it leaves. The linear part learns additive effects (a
        convolution on an edge costs its latency wherever the others are) from a few dozen
        candidates, where a forest alone needs many splits for them; the forest learns the
        interactions (a path cut by ``none`` edges)."""
        columns = []
        for j in range(Y.shape[1]):
            linear = Ridge(alpha=1.0).fit(X, Y[:, j])
            forest = RandomForestRegressor(n_estimators=self.options.trees, max_features=0.5,
                                           random_state=int(rng.integers(0, 2 ** 31)), n_jobs=1)
            forest.fit(X, Y[:, j] - linear.predict(X))
            columns.append(linear.predict(candidates) + forest.predict(candidates))
        return np.column_stack(columns)

    @staticmethod
    def _best(points: np.ndarray, front: np.ndarray, reference: np.ndarray, taken: Sequence[int]) -> int:
        """The candidate whose point adds the most hypervolume to ``front`` (inside ``reference``);
        when none adds any, the one closest to escaping domination."""
        if len(front):
            # How far each point is from not being dominated: > 0 when some front member is
            # better in every objective, by at least that much.
            margin = (points[:, None, :] - front[None, :, :]).min(axis=2).max(axis=1)
        else:
            margin = np.zeros(len(points))
        margin = margin + np.maximum(points - reference, 0).sum(axis=1)
        margin[list(taken)] = np.inf
        order = np.argsort(margin, kind="stable")
        shortlist = order[np.isfinite(margin[order])][:SHORTLIST]
        gains = _gains(points[shortlist], front, reference)
        if gains.max() > 0:
            return int(shortlist[int(np.argmax(gains))])
        return int(shortlist[0])


def _ranks(values: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``values`` as their place among ``column``'s values, 0 (best) to 1 (worst).

    The forests learn ranks, and the front is judged in ranks, because the candidates that
    matter differ by a fraction of the objective's range: NAS-Bench-201's good cells span 3 %
    of accuracy where its broken ones span 80 %, and a model of raw values spends itself on
    the broken ones."""
    order = np.sort(column)
    low = np.searchsorted(order, values, side="left")
    high = np.searchsorted(order, values, side="right")
    return (low + high - 1) / 2 / max(len(order) - 1, 1)


def _changed(code: Tuple[int, ...], genes: Sequence[int], sizes: Sequence[int]) -> Set[Tuple[int, ...]]:
    """Every code that differs from ``code`` in exactly ``genes``."""
    alternatives = [[v for v in range(sizes[g]) if v != code[g]] for g in genes]
    out = set()
    for values in itertools.product(*alternatives):
        changed = list(code)
        for g, v in zip(genes, values):
            changed[g] = v
        out.add(tuple(changed))
    return out


def _network(space: SearchSpace, genotype: Mapping[str, Any]) -> Optional[str]:
    """The structure hash of the network these genes build (the journal's ``arch_hash`` outside
    a table run), or None when the space builds none (an NB201 cell without a path from input to
    output).

    Why not the genes alone: different genes can build the same network (an NB201 edge into a
    node that reaches no output is pruned), and the engine drops such a proposal as already
    trained without telling the strategy, which would then propose it again at every ask."""
    try:
        return space.decode(dict(genotype)).structure_hash()
    except SpecError:
        return None


def _gains(points: np.ndarray, front: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The hypervolume each point would add to ``front``: HV({p}) - HV({max(p, q) : q in front}).

    Two objectives (the usual accuracy and latency) are computed for all points at once as
    staircase areas; more go through pymoo one point at a time."""
    alone = np.prod(np.maximum(reference - points, 0), axis=1)
    if not len(front):
        return alone
    limited = np.maximum(points[:, None, :], front[None, :, :])
    if points.shape[1] != 2:
        return alone - np.array([hypervolume(block, reference) for block in limited])
    clipped = np.minimum(limited, reference)
    order = np.argsort(clipped[:, :, 0], axis=1)
    x = np.take_along_axis(clipped[:, :, 0], order, axis=1)
    y = np.minimum.accumulate(np.take_along_axis(clipped[:, :, 1], order, axis=1), axis=1)
    widths = np.diff(np.concatenate([x, np.full((len(x), 1), reference[0])], axis=1), axis=1)
    return alone - (widths * (reference[1] - y)).sum(axis=1)
