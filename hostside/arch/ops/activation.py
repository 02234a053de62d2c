"""Element-wise activations without parameters (ReLU, ReLU6, ELU, SELU, SiLU, sigmoid, tanh,
hard-swish, identity)."""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Op, Shape

#: The fixed set of standard activations (``hostside.arch.spec.ACTIVATIONS``); generators draw
#: from it, so it never grows: new activations are ops of their own modules.
STANDARD = ("relu", "relu6", "elu", "selu", "silu", "sigmoid", "tanh", "hardswish", "identity")
_TORCH = {"relu": "ReLU", "relu6": "ReLU6", "elu": "ELU", "selu": "SELU", "silu": "SiLU", "sigmoid": "Sigmoid",
          "tanh": "Tanh", "hardswish": "Hardswish", "identity": "Identity"}
_ONNX = {"relu": "Relu", "elu": "Elu", "selu": "Selu", "sigmoid": "Sigmoid", "tanh": "Tanh",
         "hardswish": "HardSwish"}


class Activation(Op):
    family = "activation"
    shape_preserving = True
    shape_rule = "same as the input"
    cost_rule = "none"

    def __init__(self, name: str, aliases: Tuple[str, ...] = ()):
        self.name = name
        self.aliases = aliases
        super().__init__()

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return getattr(nn, _TORCH[self.name])()

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        import numpy as np

        x = inputs[0]
        if self.name == "identity":
            return x
        if self.name == "relu6":
            return g.node("Clip", [x, g.const(f"{out}.min", np.array(0.0, np.float32)),
                                   g.const(f"{out}.max", np.array(6.0, np.float32))], out)
        if self.name == "silu":  # opset 17 has no Swish: x * sigmoid(x)
            return g.node("Mul", [x, g.node("Sigmoid", [x], f"{out}.sigmoid")], out)
        return g.node(_ONNX[self.name], [x], out)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        if self.name == "identity":
            return None
        return [("act", node.id, srcs[:1], (self.name, out_shape))]


for _name in STANDARD:
    register(Activation(_name, aliases=("swish",) if _name == "silu" else ()))
