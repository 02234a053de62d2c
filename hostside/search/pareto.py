"""Objective vectors, budgets and Pareto arithmetic over journaled candidates.

Non-dominated sorting, crowding distance and hypervolume come from pymoo; this module only
turns journal rows into the minimisation matrix pymoo expects (accuracy becomes error =
1 - accuracy) and applies the user's budgets.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hostside.search.config import BUDGETS, OBJECTIVES


def objective_value(row: Mapping[str, Any], name: str) -> float:
    """The candidate's value of objective ``name`` as a quantity to minimise (NaN if missing)."""
    column, sense = OBJECTIVES[name]
    value = row.get(column)
    if value is None:
        return float("nan")
    return 1.0 - float(value) if sense == "max" else float(value)


def objective_matrix(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> np.ndarray:
    return np.array([[objective_value(r, name) for name in objectives] for r in rows], dtype=float).reshape(
        len(rows), len(objectives))


def violation(row: Mapping[str, Any], budgets: Mapping[str, float]) -> float:
    """How far a candidate misses its budgets: sum of relative excesses, 0 when it meets all."""
    total = 0.0
    for name, limit in budgets.items():
        column, kind = BUDGETS[name]
        value = row.get(column)
        if value is None:
            continue
        excess = (value - limit) if kind == "max" else (limit - value)
        if excess > 0:
            total += excess / limit
    return total


def missed_budgets(row: Mapping[str, Any], budgets: Mapping[str, float]) -> Dict[str, Dict[str, float]]:
    """Each budget the candidate misses, with its value and the limit."""
    missed = {}
    for name, limit in budgets.items():
        column, kind = BUDGETS[name]
        value = row.get(column)
        if value is not None and ((value > limit) if kind == "max" else (value < limit)):
            missed[name] = {"value": value, "limit": limit}
    return missed


def rank_and_crowding(F: np.ndarray, cv: np.ndarray) -> tuple:
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


def pareto_front(rows: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> List[Dict[str, Any]]:
    """The rows no other row dominates (rows with a missing objective are left out)."""
    complete = [r for r in rows if not np.isnan(objective_matrix([r], objectives)).any()]
    if not complete:
        return []
    F = objective_matrix(complete, objectives)
    front = NonDominatedSorting().do(F, only_non_dominated_front=True)
    return [complete[i] for i in sorted(front)]


def hypervolume(F: np.ndarray, reference: Sequence[float]) -> float:
    """pymoo's hypervolume of the minimisation matrix ``F`` against ``reference``."""
    F = F[~np.isnan(F).any(axis=1)]
    inside = F[(F < np.asarray(reference)).all(axis=1)]
    if not len(inside):
        return 0.0
    return float(HV(ref_point=np.asarray(reference, dtype=float))(inside))


def best_tradeoff(rows: Sequence[Dict[str, Any]], objectives: Sequence[str],
                  weights: Sequence[float]) -> int:
    """Index of the row with the smallest weighted distance to the ideal point.

    Each objective is scaled to [0, 1] over ``rows`` (ideal = 0, nadir = 1), so the weights
    compare like with like whatever the units.
    """
    F = objective_matrix(rows, objectives)
    ideal = F.min(axis=0)
    span = F.max(axis=0) - ideal
    span[span == 0] = 1.0
    scaled = (F - ideal) / span
    distance = np.sqrt(((np.asarray(weights) * scaled) ** 2).sum(axis=1))
    return int(np.argmin(distance))
