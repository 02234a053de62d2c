"""Narrow search spaces around reference models (``--space narrow:<family>``).

``make_narrow(name, input_shape, num_classes)`` accepts ``narrow:resnet`` or ``resnet``;
``NARROW_SPACES`` maps each ``narrow:<family>`` name to its class for the space registry.
"""

from __future__ import annotations

from typing import Dict, Tuple, Type

from hostside.errors import UserError
from hostside.spaces.narrow.families import FAMILIES, FAMILY_NAMES
from hostside.spaces.narrow.family import Config, NarrowSpace
from hostside.spaces.narrow.variables import Variable

PREFIX = "narrow:"
NARROW_SPACES: Dict[str, Type[NarrowSpace]] = {PREFIX + name: cls for name, cls in FAMILIES.items()}

__all__ = ["Config", "FAMILIES", "FAMILY_NAMES", "NARROW_SPACES", "NarrowSpace", "Variable", "make_narrow",
           "family_of"]


def family_of(name: str) -> str:
    """``resnet`` from ``narrow:resnet`` or ``resnet``; a UserError listing the families otherwise."""
    family = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if family not in FAMILIES:
        raise UserError(f"unknown narrow space {name!r}; choose one of: "
                        + ", ".join(PREFIX + f for f in FAMILY_NAMES))
    return family


def make_narrow(name: str, input_shape: Tuple[int, int, int], num_classes: int) -> NarrowSpace:
    return FAMILIES[family_of(name)](tuple(input_shape), num_classes)
