"""``leaky_relu``: x for x >= 0, ``alpha * x`` below (torch's ``LeakyReLU``, ONNX ``LeakyRelu``).

Everything the toolchain needs about the op is here, the ONNX operator row included: the
table of ``hostside.onnx.optypes`` learns ``LeakyRelu`` from ``onnx_types`` when the registry
loads, so ``arch stats`` costs it as zero MACs, ``arch import`` turns it back into this op
(with its ``alpha``), and the latency features count it as one cheap element-wise pass (read
and write the map), which is what ``calibration_ops`` says too. The features do not treat it
as a fusable activation: onnxruntime may fuse it into the conv before it, but the calibration
suite never measured that, so the features keep the conservative, unfused cost the ONNX
reader has always given ``LeakyRelu`` files.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Attr, Op, Shape, SpecError, elements, float32_decimal
from hostside.onnx.optypes import OpType

#: torch's default negative slope.
DEFAULT_ALPHA = 0.01


def _check_slope(where: str, key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise SpecError(f"{where}: {key} must be a finite number (the slope below zero), got {value!r}")


class LeakyRelu(Op):
    name = "leaky_relu"
    family = "leaky_relu"
    shape_preserving = True
    schema = {"alpha": Attr("float", _check_slope, DEFAULT_ALPHA, doc="slope for x < 0")}
    example = {"alpha": 0.2}
    shape_rule = "same as the input"
    cost_rule = "none (one element-wise pass)"
    onnx_types = (OpType("LeakyRelu", arch="leaky_relu"),)

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return nn.LeakyReLU(node.attrs["alpha"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        return g.node("LeakyRelu", inputs[:1], out, alpha=node.attrs["alpha"])

    def from_onnx(self, op_type: str, attrs: Mapping[str, Any]) -> Dict[str, Any]:
        unknown = set(attrs) - {"alpha"}
        if unknown:
            raise SpecError(f"attribute(s) {', '.join(sorted(unknown))} have no equivalent in ArchSpec's {self.name}")
        return {"alpha": float32_decimal(attrs.get("alpha", DEFAULT_ALPHA))}

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return [("eltwise", node.id, srcs[:1], (2 * elements(out_shape),))]


register(LeakyRelu())
