"""SPEA-II (Zitzler et al. 2001) as NeuroPower drives it: an archive of N, binary tournament,
one-point crossover and ForcedMutation; the user's stop rules (checked by the scheduler,
``hostside.search.terminations``) are judged on the archive, as in the paper.

Environmental selection (strength fitness R + density D = 1 / (sigma_k + 2), non-dominated
members first, truncation by nearest-neighbour distance when they are more than N, filling by
fitness when fewer) is pymoo's ``SPEA2Survival``. The strategy keeps no state: the archive of
iteration t is recomputed from the records as survival(archive(t-1) + generation t), which is
deterministic, so a resumed run continues with the same archive.

ForcedMutation: at least one gene changes, and the child is never a network the run has
already tried (its structure hash is not among the records' nor among this ask's other
children); mutations are stacked until that holds.

Fitness (``fitness`` option): NeuroPower's Score = accuracy / params (``"score"``, the paper's and
the default, with validation accuracy) drives both the archive (the N best scores, the one
non-dominated order a scalar fitness has) and the binary tournament, higher winning; ``"spea"``
uses SPEA-II's strength + density over the run's objectives instead. Every candidate records
its Score (``spea2.score``), its fitness (lower is better) and archive membership at the
iteration it was judged in.

Iterations: generation 0 is the initial random population U_0; after generation ``iterations -
1`` has been judged the search ends ("iteration limit"), or earlier when an archive member
meets a stop rule (``stop_candidates`` offers the archive; the scheduler journals
``engine.stopped_by`` on that member).
Infeasible candidates (over a budget) rank after every feasible one, by violation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from hostside.options import setting
from hostside.search.candidate import Candidate, Proposal
from hostside.search.strategies.base import AskContext, Strategy, register_strategy

FORCED_TRIES = 200
FITNESSES = ("score", "spea")


@dataclass
class SPEA2Options:
    archive_size: int = setting(0, "N, the archive; 0 means the run's `population`", minimum=0)
    iterations: int = setting(8, "G, the paper's maximum number of iterations (generation 0 included)", minimum=1)
    crossover_rate: float = setting(0.9, "probability that a child comes from a one-point crossover",
                                    minimum=0, maximum=1)
    fitness: str = setting("score", "`\"score\"`: Score = validation accuracy / params (the paper's) drives the "
                           "archive and the tournament; `\"spea\"`: SPEA-II strength + density over the objectives",
                           choices=FITNESSES)


def score(metrics: Dict[str, Any]) -> Optional[float]:
    """NeuroPower's Score: validation accuracy / params (None when either is missing)."""
    accuracy, params = metrics.get("val_accuracy"), metrics.get("params")
    if accuracy is None or not params or not np.isfinite(accuracy):
        return None
    return float(accuracy) / float(params)


