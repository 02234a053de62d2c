"""Pooling: windowed max / average pooling and global average pooling."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape, SpecError, boolean, pad_pair, pair


class Pool(Op):
    """max or average pooling over a kernel window; the stride defaults to the kernel."""

    family = "pool"
    schema = {"kernel": pair(), "stride": pair(None, doc="defaults to the kernel"), "padding": pad_pair(0)}
    shape_rule = "(C, (H + 2p - k) // s + 1, same for W); padding at most half the kernel"
    cost_rule = "none (no params, no MACs)"
    example = {"kernel": 3, "stride": 2, "padding": 1}
    onnx_type = ""

    def __init__(self, name: str, onnx_type: str):
        self.name = name
        self.onnx_type = onnx_type
        if onnx_type == "AveragePool":
            # Whether padded cells count in the window's mean. True is torch's default (and the
            # meaning of every spec written before this attribute existed); NAS-Bench-201's
            # avg_pool_3x3 averages over the real pixels only.
            self.schema = {**Pool.schema, "count_include_pad": boolean(True, omit_default=True)}
        super().__init__()

    def finish_attrs(self, node_id: str, attrs: Dict[str, Any]) -> None:
        if attrs["stride"] is None:
            attrs["stride"] = attrs["kernel"]

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        shape = shapes[node.inputs[0]]
        if len(shape) != 3:
            raise SpecError(f"node {node.id!r}: {self.name} needs a feature map, got shape {list(shape)}")
        a = node.attrs
        kh, kw = a["kernel"]
        sh, sw = a["stride"]
        ph, pw = a["padding"]
        if 2 * ph > kh or 2 * pw > kw:
            raise SpecError(f"node {node.id!r}: {self.name} padding {ph}x{pw} must be at most half the kernel "
                            f"{kh}x{kw}")
        ho = (shape[1] + 2 * ph - kh) // sh + 1
        wo = (shape[2] + 2 * pw - kw) // sw + 1
        if ho < 1 or wo < 1:
            raise SpecError(f"node {node.id!r}: {self.name} kernel {kh}x{kw} does not fit its "
                            f"{shape[1]}x{shape[2]} input")
        return (shape[0], ho, wo), 0, 0, 0, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        shape = shapes[node.inputs[0]]
        if len(shape) != 3:
            return None
        a = node.attrs
        return (shape[0], (shape[1] + 2 * a["padding"][0] - a["kernel"][0]) // a["stride"][0] + 1,
                (shape[2] + 2 * a["padding"][1] - a["kernel"][1]) // a["stride"][1] + 1)

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        a = node.attrs
        if self.name == "maxpool":
            return nn.MaxPool2d(a["kernel"], stride=a["stride"], padding=a["padding"])
        return nn.AvgPool2d(a["kernel"], stride=a["stride"], padding=a["padding"],
                            count_include_pad=a["count_include_pad"])

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        a = node.attrs
        ph, pw = a["padding"]
        kwargs: Dict[str, Any] = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=[ph, pw, ph, pw])
        if self.onnx_type == "AveragePool":
            kwargs["count_include_pad"] = int(a["count_include_pad"])
        return g.node(self.onnx_type, inputs[:1], out, **kwargs)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return [("pool", node.id, srcs[:1], (shapes[srcs[0]], out_shape, False))]


class GlobalAvgPool(Op):
    name = "global_avgpool"
    family = "pool"
    shape_rule = "(C, 1, 1)"
    cost_rule = "none"

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        shape = shapes[node.inputs[0]]
        if len(shape) != 3:
            raise SpecError(f"node {node.id!r}: global_avgpool needs a feature map, got shape {list(shape)}")
        return (shape[0], 1, 1), 0, 0, 0, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        shape = shapes[node.inputs[0]]
        return (shape[0], 1, 1) if len(shape) == 3 else None

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from torch import nn

        return nn.AdaptiveAvgPool2d(1)

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        return g.node("GlobalAveragePool", inputs[:1], out)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        return [("pool", node.id, srcs[:1], (shapes[srcs[0]], out_shape, True))]


register(Pool("maxpool", "MaxPool"))
register(Pool("avgpool", "AveragePool"))
register(GlobalAvgPool())
