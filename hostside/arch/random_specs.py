"""Seeded random ArchSpecs that exercise every op: for tests, the cost benchmark and as a
generic family of architectures unlike any search space's.

Generation tracks shapes just enough to stay valid most of the time and retries the rare
draw that does not fit (``ArchSpec`` validation is the judge).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.spec import ACTIVATIONS, INPUT, ArchSpec, SpecError


class _Builder:
    def __init__(self, rng: np.random.Generator, shape: Tuple[int, int, int]):
        self.rng = rng
        self.nodes: List[Dict[str, Any]] = []
        self.current = INPUT
        self.shape = shape

    def add(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        node_id = f"{op}{len(self.nodes)}"
        self.nodes.append({"id": node_id, "op": op, "inputs": list(inputs), **attrs})
        return node_id

    def conv(self, src: str, in_shape, out_channels: Optional[int] = None) -> Tuple[str, Tuple[int, int, int]]:
        rng = self.rng
        c, h, w = in_shape
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
        node = self.add("conv2d", [src], out_channels=out_channels, kernel=[kh, kw], stride=stride,
                        padding=padding, dilation=dilation, groups=groups, bias=bool(rng.random() < 0.4))
        ho = (h + 2 * padding[0] - dilation * (kh - 1) - 1) // stride + 1
        wo = (w + 2 * padding[1] - dilation * (kw - 1) - 1) // stride + 1
        return node, (out_channels, ho, wo)

    def post(self, src: str) -> str:
        if self.rng.random() < 0.6:
            src = self.add("batchnorm", [src])
        if self.rng.random() < 0.85:
            src = self.add(str(self.rng.choice(ACTIVATIONS)), [src])
        return src


def random_spec(seed: int, min_layers: int = 5, max_layers: int = 15,
                input_shape: Tuple[int, int, int] = (3, 32, 32), num_classes: int = 10) -> ArchSpec:
    """A random valid spec with ``min_layers``..``max_layers`` conv/linear/pool/merge layers
    (batchnorm and activations come on top)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        try:
            return ArchSpec.from_dict(_draw(rng, min_layers, max_layers, input_shape, num_classes))
        except SpecError:
            continue
    raise RuntimeError(f"seed {seed}: no valid spec in 100 draws")


def _draw(rng: np.random.Generator, min_layers: int, max_layers: int,
          input_shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    b = _Builder(rng, input_shape)
    layers = int(rng.integers(min_layers, max_layers + 1))
    head_layers = int(rng.integers(1, 3))
    src, shape = INPUT, input_shape
    done = 0
    while done < layers - head_layers:
        kind = rng.random()
        if kind < 0.15 and min(shape[1:]) >= 2:
            op = "maxpool" if rng.random() < 0.5 else "avgpool"
            k = int(rng.choice([2, 3])) if min(shape[1:]) >= 3 else 2
            s = int(rng.choice([1, 2]))
            pad = int(rng.integers(0, k // 2 + 1))
            src = b.add(op, [src], kernel=k, stride=s, padding=pad)
            shape = (shape[0], (shape[1] + 2 * pad - k) // s + 1, (shape[2] + 2 * pad - k) // s + 1)
            done += 1
        elif kind < 0.35 and done + 3 <= layers - head_layers:
            src, shape = _branch_block(b, src, shape)
            done += 3
        else:
            node, shape = b.conv(src, shape)
            src = b.post(node)
            done += 1
        if rng.random() < 0.05:
            src = b.add("dropout", [src], p=float(rng.choice([0.1, 0.25])))
    if rng.random() < 0.5:
        src = b.add("global_avgpool", [src])
        src = b.add("flatten", [src])
    else:
        src = b.add("flatten", [src])
    for _ in range(head_layers - 1):
        src = b.add("linear", [src], out_features=int(rng.choice([16, 32, 64, 128])), bias=bool(rng.random() < 0.8))
        src = b.post(src)
    b.add("linear", [src], out_features=num_classes)
    return {"input_shape": list(input_shape), "num_classes": num_classes, "nodes": b.nodes}


def _branch_block(b: _Builder, src: str, shape) -> Tuple[str, Tuple[int, int, int]]:
    """A residual add or an inception-style concat of two conv paths (shapes may differ)."""
    rng = b.rng
    a_node, a_shape = b.conv(src, shape)
    a_node = b.post(a_node)
    if rng.random() < 0.5:
        c_node, c_shape = src, shape  # identity shortcut
    else:
        c_node, c_shape = b.conv(src, shape)
        c_node = b.post(c_node)
    if rng.random() < 0.5:
        h, w = min(a_shape[1], c_shape[1]), min(a_shape[2], c_shape[2])
        node = b.add("add", [a_node, c_node])
        return node, (max(a_shape[0], c_shape[0]), h, w)
    node = b.add("concat", [a_node, c_node])
    return node, (a_shape[0] + c_shape[0], min(a_shape[1], c_shape[1]), min(a_shape[2], c_shape[2]))
