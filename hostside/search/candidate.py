"""The two values strategies trade in: ``Candidate`` (what the run knows) and ``Proposal`` (what to try).

Strategies see frozen, typed records, never journal rows: the journal may gain columns and
tables (schema migrations) without any strategy noticing, and a strategy cannot write to the
journal behind the engine's back. A record is a snapshot the engine builds afresh for every
``ask`` and ``tell``; its mappings are plain dicts (JSON-ready) that strategies must treat as
read-only (``space.mutate`` and friends copy before changing).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

from hostside.search.pareto import objective_matrix, violation

WeightsSource = Union[int, str]
#: Statuses after which a candidate never changes again (except for report annotations).
FINISHED = ("rejected", "measured", "failed")


@dataclass(frozen=True)
class Candidate:
    """One journaled candidate = one training exercise of one network (see ``hostside.journal``).

    ``id`` is also the birth order. ``objectives`` is the minimisation vector in the run's
    objective order (accuracy becomes 1 - accuracy; NaN where the figure is missing), ``attrs``
    the namespaced strategy attributes (``{"ea4cnn.age": 2}``).
    """

    id: int
    genotype: Mapping[str, Any]
    parents: Tuple[int, ...]
    operator: str
    generation: int
    status: str
    arch_hash: str
    objectives: Tuple[float, ...]
    violation: float
    metrics: Mapping[str, Any]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    weights_path: Optional[str] = None
    weights_sha256: Optional[str] = None
    inherited_fraction: Optional[float] = None
    weights_from: Tuple[WeightsSource, ...] = ()
    epochs: Optional[int] = None
    judged_without_board: bool = False

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def evaluated(self) -> bool:
        """Every figure the run judges it by is known: it is measured, or it is trained and the
        run judges by nothing a board measures (``judged_without_board``; the measurement then
        waits until the search's trainings are done)."""
        return self.status == "measured" or (self.status == "trained" and self.judged_without_board)

    @property
    def complete(self) -> bool:
        """Every objective value is known (not NaN)."""
        return not any(math.isnan(v) for v in self.objectives)

    @property
    def trained(self) -> bool:
        """Has a trained state a child can inherit."""
        return self.weights_path is not None

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass(frozen=True)
class Proposal:
    """A network to train: its genotype, lineage and the settings of this training exercise.

    ``weights_from`` lists where the initial weights come from, in priority order: candidate
    ids (inheritance by node id, ``hostside.arch.weights.inherit``) or ``.npz`` paths (a seed
    model); empty means a fresh initialisation. ``epochs`` None uses the run's ``epochs``;
    ``data_seed`` reshuffles this exercise's batches (and draws its subset when
    ``train_fraction`` < 1); ``attrs`` are journaled with the new candidate.
    """

    genotype: Mapping[str, Any]
    operator: str
    parents: Tuple[int, ...] = ()
    weights_from: Tuple[WeightsSource, ...] = ()
    epochs: Optional[int] = None
    data_seed: Optional[int] = None
    train_fraction: float = 1.0
    attrs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parents", tuple(int(p) for p in self.parents))
        object.__setattr__(self, "weights_from", tuple(self.weights_from))

    @classmethod
    def retrain(cls, candidate: Candidate, epochs: Optional[int] = None, data_seed: Optional[int] = None,
                attrs: Optional[Mapping[str, Any]] = None) -> "Proposal":
        """Train ``candidate``'s network again from its trained weights (a survivor ageing)."""
        return cls(dict(candidate.genotype), "retrain", (candidate.id,), (candidate.id,), epochs, data_seed,
                   attrs=dict(attrs or {}))

    def exercise(self) -> Dict[str, Any]:
        """The settings that make this training exercise differ from a fresh one (journaled, keyed)."""
        data: Dict[str, Any] = {}
        if self.weights_from:
            data["weights_from"] = list(self.weights_from)
        if self.epochs is not None:
            data["epochs"] = self.epochs
        if self.data_seed is not None:
            data["data_seed"] = self.data_seed
        if self.train_fraction != 1.0:
            data["train_fraction"] = self.train_fraction
        return data


METRIC_COLUMNS = ("accuracy", "val_accuracy", "params", "macs", "activation_bytes", "predicted_latency_ms",
                  "latency_ms", "energy_mj", "train_seconds")


def record_from_row(row: Mapping[str, Any], attrs: Mapping[str, Any], objectives: Sequence[str],
                    budgets: Mapping[str, float], judged_without_board: bool = False) -> Candidate:
    """A frozen record of one journal row (the engine's job; strategies only receive records)."""
    metrics: Dict[str, Any] = {}
    extra = row.get("train_metrics") or {}
    metrics.update({k: v for k, v in extra.items() if isinstance(v, (int, float, str, bool)) or v is None})
    metrics.update({k: row.get(k) for k in METRIC_COLUMNS})
    exercise = row.get("exercise") or {}
    metrics["epochs"] = exercise.get("epochs")
    return Candidate(
        id=int(row["id"]), genotype=copy.deepcopy(row["genotype"]), parents=tuple(row["parents"] or ()),
        operator=row["operator"], generation=int(row["generation"]), status=row["status"],
        arch_hash=row["arch_hash"], objectives=tuple(objective_matrix([metrics], objectives)[0]),
        violation=violation(metrics, budgets), metrics=metrics,
        attrs=dict(attrs), weights_path=row.get("weights_path"),
        weights_sha256=row.get("weights_sha256"), inherited_fraction=row.get("inherited_fraction"),
        weights_from=tuple(exercise.get("weights_from") or ()), epochs=exercise.get("epochs"),
        judged_without_board=judged_without_board,
    )
