"""Search spaces: how genotypes are sampled, mutated, crossed over and decoded into ArchSpec.

Spaces are looked up by name (``make_space``) so a run's journal can name its space and a
resume rebuilds it; later issues add the CGP grid, the dense template and narrow spaces here.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import dataclasses
from typing import List

from hostside.errors import UserError
from hostside.spaces.base import Genotype, SearchSpace, register_space, registered_spaces
from hostside.spaces.layer_list import LayerListSpace

__all__ = ["Genotype", "SearchSpace", "LayerListSpace", "make_space", "register_space", "space_names",
           "space_options"]


def space_names() -> List[str]:
    return sorted(registered_spaces())


def make_space(name: str, input_shape: Tuple[int, int, int], num_classes: int, **options: Any) -> SearchSpace:
    """The space called ``name`` for this input; options are the space's own settings, checked
    against its ``Options`` dataclass (an unknown key or bad value is one line)."""
    from hostside.options import parse_options

    spaces = registered_spaces()
    if name not in spaces:
        raise UserError(f"space {name!r} is unknown; choose one of: {', '.join(sorted(spaces))}")
    cls = spaces[name]
    parsed = parse_options(cls.Options, options, f"space {name!r}")
    try:
        return cls(input_shape, num_classes, **dataclasses.asdict(parsed))
    except ValueError as exc:
        raise UserError(f"space {name!r}: {exc}") from None


def space_options(space: SearchSpace) -> Dict[str, Any]:
    """The options ``make_space`` needs to rebuild ``space`` (its description minus the input)."""
    return {k: v for k, v in space.describe().items() if k not in ("name", "input_shape", "num_classes")}
