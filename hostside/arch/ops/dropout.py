"""Dropout: active in training, nothing at inference (the exported graph skips it)."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Op, Shape, prob


class Dropout(Op):
    name = "dropout"
    family = "dropout"
    schema = {"p": prob(0.5)}
    shape_preserving = True
    example = {"p": 0.1}
    shape_rule = "same as the input"
    cost_rule = "none; not exported"

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return nn.Dropout(node.attrs["p"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        return inputs[0]

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return None


register(Dropout())
