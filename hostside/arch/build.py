"""ArchSpec -> torch.nn.Module.

The module runs the nodes in the spec's execution order; merge nodes (add, concat) align
their inputs exactly as ``hostside.arch.cost`` assumes: larger maps are max-pooled down by
the integer ratio, and for ``add`` narrower inputs are zero-padded to the widest channel count.
"""

from __future__ import annotations

from typing import Dict, List

import torch
import torch.nn.functional as F
from torch import nn

from hostside.arch.cost import analyze
from hostside.arch.spec import INPUT, ArchSpec, Node

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "hardswish": nn.Hardswish,
    "identity": nn.Identity,
}


def _layer(node: Node, shapes: Dict[str, tuple]) -> nn.Module:
    a = node.attrs
    op = node.op
    in_shape = shapes[node.inputs[0]]
    if op == "conv2d":
        return nn.Conv2d(
            in_shape[0], a["out_channels"], a["kernel"], stride=a["stride"], padding=a["padding"],
            dilation=a["dilation"], groups=a["groups"], bias=a["bias"],
        )
    if op == "batchnorm":
        cls = nn.BatchNorm2d if len(in_shape) == 3 else nn.BatchNorm1d
        return cls(in_shape[0], eps=a["eps"])
    if op == "linear":
        return nn.Linear(in_shape[0], a["out_features"], bias=a["bias"])
    if op == "maxpool":
        return nn.MaxPool2d(a["kernel"], stride=a["stride"], padding=a["padding"])
    if op == "avgpool":
        return nn.AvgPool2d(a["kernel"], stride=a["stride"], padding=a["padding"])
    if op == "global_avgpool":
        return nn.AdaptiveAvgPool2d(1)
    if op == "flatten":
        return nn.Flatten()
    if op == "dropout":
        return nn.Dropout(a["p"])
    if op in _ACTIVATIONS:
        return _ACTIVATIONS[op]()
    if op in ("add", "concat"):
        return _Merge(op, [shapes[i] for i in node.inputs], shapes[node.id])
    raise AssertionError(f"no builder for op {op!r}")


class _Merge(nn.Module):
    """add / concat with CGP-style alignment (see module docstring). The pooling kernels and
    pad widths are fixed at build time from the known shapes, so the exported graph is static."""

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


class SpecNet(nn.Module):
    """The torch network of an ArchSpec; layers are registered under ``n<position>`` because
    node ids may hold characters that module names cannot."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        cost = analyze(spec)
        shapes: Dict[str, tuple] = {INPUT: spec.input_shape}
        for layer in cost.layers:
            shapes[layer.id] = layer.output_shape
        self.spec = spec
        self.layers = nn.ModuleList(_layer(n, shapes) for n in spec.nodes)
        self._plan: List[tuple] = [(n.id, n.inputs) for n in spec.nodes]
        self._output = spec.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: Dict[str, torch.Tensor] = {INPUT: x}
        for (node_id, inputs), layer in zip(self._plan, self.layers):
            values[node_id] = layer(*(values[s] for s in inputs))
        return values[self._output]


def build_module(spec: ArchSpec) -> SpecNet:
    """A freshly initialised torch module computing ``spec`` (logits, no softmax)."""
    return SpecNet(spec)


def count_params(module: nn.Module) -> int:
    """Trainable parameters as torch counts them; the cost model's ``params`` must equal this."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
