"""The strategy contract: ask(n) / tell(records) over frozen Candidate records, and a registry.

A strategy keeps no state of its own. Everything it knows comes from ``AskContext.records``
(every candidate of the run, with the attributes it set earlier through ``tell``), so a
killed and resumed run continues exactly where its journal says it is, and one strategy
object can serve several runs. Strategies call only the space's operators and never look
inside a genotype, so any space works with any strategy.

Per-strategy settings are a dataclass (``Options``) filled from the ``[strategy]`` table of
the config; an unknown key or a value of the wrong type is one ``UserError`` line, and
``Options.validate`` checks ranges.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np

from hostside.errors import UserError
from hostside.search.candidate import Candidate, Proposal
from hostside.options import parse_options
from hostside.spaces.base import SearchSpace


@dataclass
class NoOptions:
    """The options of a strategy that has none."""

    def validate(self) -> None:
        """Raise ``UserError`` for a value out of range (types are checked before)."""


@dataclass(frozen=True)
class StrategySettings:
    """The run-wide settings a strategy may read (from ``SearchConfig``)."""

    objectives: Tuple[str, ...]
    budgets: Mapping[str, float]
    population: int
    epochs: int
    budget: int
    seed: int
    workers: int = 1


@dataclass(frozen=True)
class AskContext:
    """What a strategy may look at when asked or told; built afresh by the engine each time."""

    space: SearchSpace
    records: Tuple[Candidate, ...]
    rng: np.random.Generator
    generation: int
    exercises: int
    in_flight: Tuple[Candidate, ...] = ()

    def evaluated(self) -> List[Candidate]:
        """Measured candidates, in birth order."""
        return [c for c in self.records if c.evaluated]

    def by_id(self, candidate_id: int) -> Candidate:
        for record in self.records:
            if record.id == candidate_id:
                return record
        raise KeyError(candidate_id)


class Strategy(ABC):
    """Subclass, set ``Options`` (a dataclass) if the strategy has settings, and register it."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    #: (val_fraction, test_fraction) of the run's split.json; None keeps the defaults (0.15, 0.15).
    split_fractions: ClassVar[Optional[Tuple[float, float]]] = None
    #: The space and scheduling policy a run gets when the config names none.
    default_space: ClassVar[str] = "layer_list"
    default_policy: ClassVar[str] = "generational"
    #: Whether proposals depend on the run's evaluation budget. When they do not, the first b
    #: evaluations of a longer run are exactly a run of budget b (benchmarks score them so).
    budget_aware: ClassVar[bool] = False

    def __init__(self, options: Any, settings: StrategySettings):
        self.options = options
        self.settings = settings

    @abstractmethod
    def ask(self, n: int, ctx: AskContext) -> List[Proposal]:
        """Up to ``n`` proposals; fewer is fine, none means the strategy has nothing left to try."""

    def prepare(self, run_dir: Path, space: SearchSpace) -> None:
        """Called once before the first ask of every start and resume (e.g. convert a seed
        model into ``run_dir``); must be idempotent. Nothing by default."""

    def stop_candidates(self, records: Sequence[Candidate]) -> Sequence[Candidate]:
        """The candidates the user's stop rules are judged on: every evaluated one by default (a
        strategy with a population of its own, such as SPEA-II's archive, names that)."""
        return [c for c in records if c.evaluated]

    def tell(self, finished: Sequence[Candidate], ctx: AskContext) -> Dict[int, Dict[str, Any]]:
        """Attribute updates ``{candidate id: {"<name>.<key>": value}}`` for newly finished candidates."""
        return {}


_STRATEGIES: Dict[str, Type[Strategy]] = {}


def register_strategy(name: str):
    """Class decorator: make the strategy available as ``--strategy NAME``."""

    def register(cls: Type[Strategy]) -> Type[Strategy]:
        if not dataclasses.is_dataclass(cls.Options):
            raise TypeError(f"strategy {name!r}: Options must be a dataclass")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return register


def _load_builtin() -> None:
    from hostside.search.strategies import nsga2, random  # noqa: F401 - registers them

    for module in ("ea4cnn", "rs_cnn", "narrow", "cgp_nsga2", "spea2", "menndl", "optuna_samplers",
                   "regularized_evolution", "surrogate", "asha"):
        try:
            __import__(f"hostside.search.strategies.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"hostside.search.strategies.{module}":
                raise


def strategy_names() -> List[str]:
    _load_builtin()
    return sorted(_STRATEGIES)


def strategy_class(name: str) -> Type[Strategy]:
    _load_builtin()
    if name not in _STRATEGIES:
        raise UserError(f"config key 'strategy': {name!r} is not allowed; choose one of {', '.join(sorted(_STRATEGIES))}")
    return _STRATEGIES[name]


def make_strategy(name: str, options: Optional[Mapping[str, Any]], settings: StrategySettings) -> Strategy:
    """The registered strategy ``name`` with validated options."""
    cls = strategy_class(name)
    return cls(parse_options(cls.Options, options or {}, f"strategy {name!r}"), settings)
