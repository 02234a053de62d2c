"""Merging branches: ``add`` and ``concat`` with CGP-style alignment.

Inputs of different spatial sizes are aligned to the smallest by max-pooling the larger ones
with kernel = stride = the integer ratio (as CGP-based NAS merges branches); ``add`` zero-pads
narrower inputs to the widest channel count, ``concat`` stacks the channels. The torch module,
the ONNX graph and the calibration operators all insert exactly these pools and pads.
"""

from __future__ import annotations

from typing import Any, List, Mapping, Optional, Sequence, Tuple

from hostside.arch.ops import register
from hostside.arch.ops.base import Inferred, Op, Shape, SpecError, elements


def _aligned_spatial(node_id: str, op: str, shapes: Sequence[Shape]) -> Tuple[int, int]:
    h = min(s[1] for s in shapes)
    w = min(s[2] for s in shapes)
    for s in shapes:
        if s[1] % h or s[2] % w:
            raise SpecError(
                f"node {node_id!r}: {op} inputs of {s[1]}x{s[2]} and {h}x{w} cannot be aligned; "
                f"spatial sizes must be integer multiples of the smallest"
            )
    return h, w


def merge_shape(node_id: str, op: str, shapes: Sequence[Shape]) -> Shape:
    """Output shape of ``add`` (channels zero-padded to the widest) or ``concat`` (channels summed)."""
    if len(shapes) == 2:
        # The common merge (a residual add, a two-branch or dense concat) of equal-sized maps.
        a, b = shapes
        if len(a) == 3 and len(b) == 3 and a[1] == b[1] and a[2] == b[2]:
            return (a[0] + b[0] if op == "concat" else max(a[0], b[0]), a[1], a[2])
    rank = len(shapes[0])
    for s in shapes:
        if len(s) != rank:
            raise SpecError(f"node {node_id!r}: {op} mixes feature vectors and feature maps "
                            f"{[list(s) for s in shapes]}")
    channels = sum(s[0] for s in shapes) if op == "concat" else max(s[0] for s in shapes)
    if rank == 1:
        return (channels,)
    h, w = _aligned_spatial(node_id, op, shapes)
    return (channels, h, w)


class Merge(Op):
    family = "merge"
    min_inputs = 2
    max_inputs = None
    cost_rule = "none (the alignment pools and pads have no params or MACs)"

    def __init__(self, name: str, shape_rule: str):
        self.name = name
        self.shape_rule = shape_rule
        super().__init__()

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        return merge_shape(node.id, self.name, [shapes[s] for s in node.inputs]), 0, 0, 0, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        ins = [shapes[s] for s in node.inputs]
        if len({len(s) for s in ins}) != 1:
            return None
        channels = sum(s[0] for s in ins) if self.name == "concat" else max(s[0] for s in ins)
        return (channels, *(min(s[d] for s in ins) for d in range(1, len(ins[0]))))

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        from hostside.arch.ops._torch import Merge as TorchMerge

        return TorchMerge(self.name, in_shapes, out_shape)

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        import numpy as np

        aligned = []
        for k, (x, shape) in enumerate(zip(inputs, in_shapes)):
            if len(shape) == 3 and shape[1:] != out_shape[1:]:
                ratio = [shape[1] // out_shape[1], shape[2] // out_shape[2]]
                x = g.node("MaxPool", [x], f"{out}.pool{k}", kernel_shape=ratio, strides=ratio)
            if self.name == "add" and shape[0] != out_shape[0]:
                # ONNX pads: begins for every axis, then ends; only the channel axis (1) ends padded.
                ends = [0, out_shape[0] - shape[0]] + [0] * (len(shape) - 1)
                pads = g.const(f"{out}.pads{k}", np.array([0] * (len(shape) + 1) + ends, np.int64))
                x = g.node("Pad", [x, pads], f"{out}.pad{k}", mode="constant")
            aligned.append(x)
        if self.name == "concat":
            return g.node("Concat", aligned, out, axis=1)
        return g.node("Sum", aligned, out)

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: dict, out_shape: Shape, layer: Any,
                        folded: bool) -> Optional[List[tuple]]:
        ops: List[tuple] = []
        names = []
        nid = node.id
        for k, name in enumerate(srcs):
            shape = shapes[name]
            if len(shape) == 3 and shape[1:] != out_shape[1:]:
                pooled = f"{nid}.pool{k}"
                shapes[pooled] = (shape[0], out_shape[1], out_shape[2])
                ops.append(("pool", pooled, (name,), (shape, shapes[pooled], False)))
                name = pooled
            if self.name == "add" and shape[0] != out_shape[0]:
                padded = f"{nid}.pad{k}"
                shapes[padded] = out_shape
                ops.append(("eltwise", padded, (name,), (elements(shapes[name]) + elements(out_shape),)))
                name = padded
            names.append(name)
        if self.name == "concat":
            ops.append(("concat", nid, tuple(names), (out_shape,)))
        else:
            ops.append(("eltwise", nid, tuple(names), ((len(names) + 1) * elements(out_shape),)))
        return ops


register(Merge("add", "(max C, min H, min W): larger maps max-pooled down by the integer ratio, narrower "
                      "inputs zero-padded in channels"))
register(Merge("concat", "(sum C, min H, min W): larger maps max-pooled down by the integer ratio"))
