"""Flatten a feature map (C, H, W) into a feature vector (C*H*W,)."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape


class Flatten(Op):
    name = "flatten"
    family = "flatten"
    shape_rule = "(C*H*W,); a vector stays as it is"
    cost_rule = "none"

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        shape = shapes[node.inputs[0]]
        if len(shape) == 3:
            return (shape[0] * shape[1] * shape[2],), 0, 0, 0, 0
        return shape, 0, 0, 0, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        return self.infer(node, shapes, frozenset())[0]

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return nn.Flatten()

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        return g.node("Flatten", inputs[:1], out, axis=1)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return [("reshape", node.id, srcs[:1], ())]


register(Flatten())
