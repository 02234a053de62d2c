"""ArchSpec -> torch.nn.Module.

The module runs the nodes in the spec's execution order; each node's layer is the one its op
defines (``Op.torch_module`` in ``hostside.arch.ops``), built from the shapes the cost model
inferred, so the module computes exactly what ``hostside.arch.cost`` assumes (merge nodes
align their inputs as it does: larger maps max-pooled down, narrower ones zero-padded).
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import nn

from hostside.arch.ops import REGISTRY
from hostside.arch.spec import INPUT, ArchSpec


class SpecNet(nn.Module):
    """The torch network of an ArchSpec; layers are registered under ``n<position>`` because
    node ids may hold characters that module names cannot."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        shapes: Dict[str, tuple] = {INPUT: spec.input_shape}
        for layer in spec.cost.layers:
            shapes[layer.id] = layer.output_shape
        self.spec = spec
        self.layers = nn.ModuleList(
            REGISTRY[n.op].torch_module(n, [shapes[s] for s in n.inputs], shapes[n.id]) for n in spec.nodes
        )
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
