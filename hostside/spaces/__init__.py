"""Search spaces: how genotypes are sampled, mutated, crossed over and decoded into ArchSpec.

Spaces are looked up by name (``make_space``) so a run's journal can name its space and a
resume rebuilds it; later issues add the CGP grid, the dense template and narrow spaces here.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

from hostside.errors import UserError
from hostside.spaces.base import Genotype, SearchSpace
from hostside.spaces.layer_list import LayerListSpace

SPACES = {LayerListSpace.name: LayerListSpace}

__all__ = ["Genotype", "SearchSpace", "LayerListSpace", "SPACES", "make_space", "space_options"]


def make_space(name: str, input_shape: Tuple[int, int, int], num_classes: int, **options: Any) -> SearchSpace:
    """The space called ``name`` for this input; options are the space's own settings."""
    if name not in SPACES:
        raise UserError(f"space {name!r} is unknown; choose one of: {', '.join(sorted(SPACES))}")
    try:
        return SPACES[name](input_shape, num_classes, **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"space {name!r}: {exc}") from None


def space_options(space: SearchSpace) -> Dict[str, Any]:
    """The options ``make_space`` needs to rebuild ``space`` (its description minus the input)."""
    return {k: v for k, v in space.describe().items() if k not in ("name", "input_shape", "num_classes")}
