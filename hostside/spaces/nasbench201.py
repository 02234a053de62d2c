"""NAS-Bench-201's cell space: 6 edges, each one of 5 ops (``hostside.arch.nb201``).

The genotype is the cell's edge ops in arch-string order (edges 1<-0, 2<-0, 2<-1, 3<-0,
3<-1, 3<-2), plain JSON::

    {"ops": ["nor_conv_3x3", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3", "skip_connect"]}

A search over it can be checked against NAS-Bench-201's published accuracies and measured
latencies (``data/nb201/``), which is the point of the space. Of the 15,625 cells, 341 have no
path from input to output (their network ignores its input); ``sample``, ``mutate`` and
``crossover`` only produce connected cells, while ``from_genes`` (a sampler such as Optuna's
drives the genes freely) may return an unconnected one, which ``decode`` refuses with one
``SpecError`` line, so the engine skips it. Node ids name the stage, cell and edge
(``hostside.arch.nb201``), so a mutated child inherits every edge it shares with its parent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from hostside.arch.nb201 import EDGES, NB201_OPS, format_arch_str, is_connected, nb201_spec
from hostside.arch.ops.base import SpecError
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

#: Gene names, one per edge in arch-string order: ``edge_<target>_<source>``.
GENE_NAMES: Tuple[str, ...] = tuple(f"edge_{target}_{source}" for target, source in EDGES)
# Uniform crossover among connected children is retried this many times before a parent is copied.
_CROSSOVER_TRIES = 20


@dataclass
class Nasbench201Options:
    """NB201's skeleton: width of the first stage (doubled at each of the 2 reductions) and
    cells per stage. The benchmark's tables are for 16 and 5."""
    channels: int = setting(16, "channels of the first stage (doubled at each of the two reductions)", minimum=1)
    cells_per_stage: int = setting(5, "cells in each of the three stages", minimum=1)


def _ops_of(genotype: Genotype) -> Tuple[str, ...]:
    """The 6 ops of a genotype; SpecError (so the engine skips it) for anything else."""
    ops = genotype.get("ops") if isinstance(genotype, Mapping) else None
    if (not isinstance(ops, (list, tuple)) or len(ops) != len(EDGES)
            or not all(isinstance(op, str) and op in NB201_OPS for op in ops)):
        raise SpecError(f"an nasbench201 genotype is {{\"ops\": [{len(EDGES)} ops]}}, each one of "
                        f"{', '.join(NB201_OPS)}; got {genotype!r}")
    return tuple(ops)


@register_space("nasbench201")
class Nasbench201Space(SearchSpace):
    Options = Nasbench201Options
    mutation_operators = ("edge",)

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, channels: int = 16,
                 cells_per_stage: int = 5):
        super().__init__(input_shape, num_classes)
        check_options(Nasbench201Options(channels, cells_per_stage))
        self.channels = int(channels)
        self.cells_per_stage = int(cells_per_stage)

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "channels": self.channels, "cells_per_stage": self.cells_per_stage}

    def sample(self, rng: np.random.Generator) -> Genotype:
        """Uniform over the connected cells (an unconnected draw is drawn again)."""
        while True:
            ops = [NB201_OPS[int(i)] for i in rng.integers(len(NB201_OPS), size=len(EDGES))]
            if is_connected(ops):
                return {"ops": ops}

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """One edge's op changed to another, among the changes that keep the cell connected."""
        if operator not in (None, *self.mutation_operators):
            raise ValueError(f"unknown mutation operator {operator!r}; choose one of {self.mutation_operators}")
        ops = list(_ops_of(genotype))
        changes: List[Tuple[int, str]] = []
        for edge, current in enumerate(ops):
            for op in NB201_OPS:
                if op != current and is_connected(ops[:edge] + [op] + ops[edge + 1:]):
                    changes.append((edge, op))
        # Never empty: any op but none on edge 3<-0 connects a cell, and at least one differs from it.
        edge, op = changes[int(rng.integers(len(changes)))]
        ops[edge] = op
        return {"ops": ops}, "edge"

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """Each edge from either parent with even odds, retried until the child is connected;
        a copy of a parent if no try is."""
        a, b = _ops_of(first), _ops_of(second)
        for _ in range(_CROSSOVER_TRIES):
            pick = rng.random(len(EDGES)) < 0.5
            ops = [x if take_first else y for x, y, take_first in zip(a, b, pick)]
            if is_connected(ops):
                return {"ops": ops}
        return {"ops": list(a if rng.random() < 0.5 else b)}

    def decode(self, genotype: Genotype) -> ArchSpec:
        return nb201_spec(format_arch_str(_ops_of(genotype)), self.input_shape, self.num_classes,
                          self.channels, self.cells_per_stage)

    def genotype_summary(self, genotype: Genotype) -> Dict[str, Any]:
        return {"arch_str": format_arch_str(_ops_of(genotype))}

    def categorical_genes(self) -> Optional[Dict[str, Tuple[Any, ...]]]:
        return {name: NB201_OPS for name in GENE_NAMES}

    def from_genes(self, genes: Mapping[str, Any]) -> Genotype:
        missing = [name for name in GENE_NAMES if name not in genes]
        unknown = sorted(set(genes) - set(GENE_NAMES))
        if missing or unknown:
            raise UserError(f"nasbench201 genes are {', '.join(GENE_NAMES)}; missing {missing or 'none'}, "
                            f"unknown {unknown or 'none'}")
        genotype = {"ops": [genes[name] for name in GENE_NAMES]}
        _ops_of(genotype)
        return genotype

    def to_genes(self, genotype: Genotype) -> Dict[str, Any]:
        return dict(zip(GENE_NAMES, _ops_of(genotype)))
