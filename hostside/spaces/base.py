"""The contract every search space honours, so strategies never depend on a space.

A space owns genotypes (plain JSON values, stored verbatim in the journal) and four
operations on them: ``sample``, ``mutate``, ``crossover`` and ``decode`` to an ArchSpec. A
strategy only calls these, so the same NSGA-II or random search runs over the layer list
today and over a CGP grid or a dense template later. All randomness comes from the
``numpy.random.Generator`` passed in (one seeded generator per generation, as in pymoo).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Dict, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec

Genotype = Dict[str, Any]


class SearchSpace(ABC):
    """A family of networks for one input shape and number of classes."""

    name: str = ""

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int):
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Genotype:
        """A random valid genotype."""

    @abstractmethod
    def mutate(self, genotype: Genotype, rng: np.random.Generator) -> Tuple[Genotype, str]:
        """A valid mutated copy and the name of the operator used (journaled)."""

    @abstractmethod
    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """A valid child combining both parents."""

    @abstractmethod
    def decode(self, genotype: Genotype) -> ArchSpec:
        """The network this genotype describes (raises ``SpecError`` for an invalid one)."""

    def training_overrides(self, genotype: Genotype) -> Dict[str, Any]:
        """Training settings the genotype carries (e.g. learning rate); none by default."""
        return {}

    def describe(self) -> Dict[str, Any]:
        """The space's settings, journaled with the run so a resume rebuilds the same space."""
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes}
