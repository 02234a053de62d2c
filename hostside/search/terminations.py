"""Why a search stops: the terminations the scheduler checks before it asks for more.

Why objects owned by the scheduler, not by a strategy: the user's ``[stop]`` rules used to be
an option of one strategy (spea2), so every other strategy refused them. A termination only
reads the engine (what was spent, what was evaluated), so each one works with every strategy,
and the engine says, once, which one ended the search. A strategy still decides which of its
candidates a stop rule is judged on (``Strategy.stop_candidates``: SPEA-II's archive, as
NeuroPower's paper says; every evaluated candidate otherwise), and may end the search itself by
proposing nothing (its own generation limit).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from time import monotonic
from typing import Any, List, Optional, Sequence

from hostside.search.stop_rules import StopRule, parse_rules


class Termination(ABC):
    """One reason a search may be over."""

    @abstractmethod
    def reason(self, engine: Any) -> Optional[str]:
        """Why the search is over (one line), or None to go on."""


class EvaluationBudget(Termination):
    """The run's ``budget`` (trainings, epochs or simulated seconds, as ``budget_unit`` says)."""

    def reason(self, engine: Any) -> Optional[str]:
        if engine.config.budget - engine.used() > 0:
            return None
        return f"the budget of {engine.config.budget:g} {engine.config.budget_unit} is spent"


class TimeLimit(Termination):
    """``search_minutes``, counted from this start or resume (a resumed run gets the limit again)."""

    def __init__(self, minutes: float):
        self.minutes = float(minutes)
        self.deadline = monotonic() + 60 * self.minutes

    def reason(self, engine: Any) -> Optional[str]:
        if monotonic() < self.deadline:
            return None
        return (f"search time limit of {self.minutes:g} min reached after {engine.spent():g} of "
                f"{engine.config.budget} {engine.config.budget_unit}")


class StopRules(Termination):
    """The user's ``[stop]`` rules: over as soon as a candidate the strategy offers meets one."""

    def __init__(self, rules: Sequence[StopRule]):
        self.rules = list(rules)
        self._judged = -1
        self._met: Optional[str] = None

    def reason(self, engine: Any) -> Optional[str]:
        records = engine.records()
        evaluated = sum(1 for r in records if r.evaluated)
        if evaluated != self._judged:  # judge again only when something new was evaluated
            self._judged = evaluated
            self._met = self._first_met(engine, records)
        return self._met

    def _first_met(self, engine: Any, records: Sequence[Any]) -> Optional[str]:
        for candidate in engine.strategy.stop_candidates(records):
            for rule in self.rules:
                if rule.met_by(candidate.metrics):
                    text = f"stop rule {rule.name!r} ({rule.text}) met by candidate {candidate.id}"
                    engine.journal.set_attrs(candidate.id, {"engine.stopped_by": text})
                    return text
        return None


def terminations_for(config: Any) -> List[Termination]:
    """The terminations a run with ``config`` checks, in the order their reasons are given."""
    found: List[Termination] = []
    if config.stop:
        found.append(StopRules(parse_rules(config.stop)))
    found.append(EvaluationBudget())
    if config.search_minutes:
        found.append(TimeLimit(config.search_minutes))
    return found
