"""The contract every search space honours, so strategies never depend on a space.

A space owns genotypes (plain JSON values, stored verbatim in the journal) and four
operations on them: ``sample``, ``mutate``, ``crossover`` and ``decode`` to an ArchSpec. A
strategy only calls these, so the same NSGA-II or random search runs over the layer list
today and over a CGP grid or a dense template later. All randomness comes from the
``numpy.random.Generator`` passed in (one seeded generator per generation, as in pymoo).

Node identity is part of the contract: ``decode`` must give a node the same id in a child as
in its parent when the operator kept that part of the network (a layer surviving the
insertion or removal of others keeps its id), because weights are inherited by node id.
A space's settings are an ``Options`` dataclass, filled from ``[space_options]`` and checked
one key at a time (``hostside.options.parse_options``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Dict, Mapping, Optional, Tuple, Type

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.errors import UserError

Genotype = Dict[str, Any]


@dataclass
class NoSpaceOptions:
    """The options of a space that has none."""


class SearchSpace(ABC):
    """A family of networks for one input shape and number of classes."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoSpaceOptions
    #: Names ``mutate(..., operator=NAME)`` accepts.
    mutation_operators: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int):
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Genotype:
        """A random valid genotype."""

    @abstractmethod
    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """A valid mutated copy and the name of the operator used (journaled); ``operator``
        (one of ``mutation_operators``) forces which one, for strategies with their own odds."""

    @abstractmethod
    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """A valid child combining both parents."""

    @abstractmethod
    def decode(self, genotype: Genotype) -> ArchSpec:
        """The network this genotype describes (raises ``SpecError`` for an invalid one)."""

    def training_overrides(self, genotype: Genotype) -> Dict[str, Any]:
        """Training settings the genotype carries (e.g. learning rate); none by default."""
        return {}

    def genotype_summary(self, genotype: Genotype) -> Dict[str, Any]:
        """Short fields a person reads beside a candidate (runs show, pareto.json); none by default."""
        return {}

    def categorical_genes(self) -> Optional[Dict[str, Tuple[Any, ...]]]:
        """The genotype as named categorical genes (name -> choices), when it is a fixed-length
        vector; None for variable-length spaces. Lets a sampler such as Optuna's TPE drive the space."""
        return None

    def from_genes(self, genes: Mapping[str, Any]) -> Genotype:
        """The genotype of one value per gene of :meth:`categorical_genes`."""
        raise UserError(f"space {self.name!r} has no fixed-length categorical encoding; "
                        f"choose a space that has one (e.g. nasbench201) or another strategy")

    def to_genes(self, genotype: Genotype) -> Dict[str, Any]:
        """The genes of ``genotype`` (the inverse of :meth:`from_genes`)."""
        raise UserError(f"space {self.name!r} has no fixed-length categorical encoding; "
                        f"choose a space that has one (e.g. nasbench201) or another strategy")

    def describe(self) -> Dict[str, Any]:
        """The space's settings, journaled with the run so a resume rebuilds the same space."""
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes}


_SPACES: Dict[str, Type[SearchSpace]] = {}


def register_space(name: str):
    """Class decorator: make the space available as ``--space NAME``."""

    def register(cls: Type[SearchSpace]) -> Type[SearchSpace]:
        if not isinstance(cls.__dict__.get("name"), property):  # a space may derive its name itself
            cls.name = name
        _SPACES[name] = cls
        return cls

    return register


def registered_spaces() -> Dict[str, Type[SearchSpace]]:
    """Every space by name: the registered ones plus the narrow families (``narrow:<family>``)."""
    import hostside.spaces.layer_list  # noqa: F401 - registers itself

    for module in ("ea4cnn", "dense", "menndl", "nasbench201"):
        try:
            __import__(f"hostside.spaces.{module}")  # registers itself
        except ModuleNotFoundError as exc:
            if exc.name != f"hostside.spaces.{module}":
                raise
    import hostside.spaces.cgp  # noqa: F401 - registers itself
    spaces = dict(_SPACES)
    try:
        from hostside.spaces.narrow import NARROW_SPACES
    except ModuleNotFoundError as exc:
        if exc.name != "hostside.spaces.narrow":
            raise
    else:
        spaces.update({name: cls for name, cls in NARROW_SPACES.items() if name not in spaces})
    return spaces
