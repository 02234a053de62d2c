"""torch modules of ops that torch does not have as such; imported only when building a module
(the op registry itself never imports torch)."""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class Merge(nn.Module):
    """add / concat with CGP-style alignment (see ``hostside.arch.ops.merge``). The pooling
    kernels and pad widths are fixed at build time from the known shapes, so the exported graph
    is static."""

    def __init__(self, op: str, in_shapes: List[tuple], out_shape: tuple):
        super().__init__()
        self.op = op
        self.pools = [
            (s[1] // out_shape[1], s[2] // out_shape[2]) if len(s) == 3 and s[1:] != out_shape[1:] else None
            for s in in_shapes
        ]
        ndim_tail = len(out_shape) - 1
        self.pads = [
            [0, 0] * ndim_tail + [0, out_shape[0] - s[0]] if op == "add" and s[0] != out_shape[0] else None
            for s in in_shapes
        ]

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        aligned = []
        for x, pool, pad in zip(xs, self.pools, self.pads):
            if pool is not None:
                x = F.max_pool2d(x, pool)
            if pad is not None:
                x = F.pad(x, pad)
            aligned.append(x)
        if self.op == "concat":
            return torch.cat(aligned, dim=1)
        out = aligned[0]
        for x in aligned[1:]:
            out = out + x
        return out
