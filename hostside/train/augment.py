"""Batch-wise data augmentation on tensors already in memory: random crop with padding and
horizontal flip, each drawn per example from a seeded generator.

torchvision's transforms work one image at a time (and torchvision is not installed); on
8x8 digits a per-image Python loop would cost more than the training step, so both
transforms are done for the whole batch with a few tensor ops.
"""

from __future__ import annotations

from typing import Sequence

import torch


def pad_with_fill(x: torch.Tensor, padding: int, fill: Sequence[float]) -> torch.Tensor:
    """``x`` (N, C, H, W) padded on each side with a per-channel constant (the value a raw
    zero has after normalisation, so padding means "black" as with torchvision)."""
    n, c, h, w = x.shape
    out = torch.empty((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype, device=x.device)
    out.copy_(torch.as_tensor(list(fill), dtype=x.dtype, device=x.device).view(1, c, 1, 1).expand_as(out))
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def random_crop(padded: torch.Tensor, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``height`` x ``width`` window of each padded example."""
    n, c, hp, wp = padded.shape
    dev = padded.device
    top = torch.randint(0, hp - height + 1, (n,), generator=generator).to(dev)
    left = torch.randint(0, wp - width + 1, (n,), generator=generator).to(dev)
    rows = (top[:, None] + torch.arange(height, device=dev)[None, :])[:, None, :, None]
    cols = (left[:, None] + torch.arange(width, device=dev)[None, :])[:, None, None, :]
    batch = torch.arange(n, device=dev)[:, None, None, None]
    chans = torch.arange(c, device=dev)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each example mirrored left-right with probability 1/2."""
    flip = (torch.rand((x.shape[0],), generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)
