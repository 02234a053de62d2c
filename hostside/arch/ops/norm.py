"""Batch normalisation (of feature maps or feature vectors)."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape, pos_float


class BatchNorm(Op):
    name = "batchnorm"
    family = "norm"
    schema = {"eps": pos_float(1e-5)}
    folds_into_producer = True
    shape_rule = "same as the input"
    cost_rule = ("params 2*C (scale, shift); deployed 0 when folded into the conv before it (a conv-like op "
                 "read by nothing else), else 2*C")

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        src = node.inputs[0]
        shape = shapes[src]
        params = 2 * shape[0]
        if src in folded:
            return shape, params, 0, 0, 0
        return shape, params, params, params, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        return shapes[node.inputs[0]]

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        cls = nn.BatchNorm2d if len(in_shapes[0]) == 3 else nn.BatchNorm1d
        return cls(in_shapes[0][0], eps=node.attrs["eps"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        from torch import nn

        if isinstance(module, nn.Identity):
            return inputs[0]  # folded into the conv before it
        return g.node(
            "BatchNormalization",
            [inputs[0], g.const(f"{out}.scale", g.array(module.weight)), g.const(f"{out}.bias", g.array(module.bias)),
             g.const(f"{out}.running_mean", g.array(module.running_mean)),
             g.const(f"{out}.running_var", g.array(module.running_var))],
            out, epsilon=float(module.eps),
        )

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        if folded:
            return None
        return [("bn", node.id, srcs[:1], (out_shape, layer.deployed_params))]


register(BatchNorm())
