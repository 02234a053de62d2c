"""The variables of a narrow space: named integer choices with absolute limits and a reference value.

A variable is an ascending tuple of allowed values (widths 1..256, kernels 1/3/5, repetitions
1..6). Sampling laws and mutations work on positions in that tuple, so a kernel law U[1, 2]
means "3 or 5" exactly as a width law U[8, 24] means "8 to 24 channels".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class Variable:
    """One design variable: ``values`` in ascending order; ``reference`` is the reference model's."""

    name: str
    values: Tuple[int, ...]
    reference: int
    meaning: str = ""

    def __post_init__(self) -> None:
        if list(self.values) != sorted(set(self.values)):
            raise ValueError(f"variable {self.name}: values must be ascending and distinct")
        if self.reference not in self.values:
            raise ValueError(f"variable {self.name}: reference {self.reference} is not an allowed value")

    @property
    def low(self) -> int:
        return self.values[0]

    @property
    def high(self) -> int:
        return self.values[-1]

    def index(self, value: int) -> int:
        """Position of ``value`` (the nearest allowed one at or above it, clipped to the last)."""
        return min(int(np.searchsorted(self.values, value)), len(self.values) - 1)

    def to_dict(self) -> Dict[str, object]:
        values = list(self.values)
        contiguous = values == list(range(values[0], values[-1] + 1))
        return {"name": self.name, "low": self.low, "high": self.high, "reference": self.reference,
                "values": "all integers" if contiguous else values, "meaning": self.meaning}


def span(name: str, low: int, high: int, reference: int, meaning: str = "") -> Variable:
    """A contiguous integer range low..high."""
    return Variable(name, tuple(range(low, high + 1)), reference, meaning)


def choice(name: str, values: Sequence[int], reference: int, meaning: str = "") -> Variable:
    return Variable(name, tuple(values), reference, meaning)
