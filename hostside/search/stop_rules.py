"""The user's termination criteria (NeuroPower's controller): stop the search as soon as one
archive member satisfies a rule.

A rule is a conjunction of comparisons on a candidate's metrics, ``accuracy >= 0.97 and
energy_mj <= 0.5``; ``or`` between conjunctions makes several rules of one string. In a config
the rules are the ``[stop]`` table, one named rule per key, so the search can say which one
ended it::

    [stop]
    frugal = "accuracy >= 0.97 and energy_mj <= 0.5"
    fast = "accuracy >= 0.97 and latency_ms <= 2"

They reach the strategy as its ``stop`` option (a list of ``"name: condition"`` strings).
A rule on a metric the run cannot measure (energy without a power source) is refused before
the search starts: it could never end the search, which is not what the user asked for.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from hostside.errors import UserError

#: Metrics a rule may name: Candidate.metrics keys (accuracy means validation accuracy; score =
#: validation accuracy / params, NeuroPower's fitness).
METRICS = ("accuracy", "val_accuracy", "params", "macs", "latency_ms", "energy_mj", "predicted_latency_ms",
           "activation_bytes", "score")
_COMPARE: Dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}
_TERM = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class StopRule:
    name: str
    terms: Tuple[Tuple[str, str, float], ...]

    @property
    def text(self) -> str:
        return " and ".join(f"{m} {op} {v:g}" for m, op, v in self.terms)

    def met_by(self, metrics: Mapping[str, Any]) -> bool:
        """True when every comparison holds (a missing or NaN metric never satisfies one)."""
        for metric, op, value in self.terms:
            got = metric_value(metrics, metric)
            if got is None or not _COMPARE[op](got, value):
                return False
        return True


def metric_value(metrics: Mapping[str, Any], metric: str) -> Optional[float]:
    """The figure a rule compares. ``accuracy`` is the validation accuracy (and so is the
    accuracy in ``score``): a rule that ends the search is a choice, and no choice reads the
    test split."""
    if metric == "accuracy":
        metric = "val_accuracy"
    if metric == "score":
        accuracy, params = metrics.get("val_accuracy"), metrics.get("params")
        return None if accuracy is None or not params else float(accuracy) / float(params)
    value = metrics.get(metric)
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def table_to_option(table: Any) -> List[str]:
    """The ``[stop]`` table as the config's ``stop`` list (``["name: condition", ...]``)."""
    if not isinstance(table, Mapping):
        raise UserError('config key \'stop\': give a table of named rules, e.g. [stop] fast = "latency_ms <= 2"')
    out = []
    for name, condition in table.items():
        if not isinstance(condition, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", str(name)):
            raise UserError(f"config key 'stop.{name}': give a condition string such as \"accuracy >= 0.97 and "
                            f"latency_ms <= 2\" under a plain name")
        out.append(f"{name}: {condition}")
    return out


def parse_rules(entries: Sequence[str]) -> List[StopRule]:
    """Rules of the ``stop`` option; one UserError line naming the bad part otherwise."""
    rules = []
    for entry in entries:
        if not isinstance(entry, str):
            raise UserError(f"stop rule {entry!r}: give a string such as \"accuracy >= 0.97 and latency_ms <= 2\"")
        name, _, condition = entry.partition(":") if ":" in entry else ("", "", entry)
        name = name.strip()
        alternatives = re.split(r"\s+or\s+", condition.strip())
        for k, alternative in enumerate(alternatives):
            terms = []
            for part in re.split(r"\s+and\s+", alternative):
                match = _TERM.match(part)
                if not match:
                    raise UserError(f"stop rule {entry!r}: cannot read {part.strip()!r}; write METRIC OP NUMBER "
                                    f"(OP one of {', '.join(_COMPARE)}), joined by 'and' / 'or'")
                metric, op, number = match.groups()
                if metric not in METRICS:
                    raise UserError(f"stop rule {entry!r}: metric {metric!r} is unknown; choose from {', '.join(METRICS)}")
                try:
                    value = float(number)
                except ValueError:
                    raise UserError(f"stop rule {entry!r}: {number!r} is not a number") from None
                terms.append((metric, op, value))
            label = name or alternative.strip()
            if name and len(alternatives) > 1:
                label = f"{name}#{k + 1}"
            rules.append(StopRule(label, tuple(terms)))
    return rules


def rule_metrics(entries: Sequence[str]) -> List[str]:
    """Every metric the rules of the ``stop`` option read."""
    return [metric for rule in parse_rules(entries) for metric, _, _ in rule.terms]


def check_measurable(entries: Sequence[str], power: Optional[str]) -> None:
    """Refuse, before anything runs, a rule on energy when the run has no power source."""
    if power:
        return
    for rule in parse_rules(entries):
        if any(metric == "energy_mj" for metric, _, _ in rule.terms):
            raise UserError(f"stop rule {rule.name!r} needs energy_mj, but this run measures no energy (the board has "
                            f"no power source configured); set `power` to the board's power source or drop the rule")
