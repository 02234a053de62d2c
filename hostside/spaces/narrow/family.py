"""The narrow-space contract: a family of networks around one reference model.

A narrow space (the narrow-space search for IoT devices) is a fixed topology
pattern of a known model whose own variables (widths per stage, repetitions, kernel shapes,
growth rate, expansion) vary within absolute limits; the reference model is one point of it
(``reference_config``), so the union of the spaces contains every reference. A genotype is
the plain JSON mapping ``{variable: value}``. Every configuration within the limits decodes
to a valid network by construction (downsampling stops at 1x1), so sampling never retries.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.spaces.base import Genotype, SearchSpace
from hostside.spaces.narrow.graph import Graph
from hostside.spaces.narrow.variables import Variable

Config = Dict[str, int]


class NarrowSpace(SearchSpace):
    """Base of the narrow families; subclasses define ``family``, ``VARIABLES`` and ``build``."""

    family: str = ""
    reference_name: str = ""
    VARIABLES: Tuple[Variable, ...] = ()

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int):
        super().__init__(input_shape, num_classes)
        self.variables = self.VARIABLES
        self.names = tuple(v.name for v in self.variables)
        self._values = [np.array(v.values) for v in self.variables]
        self.mutation_operators = tuple(f"mutate_{n}" for n, v in zip(self.names, self._values) if len(v) > 1)

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"narrow:{self.family}"

    # -- configurations ---------------------------------------------------------------------

    def reference_config(self) -> Config:
        return {v.name: v.reference for v in self.variables}

    def check_config(self, config: Dict[str, Any]) -> Config:
        """The configuration as ints, or a UserError naming the first bad variable."""
        unknown = set(config) - set(self.names)
        if unknown:
            raise UserError(f"{self.name}: unknown variable(s) {', '.join(sorted(unknown))}; "
                            f"the variables are {', '.join(self.names)}")
        checked: Config = {}
        for var in self.variables:
            if var.name not in config:
                raise UserError(f"{self.name}: variable {var.name!r} is missing")
            value = config[var.name]
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) not in var.values:
                raise UserError(f"{self.name}: {var.name} = {value!r} is outside its limits "
                                f"[{var.low}, {var.high}]" + ("" if len(var.values) == var.high - var.low + 1
                                                              else f" (allowed {list(var.values)})"))
            checked[var.name] = int(value)
        return checked

    def configs_from_levels(self, levels: np.ndarray) -> List[Config]:
        """Configurations from an (N, variables) matrix of positions in each variable's values."""
        columns = [values[levels[:, j]].tolist() for j, values in enumerate(self._values)]
        return [dict(zip(self.names, row)) for row in zip(*columns)]

    # -- networks ---------------------------------------------------------------------------

    @abstractmethod
    def build(self, config: Config) -> Graph:
        """The network of one (valid) configuration."""

    def spec(self, config: Config) -> ArchSpec:
        """The ArchSpec of a configuration known to be within the limits (as laws draw them),
        built without re-validation (see ``Graph.trusted_spec``)."""
        return self.build(config).trusted_spec(self.input_shape, self.num_classes, name=self.name)

    def decode(self, genotype: Genotype) -> ArchSpec:
        """The validated ArchSpec of a genotype (checked against the limits first)."""
        return self.build(self.check_config(genotype)).spec(self.input_shape, self.num_classes, name=self.name)

    def reference_spec(self) -> ArchSpec:
        return self.build(self.reference_config()).spec(self.input_shape, self.num_classes,
                                                        name=self.reference_name)

    # -- the SearchSpace operators ----------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genotype:
        """Uniform over the whole space (each variable uniform within its limits)."""
        levels = np.array([[rng.integers(0, len(v)) for v in self._values]])
        return self.configs_from_levels(levels)[0]

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """Redraw one variable (a different allowed value); ``operator`` ``mutate_<variable>`` picks it."""
        if operator is None:
            operator = str(rng.choice(self.mutation_operators))
        if operator not in self.mutation_operators:
            raise ValueError(f"{self.name}: unknown mutation {operator!r}; one of {', '.join(self.mutation_operators)}")
        j = self.names.index(operator[len("mutate_"):])
        values = self._values[j]
        current = int(np.searchsorted(values, genotype[self.names[j]]))
        level = int(rng.integers(0, len(values) - 1))
        level += level >= current
        child = dict(genotype)
        child[self.names[j]] = int(values[level])
        return child, f"mutate_{self.names[j]}"

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """Uniform crossover: each variable from either parent."""
        take = rng.random(len(self.names)) < 0.5
        return {n: (first[n] if t else second[n]) for n, t in zip(self.names, take)}

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes}

    def describe_variables(self) -> List[Dict[str, Any]]:
        return [v.to_dict() for v in self.variables]
