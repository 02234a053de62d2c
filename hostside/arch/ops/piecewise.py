"""``piecewise``: an activation that applies one function below zero and another from zero up.

NeuroPower (Taheri et al.) searches the activation as two genes, the left half (x < 0) and
the right half (x >= 0), each one of relu, elu, sigmoid, tanh, swish, selu and linear: e.g.
left = elu, right = relu is an ELU-like unit, left = linear, right = tanh a soft clip. It has
no parameters and no MACs (like every activation of the cost model). ONNX has no such
operator; the export is ``Where(Less(x, 0), left(x), right(x))``, which onnxruntime computes
element for element as torch does, and which the ONNX read-back counts as zero parameters and
zero MACs (``Less`` and ``Where`` are element-wise).
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Op, Shape, choice

#: The halves the paper's table 1 allows.
HALVES = ("relu", "elu", "sigmoid", "tanh", "swish", "selu", "linear")
#: The standard activation the calibration features know each half as (linear: none).
_FEATURE_NAME = {"relu": "relu", "elu": "elu", "sigmoid": "sigmoid", "tanh": "tanh", "swish": "silu",
                 "selu": "selu", "linear": None}
_ONNX = {"relu": "Relu", "elu": "Elu", "sigmoid": "Sigmoid", "tanh": "Tanh", "selu": "Selu"}


class Piecewise(Op):
    name = "piecewise"
    family = "piecewise"
    shape_preserving = True
    schema = {"left": choice(HALVES, "relu", doc="function for x < 0"),
              "right": choice(HALVES, "relu", doc="function for x >= 0")}
    example = {"left": "elu", "right": "tanh"}
    shape_rule = "same as the input"
    cost_rule = "none (two element-wise functions and a select)"

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from hostside.arch.ops._piecewise import PiecewiseActivation

        return PiecewiseActivation(node.attrs["left"], node.attrs["right"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        import numpy as np

        x = inputs[0]
        left, right = node.attrs["left"], node.attrs["right"]
        if left == right:
            return _emit_half(g, left, x, out)
        below = g.node("Less", [x, g.const(f"{out}.zero", np.array(0.0, np.float32))], f"{out}.below")
        return g.node("Where", [below, _emit_half(g, left, x, f"{out}.left"), _emit_half(g, right, x, f"{out}.right")],
                      out)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        left, right = node.attrs["left"], node.attrs["right"]
        if left == right:
            name = _FEATURE_NAME[left]
            return None if name is None else [("act", node.id, srcs[:1], (name, out_shape))]
        ops: List[tuple] = []
        halves = []
        for side, half in (("left", left), ("right", right)):
            name = _FEATURE_NAME[half]
            if name is None:
                halves.append(srcs[0])
                continue
            tensor = f"{node.id}.{side}"
            shapes[tensor] = out_shape
            ops.append(("act", tensor, srcs[:1], (name, out_shape)))
            halves.append(tensor)
        n = 1
        for d in out_shape:
            n *= d
        shapes[f"{node.id}.below"] = out_shape
        ops.append(("eltwise", f"{node.id}.below", srcs[:1], (2 * n,)))
        ops.append(("eltwise", node.id, (f"{node.id}.below", *halves), (4 * n,)))
        return ops


def _emit_half(g: Any, half: str, x: str, out: str) -> str:
    if half == "linear":
        return g.node("Identity", [x], out)
    if half == "swish":  # opset 17 has no Swish: x * sigmoid(x)
        return g.node("Mul", [x, g.node("Sigmoid", [x], f"{out}.sigmoid")], out)
    return g.node(_ONNX[half], [x], out)


register(Piecewise())
