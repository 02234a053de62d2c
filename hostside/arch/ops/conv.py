"""2-D convolution (plain, grouped, depthwise, dilated)."""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape, SpecError, boolean, pad_pair, pair, pos_int

_F32 = 4


def conv_output_hw(h: int, w: int, attrs: Mapping[str, Any]) -> Tuple[int, int]:
    """(H_out, W_out) of a convolution, as torch computes it."""
    kh, kw = attrs["kernel"]
    sh, sw = attrs["stride"]
    ph, pw = attrs["padding"]
    dh, dw = attrs["dilation"]
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


class Conv2d(Op):
    name = "conv2d"
    family = "conv"
    schema = {
        "out_channels": pos_int(),
        "kernel": pair(),
        "stride": pair(1),
        "padding": pad_pair(0),
        "dilation": pair(1),
        "groups": pos_int(1),
        "bias": boolean(True),
    }
    absorbs_batchnorm = True
    example = {"out_channels": 6, "kernel": [3, 1], "padding": [1, 0], "stride": 2}
    conv_multiplications = True
    shape_rule = "(C_out, (H + 2p - d(k-1) - 1) // s + 1, same for W); groups divide C_in and C_out"
    cost_rule = ("params C_out*(C_in/groups)*kh*kw (+C_out bias); deployed gains the bias when a batchnorm "
                 "folds in; MACs = weights * H_out * W_out (= n_mult)")

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        shape = shapes[node.inputs[0]]
        a = node.attrs
        if len(shape) != 3:
            raise SpecError(f"node {node.id!r}: {self.name} needs a feature map, got shape {list(shape)}")
        cin, h, w = shape
        cout = a["out_channels"]
        groups = a["groups"]
        if cin % groups or cout % groups:
            raise SpecError(
                f"node {node.id!r}: groups={groups} must divide in_channels={cin} and out_channels={cout}"
            )
        kh, kw = a["kernel"]
        sh, sw = a["stride"]
        ph, pw = a["padding"]
        dh, dw = a["dilation"]
        ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if ho < 1 or wo < 1:
            raise SpecError(
                f"node {node.id!r}: {self.name} kernel {kh}x{kw} (dilation {dh}x{dw}, padding {ph}x{pw}) "
                f"does not fit its {h}x{w} input"
            )
        weights = cout * (cin // groups) * kh * kw
        if a["bias"]:
            return (cout, ho, wo), weights + cout, weights + cout, cout, weights * ho * wo
        if node.id in folded:
            return (cout, ho, wo), weights, weights + cout, cout, weights * ho * wo
        return (cout, ho, wo), weights, weights, 0, weights * ho * wo

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        shape = shapes[node.inputs[0]]
        if len(shape) != 3:
            return None
        return (node.attrs["out_channels"], *conv_output_hw(shape[1], shape[2], node.attrs))

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        a = node.attrs
        return nn.Conv2d(in_shapes[0][0], a["out_channels"], a["kernel"], stride=a["stride"], padding=a["padding"],
                         dilation=a["dilation"], groups=a["groups"], bias=a["bias"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        a = node.attrs
        names = [inputs[0], g.const(f"{out}.weight", g.array(module.weight))]
        if module.bias is not None:
            names.append(g.const(f"{out}.bias", g.array(module.bias)))
        ph, pw = a["padding"]
        return g.node("Conv", names, out, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                      pads=[ph, pw, ph, pw], dilations=list(a["dilation"]), group=a["groups"])

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        a = node.attrs
        kh, kw = a["kernel"]
        return [("conv", node.id, srcs[:1], (shapes[srcs[0]][0], a["out_channels"], a["groups"], kh, kw, out_shape,
                                             layer.deployed_params))]


register(Conv2d())
