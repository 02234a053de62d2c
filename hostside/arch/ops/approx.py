"""``approx_conv2d``: a convolution whose products come from an approximate 8-bit multiplier.

Shape, parameters, MACs and ``n_mult`` are a ``conv2d``'s (groups = 1). In torch every product
is read from the circuit's table (``hostside.approx.conv``), in training and in evaluation; the
ONNX file is an ordinary ``Conv``, because a Pi's CPU has no approximate multiplier: the
deployed network is the float (or INT8-quantised) model, and the circuit's effect is what the
search measured in torch.
"""

from __future__ import annotations

from typing import Any, List

from hostside.approx.library import EXACT, circuit_names
from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Shape, SpecError, choice
from hostside.arch.ops.conv import Conv2d


class ApproxConv2d(Conv2d):
    name = "approx_conv2d"
    family = "approx"
    schema = {**Conv2d.schema, "multiplier": choice(circuit_names(), EXACT)}
    example = {"out_channels": 6, "kernel": 3, "padding": 1, "stride": 2, "multiplier": "mul8u_QKX"}
    shape_rule = Conv2d.shape_rule + "; groups must be 1"
    cost_rule = Conv2d.cost_rule + "; each multiplication by the named EvoApproxLib circuit"

    def infer(self, node: Any, shapes: Any, folded: frozenset) -> Inferred:
        if node.attrs["groups"] != 1:
            raise SpecError(f"node {node.id!r}: approx_conv2d supports groups=1 only, got {node.attrs['groups']}")
        return super().infer(node, shapes, folded)

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from hostside.approx.conv import ApproxConv2d as TorchApproxConv2d

        a = node.attrs
        return TorchApproxConv2d(in_shapes[0][0], a["out_channels"], a["kernel"], stride=a["stride"],
                                 padding=a["padding"], dilation=a["dilation"], bias=a["bias"],
                                 multiplier=a["multiplier"])


register(ApproxConv2d())
