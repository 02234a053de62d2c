"""The metric a law is learned for, computed for a batch of sampled networks.

``params``, ``macs`` and ``activation_bytes`` are the analytic cost; ``weight_bytes`` is the
deployed weights at a number format (fp32/fp16/int8 as ``Cost.weight_bytes`` stores them, any
other float or fixed format of ``hostside.precision.formats`` at its bit width); ``latency_ms``
is the median batch-1 latency a board's calibration predicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.errors import UserError

METRICS = ("params", "macs", "activation_bytes", "weight_bytes", "latency_ms")
UNITS = {"params": "params", "macs": "MACs", "activation_bytes": "bytes", "weight_bytes": "bytes",
         "latency_ms": "ms"}
COST_FORMATS = ("fp32", "fp16", "int8")


@dataclass
class Metric:
    """A named metric; ``calibration`` is set for latency, ``weight_format`` for weight_bytes."""

    name: str
    weight_format: str = "fp32"
    calibration: Any = None
    _bits: Optional[int] = field(default=None, repr=False)

    @property
    def label(self) -> str:
        if self.name == "weight_bytes":
            return f"weight_bytes ({self.weight_format})"
        if self.name == "latency_ms":
            board = (self.calibration.board or {}).get("name", "?") if self.calibration else "?"
            return f"predicted latency_ms ({board})"
        return self.name

    @property
    def unit(self) -> str:
        return UNITS[self.name]

    def values(self, specs: Sequence[ArchSpec]) -> np.ndarray:
        """The metric of every spec, float64 (one vectorised prediction for latency)."""
        if self.name == "latency_ms":
            return self.calibration.predict_many(list(specs))[0]
        if self.name == "weight_bytes":
            if self._bits is None:
                return np.array([s.cost.weight_bytes[self.weight_format] for s in specs], dtype=np.float64)
            return np.array([-(-s.cost.deployed_params * self._bits // 8) for s in specs], dtype=np.float64)
        attr = self.name
        return np.array([getattr(s.cost, attr) for s in specs], dtype=np.float64)

    def describe(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"name": self.name, "unit": self.unit, "label": self.label}
        if self.name == "weight_bytes":
            data["format"] = self.weight_format
        if self.name == "latency_ms" and self.calibration is not None:
            data["calibration"] = {"path": str(self.calibration.path) if self.calibration.path else None,
                                   "board": self.calibration.board.get("name"),
                                   "board_key": self.calibration.board.get("key"),
                                   "model": self.calibration.chosen}
        return data


def make_metric(name: str, weight_format: Optional[str] = None, calibration: Any = None) -> Metric:
    """A metric from its name (``weight_bytes:int8`` also names the format); one line for bad input."""
    if ":" in name:
        name, weight_format = name.split(":", 1)
    if name not in METRICS:
        raise UserError(f"unknown metric {name!r}; choose one of: {', '.join(METRICS)} "
                        f"(weight_bytes takes --format, latency_ms a calibration)")
    if name == "latency_ms" and calibration is None:
        raise UserError("metric latency_ms needs a calibration of the board: give --calibration FILE or a --board "
                        "with a stored calibration (make one with `hostside calibrate --board NAME`)")
    if name != "weight_bytes":
        if weight_format:
            raise UserError(f"--format applies to the weight_bytes metric only, not to {name}")
        return Metric(name, calibration=calibration)
    fmt = (weight_format or "fp32").strip().lower()
    if fmt in COST_FORMATS:
        return Metric(name, fmt)
    from hostside.precision.formats import parse_format

    parsed = parse_format(fmt)  # a UserError listing the formats for an unknown one
    return Metric(name, fmt, _bits=int(parsed.bits))
