"""The pre-training filter as the engine uses it: calibration lookup plus budget check.

The judging itself belongs to ``hostside.calibration`` (``CandidateFilter``); this module
picks the calibration for the run's board, applies the run's ``filter_rule`` and turns a
decision into journal fields. The default rule, ``interval``, rejects on latency only when
the whole 90% prediction interval is over the budget: a wrongly rejected network is lost to
the search for good, while a wrongly accepted one only costs its training. With the
filter switched off (the baseline of the benchmark) every candidate is accepted, but its
predicted latency is still journaled, so the filter's would-be decisions can be studied.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from hostside.arch.spec import ArchSpec
from hostside.search.config import SearchConfig

def open_calibration(config: SearchConfig, board: Any, progress: Callable[[str], None]) -> Any:
    """The calibration named in the config, else the board's stored one (or a quick new one)."""
    from hostside.calibration.artifact import load_calibration

    if config.calibration:
        return load_calibration(config.calibration)
    from hostside.calibration import calibration_for_board

    def suite_progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            progress(f"calibrating board {board.name}: {done}/{total} suite models measured")

    return calibration_for_board(board, threads=config.measure_threads, quick=True, progress=suite_progress)


class PreTrainingFilter:
    """Judges a spec against the run's pre-training budgets and journals why."""

    def __init__(self, config: SearchConfig, calibration: Optional[Any]):
        from hostside.calibration.filter import Budgets, CandidateFilter

        # Weight bytes are judged in the format the run judges its candidates in.
        budgets = Budgets.from_limits(config.budgets, weight_format=config.precision)
        self.enabled = config.use_filter
        self.calibration = calibration
        self.latency_budget_ms = budgets.latency_ms
        self.rule = config.filter_rule
        self._filter = CandidateFilter(budgets, calibration=calibration,
                                       conservative=config.filter_rule == "conservative")

    def judge(self, spec: ArchSpec) -> Dict[str, Any]:
        """Journal fields: filter_accepted, filter_reason, filter_margins, predicted_latency_ms."""
        decision = self._filter.check(spec)
        accepted, reason = decision.accepted, decision.reason or ""
        if not accepted and self.rule == "interval" and self._latency_only_and_uncertain(decision):
            accepted = True
            reason = (f"predicted latency {decision.predicted_latency_ms:.3g} ms is over the budget, but the 90% "
                      f"interval reaches {decision.interval_ms[0]:.3g} ms: trained and measured to be sure")
        fields = {
            "filter_accepted": int(accepted or not self.enabled),
            "filter_reason": reason,
            "filter_margins": _jsonable(decision.margins),
            "predicted_latency_ms": decision.predicted_latency_ms,
        }
        if not self.enabled:
            fields["filter_reason"] = f"filter off (would have {'accepted' if accepted else 'rejected'}: {reason})"
        return fields

    def _latency_only_and_uncertain(self, decision: Any) -> bool:
        """Missed only the latency budget, and the interval's lower end is within it."""
        other_misses = [k for k, margin in decision.margins.items() if k != "latency_ms" and margin < 0]
        return (not other_misses and decision.interval_ms is not None and self.latency_budget_ms is not None
                and decision.interval_ms[0] <= self.latency_budget_ms)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return float(value)
