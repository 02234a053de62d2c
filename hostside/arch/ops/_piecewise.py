"""The torch module of the ``piecewise`` op (imported only when a network is built)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_FUNCTIONS = {"relu": F.relu, "elu": F.elu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": F.silu,
              "selu": F.selu, "linear": lambda x: x}


class PiecewiseActivation(nn.Module):
    """left(x) where x < 0, right(x) elsewhere: both halves are computed and selected, the
    same arithmetic as the exported ``Where(Less(x, 0), left, right)``."""

    def __init__(self, left: str, right: str):
        super().__init__()
        self.left, self.right = left, right
        self._left, self._right = _FUNCTIONS[left], _FUNCTIONS[right]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.left == self.right:
            return self._right(x)
        return torch.where(x < 0, self._left(x), self._right(x))

    def extra_repr(self) -> str:
        return f"left={self.left}, right={self.right}"
