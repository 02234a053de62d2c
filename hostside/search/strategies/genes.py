"""A space's fixed-length categorical genes as index vectors, for strategies that model the space.

Optuna's samplers and the surrogate search need every genotype as the same few categorical
choices (``SearchSpace.categorical_genes``); a space with variable-length genotypes (a layer
list) has none, and such a strategy refuses it in one line that names the spaces that work.
Genes are encoded as choice indices, not values, because a choice may be any JSON value while
Optuna's distributions and one-hot features only need to tell choices apart.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hostside.errors import UserError
from hostside.spaces.base import SearchSpace, registered_spaces


def supported_spaces() -> List[str]:
    """Names of the registered spaces that declare categorical genes."""
    return sorted(name for name, cls in registered_spaces().items()
                  if getattr(cls, "categorical_genes", None) is not SearchSpace.categorical_genes)


class GeneCoder:
    """Genotype <-> choice indices for one space (built once per ask; cheap)."""

    def __init__(self, space: SearchSpace, strategy: str):
        genes = space.categorical_genes()
        if not genes:
            raise UserError(f"strategy {strategy!r} needs a space of fixed-length categorical genes and "
                            f"{space.name!r} has none; use --space {' or '.join(supported_spaces())}")
        self.space = space
        self.names: Tuple[str, ...] = tuple(genes)
        self.choices: Tuple[Tuple[Any, ...], ...] = tuple(tuple(genes[name]) for name in self.names)

    @property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(len(c) for c in self.choices)

    def encode(self, genotype: Mapping[str, Any]) -> Optional[Tuple[int, ...]]:
        """The choice indices of ``genotype``; None when it is not a genotype of these genes
        (e.g. a record a different space wrote), so callers skip it instead of failing."""
        try:
            genes = self.space.to_genes(dict(genotype))
            return tuple(choices.index(genes[name]) for name, choices in zip(self.names, self.choices))
        except (KeyError, ValueError, TypeError, UserError):  # a space refuses a foreign genotype as a SpecError
            return None

    def decode(self, indices: Sequence[int]) -> Dict[str, Any]:
        return self.space.from_genes({name: choices[int(i)]
                                      for name, choices, i in zip(self.names, self.choices, indices)})

    def one_hot(self, rows: Sequence[Sequence[int]]) -> np.ndarray:
        """One column per (gene, choice): the features a surrogate model learns from."""
        rows = np.asarray(rows, dtype=int).reshape(-1, len(self.names))
        offsets = np.cumsum((0,) + self.sizes[:-1])
        X = np.zeros((len(rows), sum(self.sizes)))
        X[np.arange(len(rows))[:, None], rows + offsets] = 1.0
        return X
