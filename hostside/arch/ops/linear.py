"""Fully connected layer on a feature vector."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape, SpecError, boolean, pos_int


class Linear(Op):
    name = "linear"
    family = "linear"
    schema = {"out_features": pos_int(), "bias": boolean(True)}
    shape_rule = "(out_features,); needs a feature vector"
    example = {"out_features": 6}
    example_input = "vector"
    cost_rule = "params = deployed = F_in*F_out (+F_out bias); MACs F_in*F_out"

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        shape = shapes[node.inputs[0]]
        if len(shape) != 1:
            raise SpecError(
                f"node {node.id!r}: linear needs a feature vector, got shape {list(shape)}; "
                f"insert a flatten or global_avgpool before it"
            )
        fin = shape[0]
        fout = node.attrs["out_features"]
        if node.attrs["bias"]:
            params = fin * fout + fout
            return (fout,), params, params, fout, fin * fout
        return (fout,), fin * fout, fin * fout, 0, fin * fout

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        return (node.attrs["out_features"],)

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return nn.Linear(in_shapes[0][0], node.attrs["out_features"], bias=node.attrs["bias"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        names = [inputs[0], g.const(f"{out}.weight", g.array(module.weight))]
        if module.bias is not None:
            names.append(g.const(f"{out}.bias", g.array(module.bias)))
        return g.node("Gemm", names, out, transB=1)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return [("linear", node.id, srcs[:1], (shapes[srcs[0]][0], node.attrs["out_features"],
                                               layer.deployed_params))]


register(Linear())
