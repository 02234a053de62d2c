"""Registries of objectives and budgets: a name, how to read it from a candidate, and its sense.

An objective or budget is read from a flat mapping of the candidate's figures (a journal row,
or ``Candidate.metrics``); by default from the column of the same meaning, so later issues add
their own (``register_objective("mult_energy_mj", "min", read=...)``) without touching the engine,
the strategies or the report. ``OBJECTIVES`` and ``BUDGETS`` stay name -> (column, sense) views.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

from hostside.errors import UserError

Reader = Callable[[Mapping[str, Any]], Optional[float]]


@dataclass(frozen=True)
class Objective:
    """``sense`` "max" objectives are turned into minimisation by ``1 - value`` (fractions) or
    ``-value`` (``bounded=False``), so pymoo always minimises."""

    name: str
    sense: str
    column: str
    read: Reader
    bounded: bool = True

    def value(self, row: Mapping[str, Any]) -> Optional[float]:
        value = self.read(row)
        return None if value is None else float(value)

    def minimised(self, row: Mapping[str, Any]) -> float:
        value = self.value(row)
        if value is None:
            return float("nan")
        if self.sense == "max":
            return 1.0 - value if self.bounded else -value
        return value


@dataclass(frozen=True)
class Budget:
    """``kind`` "max": an upper bound; "min": a lower bound."""

    name: str
    kind: str
    column: str
    read: Reader

    def value(self, row: Mapping[str, Any]) -> Optional[float]:
        value = self.read(row)
        return None if value is None else float(value)


_OBJECTIVES: Dict[str, Objective] = {}
_BUDGETS: Dict[str, Budget] = {}
#: name -> (column, sense): the view the report and older callers read.
OBJECTIVES: Dict[str, Tuple[str, str]] = {}
BUDGETS: Dict[str, Tuple[str, str]] = {}


def _column_reader(column: str) -> Reader:
    return lambda row: row.get(column)


def register_objective(name: str, sense: str, column: Optional[str] = None, read: Optional[Reader] = None,
                       bounded: bool = True) -> Objective:
    """Add an objective; ``column`` defaults to ``name``, ``read`` to reading that column."""
    if sense not in ("min", "max"):
        raise ValueError(f"objective {name!r}: sense must be 'min' or 'max', not {sense!r}")
    column = column or name
    objective = Objective(name, sense, column, read or _column_reader(column), bounded)
    _OBJECTIVES[name] = objective
    OBJECTIVES[name] = (column, sense)
    return objective


def register_budget(name: str, kind: str, column: Optional[str] = None, read: Optional[Reader] = None) -> Budget:
    if kind not in ("min", "max"):
        raise ValueError(f"budget {name!r}: kind must be 'min' or 'max', not {kind!r}")
    column = column or name
    budget = Budget(name, kind, column, read or _column_reader(column))
    _BUDGETS[name] = budget
    BUDGETS[name] = (column, kind)
    return budget


def canonical(name: str) -> str:
    """The name of an objective or budget now, for a name a config or journal may still use."""
    return DEPRECATED_NAMES.get(name, name)


def objective(name: str) -> Objective:
    load_extensions()
    name = canonical(name)
    if name not in _OBJECTIVES:
        raise UserError(f"objective {name!r} is unknown; choose from {', '.join(_OBJECTIVES)}")
    return _OBJECTIVES[name]


def budget(name: str) -> Budget:
    load_extensions()
    name = canonical(name)
    if name not in _BUDGETS:
        raise UserError(f"budget {name!r} is unknown; allowed budgets: {', '.join(_BUDGETS)}")
    return _BUDGETS[name]


#: Journal columns that only a board measurement fills in.
BOARD_COLUMNS = frozenset({"latency_ms", "energy_mj"})


def reads_board(objectives: Sequence[str], budgets: Mapping[str, float], stop_metrics: Sequence[str] = ()) -> bool:
    """Whether a run judges its candidates by a board measurement: an objective, a budget or a
    stop rule that reads measured latency or energy. When none does, a steady-state search need
    not stop its trainings to measure on a board that shares this host (``hostside.search.scheduler``)."""
    return (any(objective(name).column in BOARD_COLUMNS for name in objectives)
            or any(budget(name).column in BOARD_COLUMNS for name in budgets)
            or any(metric in BOARD_COLUMNS for metric in stop_metrics))


def objective_value(row: Mapping[str, Any], name: str) -> float:
    """The candidate's value of objective ``name`` as a quantity to minimise (NaN if missing)."""
    return objective(name).minimised(row)


# An objective and a budget on the same figure share one name, the journal column's, with its
# unit. Every choice a search makes reads validation accuracy: the test split stays out of all
# of them, so the test accuracy of the final front (re-trained after the search, journaled as
# ``test_accuracy``) is an unbiased estimate next to published figures.
register_objective("val_accuracy", "max")
register_objective("params", "min")
register_objective("macs", "min")
register_objective("predicted_latency_ms", "min")
register_objective("latency_ms", "min")
register_objective("energy_mj", "min")
register_objective("activation_bytes", "min")

register_budget("latency_ms", "max")
register_budget("params", "max")
register_budget("macs", "max")
register_budget("activation_bytes", "max")
register_budget("energy_mj", "max")
register_budget("val_accuracy", "min")

#: Older names a config or a journal may still use -> the name they mean now. ``accuracy`` read
#: the test split once; it means validation accuracy now, as every choice does.
DEPRECATED_NAMES: Dict[str, str] = {
    "accuracy": "val_accuracy", "measured_latency": "latency_ms", "predicted_latency": "predicted_latency_ms",
    "energy": "energy_mj", "activation_memory": "activation_bytes", "mult_energy": "mult_energy_mj",
}


def deprecation_note(name: str) -> Optional[str]:
    """One line for a config that names an objective or budget by its older name, else None."""
    new = DEPRECATED_NAMES.get(name)
    if new is None:
        return None
    if name == "accuracy":
        return f"note: {name!r} means validation accuracy (the test split is never used to choose); write {new!r}"
    return f"note: {name!r} is now called {new!r} (the figure with its unit); the old name still works"

_EXTENSIONS_LOADED = False


def load_extensions() -> None:
    """Register the objectives and budgets other packages declare (``hostside.extensions``:
    ``mult_energy_mj``, ``weight_bytes``). Done on first use, not at import: the CLI imports this
    module to build its help and must start fast."""
    global _EXTENSIONS_LOADED
    if _EXTENSIONS_LOADED:
        return
    _EXTENSIONS_LOADED = True
    from hostside import extensions

    for kind, name, sense, column, read in extensions.search_metrics():
        if kind == "objective":
            register_objective(name, sense, column=column, read=read)
        else:
            register_budget(name, sense, column=column, read=read)
