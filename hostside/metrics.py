"""Pareto arithmetic on objective matrices: pure functions shared by strategies and the report.

Everything here takes a minimisation matrix ``F`` (one row per candidate, one column per
objective) and returns plain numpy values, so the search and the report agree without either
importing the other. Non-dominated sorting, crowding distance and hypervolume are pymoo's.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting


def rank_and_crowding(F: np.ndarray, cv: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rank (0 = best front) and crowding distance per row, Deb's constraint rule first.

    Feasible rows (cv == 0) are sorted by pymoo's non-dominated sorting; infeasible rows come
    after all feasible fronts, one rank each, in order of increasing violation.
    """
    n = len(F)
    rank = np.zeros(n, dtype=int)
    crowding = np.zeros(n, dtype=float)
    feasible = np.flatnonzero(cv <= 0)
    next_rank = 0
    if len(feasible):
        fronts = NonDominatedSorting().do(F[feasible])
        for k, front in enumerate(fronts):
            members = feasible[front]
            rank[members] = k
            crowding[members] = calc_crowding_distance(F[members]) if len(members) > 2 else np.inf
        next_rank = len(fronts)
    infeasible = np.flatnonzero(cv > 0)
    for offset, index in enumerate(infeasible[np.argsort(cv[infeasible], kind="stable")]):
        rank[index] = next_rank + offset
    return rank, crowding


def non_dominated(F: np.ndarray) -> np.ndarray:
    """Sorted indices of the rows no other row dominates (rows with a NaN are left out)."""
    complete = np.flatnonzero(~np.isnan(F).any(axis=1)) if len(F) else np.zeros(0, dtype=int)
    if not len(complete):
        return np.zeros(0, dtype=int)
    front = NonDominatedSorting().do(F[complete], only_non_dominated_front=True)
    return np.sort(complete[front])


def hypervolume(F: np.ndarray, reference: Sequence[float]) -> float:
    """pymoo's hypervolume of the minimisation matrix ``F`` against ``reference``."""
    F = F[~np.isnan(F).any(axis=1)]
    inside = F[(F < np.asarray(reference)).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=float))(inside))


def best_tradeoff(F: np.ndarray, weights: Sequence[float]) -> int:
    """Index of the row with the smallest weighted distance to the ideal point.

    Each objective is scaled to [0, 1] over the rows (ideal = 0, nadir = 1), so the weights
    compare like with like whatever the units.
    """
    ideal = F.min(axis=0)
    span = F.max(axis=0) - ideal
    span[span == 0] = 1.0
    scaled = (F - ideal) / span
    distance = np.sqrt(((np.asarray(weights) * scaled) ** 2).sum(axis=1))
    return int(np.argmin(distance))
