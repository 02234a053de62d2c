"""Seeded random ArchSpecs that exercise every op: for tests, the cost benchmark and as a
generic family of architectures unlike any search space's.

Generation reads shapes from the shared builder (``hostside.arch.blocks``) just enough to
stay valid most of the time and retries the rare draw that does not fit (``ArchSpec``
validation is the judge). The builder is not strict, so a draw that does not fit consumes
the same random numbers it always did: a seed names the same spec from release to release.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from hostside.arch.blocks import SpecBuilder
from hostside.arch.spec import INPUT, ArchSpec, SpecError

# The activations drawn from, fixed (not the registry's list), so new ops change no seed's spec.
_ACTIVATIONS = ("relu", "relu6", "elu", "selu", "silu", "sigmoid", "tanh", "hardswish", "identity")

Shape3 = Tuple[int, int, int]


def _conv(b: SpecBuilder, rng: np.random.Generator, src: str, out_channels: Optional[int] = None) -> str:
    c, h, w = b.shape(src)
    kh = int(rng.choice([1, 3, 5, 7])) if min(h, w) >= 7 else int(rng.choice([1, 3]))
    kw = kh if rng.random() < 0.8 else int(rng.choice([1, 3]))
    kh, kw = min(kh, h + 2), min(kw, w + 2)
    dilation = 2 if rng.random() < 0.1 and min(h, w) >= 2 * max(kh, kw) else 1
    stride = 2 if rng.random() < 0.25 and min(h, w) >= 4 else 1
    padding = [dilation * (kh - 1) // 2, dilation * (kw - 1) // 2]
    if out_channels is None:
        out_channels = int(rng.choice([4, 8, 12, 16, 24, 32, 48, 64]))
    groups = 1
    if rng.random() < 0.2:
        groups, out_channels = c, c * int(rng.choice([1, 2]))  # depthwise (multiplier 1 or 2)
    elif rng.random() < 0.1 and c % 2 == 0 and out_channels % 2 == 0:
        groups = 2
    return b.add("conv2d", src, out_channels=out_channels, kernel=[kh, kw], stride=stride, padding=padding,
                 dilation=dilation, groups=groups, bias=bool(rng.random() < 0.4))


def _post(b: SpecBuilder, rng: np.random.Generator, src: str) -> str:
    if rng.random() < 0.6:
        src = b.add("batchnorm", src)
    if rng.random() < 0.85:
        src = b.add(str(rng.choice(_ACTIVATIONS)), src)
    return src


def random_spec(seed: int, min_layers: int = 5, max_layers: int = 15,
                input_shape: Shape3 = (3, 32, 32), num_classes: int = 10) -> ArchSpec:
    """A random valid spec with ``min_layers``..``max_layers`` conv/linear/pool/merge layers
    (batchnorm and activations come on top)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        try:
            return _draw(rng, min_layers, max_layers, input_shape, num_classes).build()
        except SpecError:
            continue
    raise RuntimeError(f"seed {seed}: no valid spec in 100 draws")


def _draw(rng: np.random.Generator, min_layers: int, max_layers: int, input_shape: Shape3,
          num_classes: int) -> SpecBuilder:
    b = SpecBuilder(input_shape, strict=False)
    layers = int(rng.integers(min_layers, max_layers + 1))
    head_layers = int(rng.integers(1, 3))
    src = INPUT
    done = 0
    while done < layers - head_layers:
        kind = rng.random()
        spatial = min(b.shape(src)[1:])
        if kind < 0.15 and spatial >= 2:
            op = "max" if rng.random() < 0.5 else "avg"
            k = int(rng.choice([2, 3])) if spatial >= 3 else 2
            s = int(rng.choice([1, 2]))
            pad = int(rng.integers(0, k // 2 + 1))
            src = b.pool(src, op, kernel=k, stride=s, padding=pad)
            done += 1
        elif kind < 0.35 and done + 3 <= layers - head_layers:
            src = _branch_block(b, rng, src)
            done += 3
        else:
            src = _post(b, rng, _conv(b, rng, src))
            done += 1
        if rng.random() < 0.05:
            src = b.add("dropout", src, p=float(rng.choice([0.1, 0.25])))
    if rng.random() < 0.5:
        src = b.add("global_avgpool", src)
    src = b.add("flatten", src)
    for _ in range(head_layers - 1):
        src = b.add("linear", src, out_features=int(rng.choice([16, 32, 64, 128])), bias=bool(rng.random() < 0.8))
        src = _post(b, rng, src)
    b.add("linear", src, out_features=num_classes)
    return b


def _branch_block(b: SpecBuilder, rng: np.random.Generator, src: str) -> str:
    """A residual add or an inception-style concat of two conv paths (shapes may differ)."""
    a_node = _post(b, rng, _conv(b, rng, src))
    c_node = src if rng.random() < 0.5 else _post(b, rng, _conv(b, rng, src))  # identity shortcut or a conv
    return b.merge("add" if rng.random() < 0.5 else "concat", [a_node, c_node])
