"""The pre-training filter: does an untrained ArchSpec fit the budgets?

Why margins and not just yes/no: the search journals every rejection, and a relative margin
per budget (positive = room left, negative = over) shows how close a candidate came and
which budget binds, so a user can see whether a budget is too tight.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from hostside.arch.spec import ArchSpec
from hostside.calibration.artifact import Calibration
from hostside.errors import UserError


@dataclass(frozen=True)
class Budgets:
    """Upper limits a candidate must meet; None means no limit.

    ``params`` counts trainable parameters (``Cost.params``), ``macs`` multiply-accumulates,
    ``activation_bytes`` the peak float32 activation memory at batch 1, ``weight_bytes`` the
    deployed weights stored in ``weight_format`` (a ``hostside.precision`` format name; None:
    float32), ``latency_ms`` the predicted batch-1 median latency on the calibrated board.
    """

    latency_ms: Optional[float] = None
    params: Optional[int] = None
    macs: Optional[int] = None
    activation_bytes: Optional[int] = None
    weight_bytes: Optional[int] = None
    weight_format: Optional[str] = None

    def __post_init__(self) -> None:
        for name in PRE_TRAINING_BUDGETS:
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"budget {name} must be a positive number, got {value!r}; omit it for no limit")

    @classmethod
    def from_limits(cls, limits: Dict[str, float], weight_format: Optional[str] = None) -> "Budgets":
        """The pre-training budgets among a run's ``limits`` (the others need a trained model);
        counts and bytes are whole numbers."""
        chosen: Dict[str, object] = {k: limits[k] for k in PRE_TRAINING_BUDGETS if k in limits}
        for key in PRE_TRAINING_BUDGETS:
            if key in chosen and key != "latency_ms":
                chosen[key] = int(chosen[key])
        return cls(**chosen, weight_format=weight_format if "weight_bytes" in chosen else None)


#: The budgets judged before training: every limit of ``Budgets``.
PRE_TRAINING_BUDGETS = tuple(f.name for f in dataclasses.fields(Budgets) if f.name != "weight_format")


@dataclass(frozen=True)
class FilterDecision:
    accepted: bool
    reason: Optional[str]
    margins: Dict[str, float] = field(default_factory=dict)
    predicted_latency_ms: Optional[float] = None
    interval_ms: Optional[Tuple[float, float]] = None


_UNITS = {"params": "params", "macs": "MACs", "activation_bytes": "bytes of activations",
          "weight_bytes": "bytes of weights"}


class CandidateFilter:
    """Accept or reject ArchSpecs against ``budgets`` before any training.

    With ``conservative`` the latency budget is checked against the upper end of the
    prediction interval, so a candidate is only accepted when it fits with high probability.
    """

    def __init__(self, budgets: Budgets, calibration: Optional[Calibration] = None, conservative: bool = False):
        if budgets.latency_ms is not None and calibration is None:
            raise UserError("a latency budget needs a calibration of the target board; pass --calibration FILE "
                            "or run `hostside calibrate --board NAME --out DIR` first")
        self.budgets = budgets
        self.calibration = calibration
        self.conservative = conservative
        self._weight_bytes: Optional[Callable[..., int]] = None
        self._weight_format = None
        if budgets.weight_bytes is not None:  # the precision modules load only when a run needs them
            from hostside.precision.analysis import weight_bytes
            from hostside.precision.formats import parse_format

            self._weight_bytes = weight_bytes
            if budgets.weight_format is not None:
                self._weight_format = parse_format(budgets.weight_format)

    def check(self, spec: ArchSpec) -> FilterDecision:
        return self.check_many([spec])[0]

    def check_many(self, specs: Sequence[ArchSpec]) -> List[FilterDecision]:
        """Decisions for many specs; latency is predicted for all of them in one batch."""
        b = self.budgets
        latency = lo = hi = None
        if self.calibration is not None:
            latency, lo, hi = self.calibration.predict_many(specs)
        decisions = []
        for i, spec in enumerate(specs):
            cost = spec.cost
            values = {"params": cost.params, "macs": cost.macs, "activation_bytes": cost.activation_bytes}
            if self._weight_bytes is not None:
                values["weight_bytes"] = self._weight_bytes(self._weight_format, cost.deployed_params,
                                                            cost.deployed_biases)
            margins: Dict[str, float] = {}
            misses: List[Tuple[float, str]] = []
            for name, value in values.items():
                limit = getattr(b, name)
                if limit is not None:
                    margins[name] = (limit - value) / limit
                    if value > limit:
                        misses.append((margins[name], f"{name} {value:,} exceeds the budget of {limit:,} "
                                                      f"{_UNITS[name]} by {-margins[name]:.0%}"))
            predicted = interval = None
            if latency is not None:
                predicted = float(latency[i])
                interval = (float(lo[i]), float(hi[i]))
                if b.latency_ms is not None:
                    judged = interval[1] if self.conservative else predicted
                    margins["latency_ms"] = (b.latency_ms - judged) / b.latency_ms
                    if judged > b.latency_ms:
                        what = "upper bound of predicted latency" if self.conservative else "predicted latency"
                        misses.append((margins["latency_ms"], f"{what} {judged:.3g} ms exceeds the budget of "
                                                              f"{b.latency_ms:g} ms by {-margins['latency_ms']:.0%}"))
            misses.sort()
            reason = "; ".join(text for _, text in misses) if misses else None
            decisions.append(FilterDecision(not misses, reason, margins, predicted, interval))
        return decisions
