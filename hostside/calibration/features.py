"""One feature definition for latency prediction, read from an ArchSpec or from any ONNX file.

Why kernel-level features and not just MACs and params: on a CPU runtime a small network's
latency is a sum over the kernels it launches, and kernels differ a lot in cost per MAC.
A 1x1 conv is a plain GEMM, a 3x3 conv adds an im2col copy, a depthwise conv run as
per-group GEMMs pays per group, a batch-1 linear layer reads every weight once, an ELU costs
an exp per element while a ReLU after a conv is fused into it, and every operator has a fixed
launch cost. So the vector counts operators and splits MACs and bytes by kernel kind, as
kernel-level predictors (nn-Meter) do.

onnxruntime on x86 also rewrites most convs into its blocked NCHWc layout: channels are padded
to the SIMD block (8 with AVX2, 16 with AVX-512), eligible activations, pools and adds stay
blocked, and reorder operators are inserted where the layout changes. With ``nchwc_block``
> 0 the features follow those rules (padded MACs, reorder bytes); with 0 (ARM boards, other
runtimes) every conv is a GEMM. The calibration picks the block size that fits its board by
cross-validation and records it.

Both readers first turn the network into one neutral operator list, as the exported ONNX
graph runs it (the exporter's input normalisation, folded batchnorms gone, SiLU as x *
Sigmoid(x), the max-pool / zero-pad alignment that merges insert), and one function computes
the features from that list. So the features of an ArchSpec equal those of the ONNX file
exported from it (tests hold them to it).

Units: counts, ``*_macs`` in multiply-accumulates, ``*_bytes`` in bytes at float32,
``*_elems`` in tensor elements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from hostside.arch.spec import INPUT, ArchSpec
from hostside.errors import UserError

#: Bumped whenever a feature is added, removed or computed differently: a calibration file
#: fitted on another feature set must not be used to predict with this one.
FEATURE_SET = "hostside.kernel-features/3"
NCHWC_BLOCKS = (0, 8, 16)

#: (name, unit, meaning) of each feature, in vector order.
FEATURES: Tuple[Tuple[str, str, str], ...] = (
    ("macs", "macs", "multiply-accumulates of conv and linear layers"),
    ("params", "params", "deployed parameters (batchnorms folded into convs)"),
    ("ops", "count", "operators executed, layout reorders included (fixed per-operator cost)"),
    ("conv_count", "count", "conv operators"),
    ("nchwc_conv_macs", "macs", "MACs of blocked-layout convs, channels padded to the block"),
    ("nchwc_plain_input_macs", "macs", "MACs of blocked-layout convs that read a plain-layout input with fewer "
                                       "channels than the block (a slower kernel)"),
    ("nchwc_depthwise_macs", "macs", "MACs of blocked-layout depthwise convs, channels padded"),
    ("gemm_pointwise_macs", "macs", "MACs of 1x1 convs run as GEMMs"),
    ("gemm_conv_macs", "macs", "MACs of larger convs run as im2col + GEMM (grouped ones per group)"),
    ("im2col_bytes", "bytes", "bytes the im2col copies of those convs write"),
    ("group_count", "count", "groups of grouped convs run as GEMMs (one small GEMM each)"),
    ("linear_macs", "macs", "MACs of fully connected layers (batch 1: one pass over the weights)"),
    ("conv_output_bytes", "bytes", "bytes of the feature maps convs write"),
    ("reorder_bytes", "bytes", "bytes converted between the plain and the blocked layout"),
    ("cheap_eltwise_bytes", "bytes", "bytes read and written by unfused cheap element-wise operators"),
    ("transcendental_elems", "elems", "elements through exp/tanh-like activations"),
    ("pool_bytes", "bytes", "bytes of the feature maps pooling operators read"),
    ("concat_bytes", "bytes", "bytes read and written by concatenations"),
)
FEATURE_NAMES: Tuple[str, ...] = tuple(name for name, _, _ in FEATURES)
# Vector positions as module constants: the feature loop runs for every candidate judged.
(
    _F_MACS, _F_PARAMS, _F_OPS, _F_CONV_COUNT, _F_NCHWC_CONV_MACS, _F_NCHWC_PLAIN_INPUT_MACS, _F_NCHWC_DEPTHWISE_MACS,
    _F_GEMM_POINTWISE_MACS, _F_GEMM_CONV_MACS, _F_IM2COL_BYTES, _F_GROUP_COUNT, _F_LINEAR_MACS,
    _F_CONV_OUTPUT_BYTES, _F_REORDER_BYTES, _F_CHEAP_ELTWISE_BYTES, _F_TRANSCENDENTAL_ELEMS,
    _F_POOL_BYTES, _F_CONCAT_BYTES,
) = range(len(FEATURES))
_F32 = 4

# Activations onnxruntime fuses into the conv that feeds them (FusedConv / NCHWc conv).
_FUSED_ANY = frozenset({"relu", "relu6", "sigmoid", "tanh"})
_FUSED_NCHWC = _FUSED_ANY | {"hardswish"}
_CHEAP_ACTS = frozenset({"relu", "relu6"})
# Activations whose NCHWc kernels do not exist: the tensor goes back to the plain layout.
_PLAIN_ONLY_ACTS = frozenset({"elu", "selu"})

# Neutral operator tuples: (kind, output id, input ids, payload)
#   conv:    (cin, cout, groups, kh, kw, out_shape, params)
#   linear:  (fin, fout, params)
#   act:     (activation name, shape)
#   bn:      (shape, params)
#   pool:    (in_shape, out_shape)
#   eltwise: (moved elements,)   -- binary ops, pads, constant scaling
#   concat:  (out_shape,)
#   reshape: ()
Op = Tuple[str, str, Tuple[str, ...], tuple]


def _elems(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _up(channels: int, block: int) -> int:
    return -(-channels // block) * block


def _features(ops: List[Op], shapes: Dict[str, Tuple[int, ...]], block: int) -> List[float]:
    """The feature vector of a neutral operator list (see the module docstring)."""
    v = [0.0] * len(FEATURE_NAMES)
    consumers: Dict[str, int] = {}
    for _, _, inputs, _ in ops:
        for name in inputs:
            consumers[name] = consumers.get(name, 0) + 1
    blocked: Dict[str, bool] = {}
    conv_outputs: Dict[str, bool] = {}  # conv output id -> ran blocked

    def to_plain(name: str) -> None:
        if blocked.get(name):
            v[_F_OPS] += 1
            v[_F_REORDER_BYTES] += _elems(shapes[name]) * _F32
            blocked[name] = False

    for kind, out, inputs, p in ops:
        if kind == "conv":
            cin, cout, groups, kh, kw, out_shape, params = p
            src = inputs[0]
            hw = out_shape[1] * out_shape[2]
            macs = cout * (cin // groups) * kh * kw * hw
            v[_F_MACS] += macs
            v[_F_PARAMS] += params
            v[_F_OPS] += 1
            v[_F_CONV_COUNT] += 1
            v[_F_CONV_OUTPUT_BYTES] += _elems(out_shape) * _F32
            depthwise = groups == cin == cout
            if block == 0:
                use_block = False
            elif groups == 1:
                use_block = cin < block or cin % 4 == 0 or bool(blocked.get(src))
            else:
                use_block = depthwise and cin % 4 == 0
            if use_block:
                if groups == 1:
                    if not blocked.get(src) and cin >= block:
                        v[_F_OPS] += 1  # ReorderInput
                        v[_F_REORDER_BYTES] += _elems(shapes[src]) * _F32
                    if cin >= block or blocked.get(src):
                        cin_eff = _up(cin, block) if cin >= block else cin
                        v[_F_NCHWC_CONV_MACS] += _up(cout, block) * cin_eff * kh * kw * hw
                    else:  # the kernel that reads a plain-layout input with few channels
                        v[_F_NCHWC_PLAIN_INPUT_MACS] += _up(cout, block) * cin * kh * kw * hw
                else:
                    if not blocked.get(src):
                        v[_F_OPS] += 1
                        v[_F_REORDER_BYTES] += _elems(shapes[src]) * _F32
                    v[_F_NCHWC_DEPTHWISE_MACS] += _up(cout, block) * kh * kw * hw
                blocked[out] = True
            else:
                to_plain(src)
                if groups > 1:
                    v[_F_GROUP_COUNT] += groups
                if kh * kw == 1:
                    v[_F_GEMM_POINTWISE_MACS] += macs
                else:
                    v[_F_GEMM_CONV_MACS] += macs
                    v[_F_IM2COL_BYTES] += cin * kh * kw * hw * _F32
                blocked[out] = False
            conv_outputs[out] = blocked[out]
        elif kind == "act":
            act, shape = p
            src = inputs[0]
            fusable = _FUSED_NCHWC if conv_outputs.get(src) else _FUSED_ANY
            if src in conv_outputs and consumers.get(src) == 1 and act in fusable:
                blocked[out] = blocked.get(src, False)
                if act not in _CHEAP_ACTS:
                    v[_F_TRANSCENDENTAL_ELEMS] += _elems(shape)
                continue
            if act in _PLAIN_ONLY_ACTS:
                to_plain(src)
            blocked[out] = blocked.get(src, False)
            v[_F_OPS] += 1
            if act in _CHEAP_ACTS:
                v[_F_CHEAP_ELTWISE_BYTES] += 2 * _elems(shape) * _F32
            else:
                v[_F_TRANSCENDENTAL_ELEMS] += _elems(shape)
        elif kind == "linear":
            fin, fout, params = p
            to_plain(inputs[0])
            v[_F_MACS] += fin * fout
            v[_F_PARAMS] += params
            v[_F_OPS] += 1
            v[_F_LINEAR_MACS] += fin * fout
        elif kind == "bn":
            shape, params = p
            v[_F_PARAMS] += params
            v[_F_OPS] += 1
            v[_F_CHEAP_ELTWISE_BYTES] += 2 * _elems(shape) * _F32
            blocked[out] = blocked.get(inputs[0], False)
        elif kind == "pool":
            in_shape, out_shape = p
            src = inputs[0]
            if blocked.get(src) and in_shape[0] % max(block, 1):
                to_plain(src)
            blocked[out] = blocked.get(src, False)
            v[_F_OPS] += 1
            v[_F_POOL_BYTES] += _elems(in_shape) * _F32
        elif kind == "eltwise":
            if len(inputs) > 1 and all(blocked.get(s) for s in inputs):
                blocked[out] = True
                if len(inputs) == 2 and any(conv_outputs.get(s) and consumers.get(s) == 1 for s in inputs):
                    conv_outputs[out] = True  # a residual add fused into the blocked conv
                    continue
            else:
                for s in inputs:
                    to_plain(s)
                blocked[out] = False
            v[_F_OPS] += 1
            v[_F_CHEAP_ELTWISE_BYTES] += p[0] * _F32
        elif kind == "concat":
            keep = block > 0 and all(blocked.get(s) and shapes[s][0] % block == 0 for s in inputs)
            if not keep:
                for s in inputs:
                    to_plain(s)
            blocked[out] = keep
            v[_F_OPS] += 1
            v[_F_CONCAT_BYTES] += 2 * _elems(p[0]) * _F32
        else:  # reshape
            to_plain(inputs[0])
            blocked[out] = False
            v[_F_OPS] += 1
    return v


# -- ArchSpec -> neutral operators -----------------------------------------------------------

def _spec_ops(spec: ArchSpec) -> Tuple[List[Op], Dict[str, Tuple[int, ...]]]:
    shapes: Dict[str, Tuple[int, ...]] = {INPUT: spec.input_shape}
    alias: Dict[str, str] = {INPUT: "norm"}
    n_in = _elems(spec.input_shape)
    ops: List[Op] = [("eltwise", "centred", (INPUT,), (2 * n_in,)), ("eltwise", "norm", ("centred",), (2 * n_in,))]
    shapes["centred"] = shapes["norm"] = spec.input_shape
    folded = spec.folded_convs
    for node, layer in zip(spec.nodes, spec.cost.layers):
        op, nid, out = node.op, node.id, layer.output_shape
        src = alias[node.inputs[0]]
        in_shape = shapes[src]
        if op in ("dropout", "identity") or (op == "batchnorm" and node.inputs[0] in folded):
            alias[nid] = src
            continue
        alias[nid] = nid
        shapes[nid] = out
        if op == "conv2d":
            a = node.attrs
            ops.append(("conv", nid, (src,), (in_shape[0], a["out_channels"], a["groups"], a["kernel"][0],
                                              a["kernel"][1], out, layer.deployed_params)))
        elif op == "linear":
            ops.append(("linear", nid, (src,), (in_shape[0], node.attrs["out_features"], layer.deployed_params)))
        elif op == "batchnorm":
            ops.append(("bn", nid, (src,), (out, layer.deployed_params)))
        elif op in ("maxpool", "avgpool", "global_avgpool"):
            ops.append(("pool", nid, (src,), (in_shape, out)))
        elif op == "flatten":
            ops.append(("reshape", nid, (src,), ()))
        elif op in ("add", "concat"):
            srcs = []
            for k, raw in enumerate(node.inputs):
                name = alias[raw]
                shape = shapes[name]
                if len(shape) == 3 and shape[1:] != out[1:]:
                    pooled = f"{nid}.pool{k}"
                    shapes[pooled] = (shape[0], out[1], out[2])
                    ops.append(("pool", pooled, (name,), (shape, shapes[pooled])))
                    name = pooled
                if op == "add" and shape[0] != out[0]:
                    padded = f"{nid}.pad{k}"
                    shapes[padded] = out
                    ops.append(("eltwise", padded, (name,), (_elems(shapes[name]) + _elems(out),)))
                    name = padded
                srcs.append(name)
            if op == "concat":
                ops.append(("concat", nid, tuple(srcs), (out,)))
            else:
                ops.append(("eltwise", nid, tuple(srcs), ((len(srcs) + 1) * _elems(out),)))
        else:
            ops.append(("act", nid, (src,), (op, out)))
    return ops, shapes


def spec_features(spec: ArchSpec, nchwc_block: int = 0) -> List[float]:
    """The feature vector of an ArchSpec, from its analytic shapes (tens of microseconds)."""
    ops, shapes = _spec_ops(spec)
    return _features(ops, shapes, nchwc_block)


def features_matrix(specs: Sequence[ArchSpec], nchwc_block: int = 0) -> np.ndarray:
    """Feature vectors of many specs as an (N, F) float64 array."""
    rows = [spec_features(s, nchwc_block) for s in specs]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


# -- ONNX -> neutral operators ---------------------------------------------------------------

_ONNX_ACTS = {"Relu": "relu", "Clip": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Elu": "elu",
              "Selu": "selu", "HardSwish": "hardswish"}
_ONNX_POOLS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"})
_ONNX_RESHAPES = frozenset({"Flatten", "Reshape", "Squeeze", "Unsqueeze"})
_ONNX_SKIPPED = frozenset({"Identity", "Dropout"})


def _onnx_ops(path: Path) -> Tuple[List[Op], Dict[str, Tuple[int, ...]]]:
    import onnx
    from onnx import shape_inference

    try:
        model = shape_inference.infer_shapes(onnx.load(str(path)))
    except Exception as exc:  # onnx raises DecodeError, ValidationError, InferenceError, OSError
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
                        f"export it again or check the path") from None
    graph = model.graph
    inits = {t.name: tuple(t.dims) for t in graph.initializer}
    shapes: Dict[str, Tuple[int, ...]] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        # The batch axis (symbolic or not) is dropped: the features describe batch-1 runs.
        shapes[value.name] = tuple(d.dim_value for d in dims[1:])

    def shape(name: str) -> Tuple[int, ...]:
        found = shapes.get(name)
        if found is None or any(d <= 0 for d in found):
            raise UserError(f"{path}: the shape of tensor {name!r} is unknown; export the model with "
                            f"static shapes (the batch axis may stay symbolic)")
        return found

    producers = {out: node for node in graph.node for out in node.output}
    users: Dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    alias: Dict[str, str] = {}
    swallowed: set = set()  # Sigmoid nodes that are the inner half of a SiLU
    for node in graph.node:
        if node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input
            for x, s in ((a, b), (b, a)):
                sig = producers.get(s)
                if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and users.get(s) == 1:
                    swallowed.add(sig.output[0])

    ops: List[Op] = []
    for node in graph.node:
        op = node.op_type
        out = node.output[0]
        data = tuple(alias.get(n, n) for n in node.input if n and n not in inits)
        if op in _ONNX_SKIPPED:
            alias[out] = data[0]
            continue
        if op == "Sigmoid" and out in swallowed:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        out_shape = shape(out)
        if op == "Conv":
            w = inits.get(node.input[1]) or shape(node.input[1])
            groups = int(attrs.get("group", 1))
            params = _elems(w) + (w[0] if len(node.input) > 2 and node.input[2] else 0)
            ops.append(("conv", out, data[:1], (shape(data[0])[0], w[0], groups, w[2], w[3], out_shape, params)))
        elif op == "Gemm" or (op == "MatMul" and node.input[1] in inits):
            w = inits[node.input[1]]
            fin, fout = (w[1], w[0]) if op == "Gemm" and attrs.get("transB", 0) else (w[0], w[1])
            has_bias = op == "Gemm" and len(node.input) > 2 and bool(node.input[2])
            ops.append(("linear", out, data[:1], (fin, fout, fin * fout + (fout if has_bias else 0))))
        elif op == "BatchNormalization":
            ops.append(("bn", out, data[:1], (out_shape, 2 * out_shape[0])))
        elif op in _ONNX_POOLS:
            ops.append(("pool", out, data[:1], (shape(data[0]), out_shape)))
        elif op in _ONNX_RESHAPES:
            ops.append(("reshape", out, data[:1], ()))
        elif op == "Concat":
            ops.append(("concat", out, data, (out_shape,)))
        elif op in _ONNX_ACTS:
            ops.append(("act", out, data[:1], (_ONNX_ACTS[op], out_shape)))
        elif op == "Mul" and any(n in swallowed for n in node.input):
            x = next(n for n in node.input if n not in swallowed)
            ops.append(("act", out, (alias.get(x, x),), ("silu", out_shape)))
        else:  # Sum/Add/Sub/Mul/Pad and anything else element-wise-like
            moved = sum(_elems(shape(n)) for n in data) + _elems(out_shape)
            ops.append(("eltwise", out, data, (moved,)))
    return ops, shapes


def onnx_features(path: Union[str, Path], nchwc_block: int = 0) -> List[float]:
    """The feature vector of an ONNX file (batch taken as 1), read from its graph.

    Raises UserError naming the file when it is not a readable ONNX model with known shapes.
    """
    ops, shapes = _onnx_ops(Path(path))
    return _features(ops, shapes, nchwc_block)
