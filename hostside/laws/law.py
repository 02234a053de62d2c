"""A sampling law: an ordered set of uniform laws U[l_x, h_x], one per variable of a narrow space.

Bounds are kept as positions in each variable's allowed values (``low``/``high`` level
arrays) so sampling is one vectorised draw; JSON carries the values themselves, which is what
a person reads ("width_1 in [4, 12]").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping

import numpy as np

from hostside.errors import UserError
from hostside.spaces.narrow import Config, NarrowSpace


@dataclass
class Law:
    """Bounds per variable as level arrays with ``0 <= low <= high < len(values)``."""

    low: np.ndarray
    high: np.ndarray

    @classmethod
    def uniform(cls, space: NarrowSpace) -> "Law":
        """The whole space: every variable over all its values."""
        return cls(np.zeros(len(space.variables), dtype=np.int64),
                   np.array([len(v.values) - 1 for v in space.variables], dtype=np.int64))

    def copy(self) -> "Law":
        return Law(self.low.copy(), self.high.copy())

    def sample_levels(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, variables) levels, each uniform over its law's range."""
        return rng.integers(self.low, self.high + 1, size=(n, len(self.low)))

    def sample(self, space: NarrowSpace, n: int, rng: np.random.Generator) -> List[Config]:
        return space.configs_from_levels(self.sample_levels(n, rng))

    def contains(self, space: NarrowSpace, config: Mapping[str, int]) -> bool:
        levels = np.array([v.index(config[v.name]) for v in space.variables])
        return bool(np.all((levels >= self.low) & (levels <= self.high)))

    def normalised(self, space: NarrowSpace) -> np.ndarray:
        """Bounds scaled to [0, 1] per variable (what the clustering compares)."""
        top = np.array([max(len(v.values) - 1, 1) for v in space.variables], dtype=float)
        return np.concatenate([self.low / top, self.high / top])

    def to_dict(self, space: NarrowSpace) -> Dict[str, List[int]]:
        return {v.name: [int(v.values[lo]), int(v.values[hi])]
                for v, lo, hi in zip(space.variables, self.low, self.high)}

    @classmethod
    def from_dict(cls, space: NarrowSpace, data: Mapping[str, Any], where: str = "law") -> "Law":
        """A law from ``{variable: [low, high]}``; bounds outside the limits are a UserError."""
        low, high = [], []
        for var in space.variables:
            bounds = data.get(var.name)
            if (not isinstance(bounds, (list, tuple)) or len(bounds) != 2
                    or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)):
                raise UserError(f"{where}: variable {var.name!r} needs bounds [low, high] as integers")
            lo, hi = bounds
            if lo not in var.values or hi not in var.values or lo > hi:
                raise UserError(f"{where}: {var.name} bounds [{lo}, {hi}] must be allowed values with low <= high "
                                f"within the limits [{var.low}, {var.high}]")
            low.append(var.values.index(lo))
            high.append(var.values.index(hi))
        unknown = set(data) - set(space.names)
        if unknown:
            raise UserError(f"{where}: unknown variable(s) {', '.join(sorted(unknown))} for {space.name}")
        return cls(np.array(low, dtype=np.int64), np.array(high, dtype=np.int64))