def score_survival(scores: np.ndarray, cv: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """(indices of the ``n`` survivors, fitness of every row; lower is better) when Score is the
    fitness: feasible rows by descending Score (a missing one last), ties to the earlier row,
    then infeasible rows by violation."""
    fitness = np.where(np.isfinite(scores), -scores, np.inf)
    top = fitness[np.isfinite(fitness)].max() if np.isfinite(fitness).any() else 0.0
    fitness = np.where(cv > 0, top + 1 + cv, fitness)
    feasible_first = np.lexsort((np.arange(len(cv)), fitness, cv > 0))
    return feasible_first[:n], fitness


def spea2_survival(F: np.ndarray, cv: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """(indices of the ``n`` survivors, SPEA fitness of every row; lower is better).

    Feasible rows go through pymoo's SPEA2 survival; infeasible ones only fill up, least
    violation first, with fitness above every feasible row's."""
    from pymoo.algorithms.moo.spea2 import SPEA2Survival
    from pymoo.core.population import Population

    fitness = np.full(len(F), np.inf)
    feasible = np.flatnonzero(cv <= 0)
    chosen: List[int] = []
    if len(feasible):
        pop = Population.new("F", F[feasible], "index", feasible)
        survivors = SPEA2Survival(filter_infeasible=False).do(None, pop, n_survive=min(n, len(feasible)))
        fitness[feasible] = pop.get("SPEA_F")
        chosen = [int(i) for i in survivors.get("index")]
    top = fitness[feasible].max() if len(feasible) else 0.0
    infeasible = np.flatnonzero(cv > 0)
    order = infeasible[np.argsort(cv[infeasible], kind="stable")]
    fitness[order] = top + 1 + np.arange(len(order))
    chosen += [int(i) for i in order[: max(0, n - len(chosen))]]
    return np.array(chosen, dtype=int), fitness


@register_strategy("spea2")
class SPEA2(Strategy):
    Options = SPEA2Options
    default_space = "dense"

    @property
    def archive_size(self) -> int:
        return self.options.archive_size or self.settings.population

    # -- the archive, rebuilt from records -------------------------------------------------

    def archives(self, records: Sequence[Candidate]) -> List[Tuple[int, List[Candidate], Dict[int, float]]]:
        """(generation, archive members, SPEA fitness by id) after each judged generation."""
        judged = [c for c in records if c.evaluated and all(np.isfinite(c.objectives))]
        out = []
        archive: List[Candidate] = []
        for generation in sorted({c.generation for c in judged}):
            pool = archive + [c for c in judged if c.generation == generation]
            cv = np.array([c.violation for c in pool], dtype=float)
            if self.options.fitness == "score":
                scores = np.array([np.nan if score(c.metrics) is None else score(c.metrics) for c in pool])
                keep, fitness = score_survival(scores, cv, self.archive_size)
            else:
                F = np.array([c.objectives for c in pool], dtype=float)
                keep, fitness = spea2_survival(F, cv, self.archive_size)
            archive = [pool[i] for i in keep]
            out.append((generation, archive, {c.id: float(f) for c, f in zip(pool, fitness)}))
        return out

    def iterations_done(self, records: Sequence[Candidate]) -> bool:
        """Whether generation ``iterations - 1`` has been judged: the paper's iteration limit."""
        archives = self.archives(records)
        return bool(archives) and archives[-1][0] >= self.options.iterations - 1

    def stop_candidates(self, records: Sequence[Candidate]) -> Sequence[Candidate]:
        """The archive after the last judged iteration: NeuroPower stops when one of its members
        meets a user criterion."""
        archives = self.archives(records)
        return archives[-1][1] if archives else []

    # -- ask / tell ------------------------------------------------------------------------

    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        if ctx.generation >= self.options.iterations or self.iterations_done(ctx.records):
            return []
        archives = self.archives(ctx.records)
        if not archives:
            return [Proposal(ctx.space.sample(ctx.rng), "sample") for _ in range(n)]
        _, archive, fitness = archives[-1]
        tried = {c.arch_hash for c in ctx.records if c.arch_hash}
        proposals = []
        for _ in range(n):
            proposal = self._child(ctx, archive, fitness, tried)
            if proposal is not None:
                proposals.append(proposal)
        return proposals

    def _child(self, ctx: AskContext, archive: List[Candidate], fitness: Dict[int, float],
               tried: Set[str]) -> Optional[Proposal]:
        rng, space = ctx.rng, ctx.space

        def tournament() -> Candidate:  # binary tournament with replacement, lower SPEA fitness wins
            a, b = (archive[int(i)] for i in rng.integers(len(archive), size=2))
            return a if fitness[a.id] <= fitness[b.id] else b

        first = tournament()
        genotype, parents, operators = dict(first.genotype), [first.id], []
        if len(archive) > 1 and rng.random() < self.options.crossover_rate:
            second = tournament()
            if second.id != first.id:
                genotype = space.crossover(genotype, second.genotype, rng)
                parents.append(second.id)
                operators.append("crossover")
        child = forced_mutation(space, genotype, rng, tried)
        if child is None:
            return None
        genotype, genes = child
        return Proposal(genotype, "+".join(operators + ["forced_mutation:" + ",".join(genes)]), tuple(parents))

    def tell(self, finished: Sequence[Candidate], ctx: AskContext) -> Dict[int, Dict[str, Any]]:
        archives = self.archives(ctx.records)
        members, fitness = (set(), {}) if not archives else ({c.id for c in archives[-1][1]}, archives[-1][2])
        updates: Dict[int, Dict[str, Any]] = {}
        for c in finished:
            entry: Dict[str, Any] = {"spea2.score": score(c.metrics) if c.evaluated else None,
                                     "spea2.in_archive": c.id in members}
            if c.id in fitness:
                entry["spea2.fitness"] = fitness[c.id]
            updates[c.id] = entry
        if self.iterations_done(ctx.records) and any(c.generation == archives[-1][0] for c in finished):
            print(f"spea2: search ends: iteration limit ({self.options.iterations} iterations) reached",
                  file=sys.stderr, flush=True)
        return updates


def forced_mutation(space: Any, genotype: Dict[str, Any], rng: np.random.Generator,
                    tried: Set[str]) -> Optional[Tuple[Dict[str, Any], List[str]]]:
    """NeuroPower's ForcedMutation: mutate (at least one gene) until the network is one the run
    has not tried; adds its hash to ``tried``. None when ``FORCED_TRIES`` stacked mutations
    and fresh samples found nothing new (a nearly exhausted space)."""

    current, genes = genotype, []
    for attempt in range(FORCED_TRIES):
        if attempt and attempt % 20 == 0:  # wandered far without luck: restart from the parent
            current, genes = genotype, []
        current, gene = space.mutate(current, rng)
        genes.append(gene)
        digest = space.decode(current).structure_hash()
        if digest not in tried and current != genotype:
            tried.add(digest)
            return current, genes
    return None
