"""Objective vectors and budgets of journaled candidates, and the Pareto front over them.

The arithmetic is ``hostside.metrics`` (pymoo); this module turns rows (journal rows or
``Candidate.metrics``) into the minimisation matrix it expects, through the objective and
budget registries, and applies the user's budgets.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from hostside import metrics
from hostside.metrics import hypervolume, rank_and_crowding
from hostside.search.objectives import budget, objective_value

__all__ = ["objective_value", "objective_matrix", "violation", "missed_budgets", "rank_and_crowding",
           "pareto_front", "hypervolume", "best_tradeoff"]


def objective_matrix(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str]) -> np.ndarray:
    return np.array([[objective_value(r, name) for name in objectives] for r in rows], dtype=float).reshape(
        len(rows), len(objectives))


def violation(row: Mapping[str, Any], budgets: Mapping[str, float]) -> float:
    """How far a candidate misses its budgets: sum of relative excesses, 0 when it meets all."""
    total = 0.0
    for name, limit in budgets.items():
        rule = budget(name)
        value = rule.value(row)
        if value is None:
            continue
        excess = (value - limit) if rule.kind == "max" else (limit - value)
        if excess > 0:
            total += excess / limit
    return total


def missed_budgets(row: Mapping[str, Any], budgets: Mapping[str, float]) -> Dict[str, Dict[str, float]]:
    """Each budget the candidate misses, with its value and the limit."""
    missed = {}
    for name, limit in budgets.items():
        rule = budget(name)
        value = rule.value(row)
        if value is not None and ((value > limit) if rule.kind == "max" else (value < limit)):
            missed[name] = {"value": value, "limit": limit}
    return missed


def pareto_front(rows: Sequence[Dict[str, Any]], objectives: Sequence[str]) -> List[Dict[str, Any]]:
    """The rows no other row dominates (rows with a missing objective are left out)."""
    return [rows[i] for i in metrics.non_dominated(objective_matrix(rows, objectives))]


def best_tradeoff(rows: Sequence[Dict[str, Any]], objectives: Sequence[str], weights: Sequence[float]) -> int:
    """Index of the row with the smallest weighted distance to the ideal point (``metrics.best_tradeoff``)."""
    return metrics.best_tradeoff(objective_matrix(rows, objectives), weights)


def spread_subset(front: Sequence[Dict[str, Any]], objectives: Sequence[str], k: int) -> List[Dict[str, Any]]:
    """At most ``k`` rows of a Pareto front: the best in the first objective, then the least
    crowded (pymoo's crowding distance, the extremes first), ties going to the first objective.

    Why: re-training a whole three-objective front at full length can take longer than the
    search itself (a real 28x28 dataset on 2 cores), and the model a user looks for first is
    the most accurate one that meets the budgets; the others should cover the front's range.
    """
    if k <= 0 or len(front) <= k:
        return list(front)
    F = objective_matrix(front, objectives)
    _, crowding = rank_and_crowding(F, np.zeros(len(front)))
    best = int(np.argmin(F[:, 0]))
    others = sorted((i for i in range(len(front)) if i != best), key=lambda i: (-crowding[i], F[i, 0], i))
    return [front[i] for i in [best, *others[:k - 1]]]
