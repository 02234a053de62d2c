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
blocked, and reorder operators are inserted where the layout changes. Which of these rules
apply is data: one ``rules.RuleSet`` per runtime and instruction set (the x86 ones block 8 or
16; ARM and TFLite ones no blocked layout, every conv a GEMM, their own fused activations).
A calibration picks the rule set of its board (on x86 the block size by cross-validation) and
records it. The rules were checked against onnxruntime's per-operator
profiles (``SessionOptions.enable_profiling``) of hand-written MobileNet, ResNet and
inception-style networks: a conv with fewer input channels than the block reads the plain
layout (so a blocked input is reordered back first, once per tensor, while the blocked copy
stays for other consumers such as a fused residual add), its 1x1 form runs at less than half
the speed per MAC of its larger kernels, windowed pools reorder a plain aligned input into the
blocked layout while plain-layout pools cost several times more per byte, only ReLU is
applied inside the conv kernel (other fused activations pass over the output again), and
ELU/SELU compute exp element by element, several times slower per element than the
vectorised sigmoid and tanh.

Both readers first turn the network into one neutral operator list, as the exported ONNX
graph runs it (the exporter's input normalisation, folded batchnorms gone, SiLU as x *
Sigmoid(x), the max-pool / zero-pad alignment that merges insert), and one function computes
the features from that list. So the features of an ArchSpec equal those of the ONNX file
exported from it (tests hold them to it).

Units: counts, ``*_macs`` in multiply-accumulates, ``*_bytes`` in bytes at float32,
``*_elems`` in tensor elements.
"""

from __future__ import annotations

import bisect
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.calibration.rules import RuleLike, rule_set
from hostside.errors import UserError
from hostside.onnx.optypes import names, op_type

#: Bumped whenever a feature is added, removed or computed differently: a calibration file
#: fitted on another feature set must not be used to predict with this one.
FEATURE_SET = "hostside.kernel-features/5"
NCHWC_BLOCKS = (0, 8, 16)

#: (name, unit, meaning) of each feature, in vector order.
_KERNEL_TOTALS: Tuple[Tuple[str, str, str], ...] = (
    ("macs", "macs", "multiply-accumulates of conv and linear layers"),
    ("params", "params", "deployed parameters (batchnorms folded into convs)"),
    ("ops", "count", "operators executed, layout reorders included (fixed per-operator cost)"),
    ("conv_count", "count", "conv operators"),
    ("nchwc_conv_macs", "macs", "MACs of blocked-layout convs, channels padded to the block"),
    ("nchwc_plain_input_macs", "macs", "MACs of blocked-layout convs larger than 1x1 that read a plain-layout "
                                       "input with fewer channels than the block, output channels padded"),
    ("nchwc_plain_input_pointwise_macs", "macs", "MACs of 1x1 blocked-layout convs that read a plain-layout input "
                                                 "with fewer channels than the block, output channels padded"),
    ("nchwc_depthwise_macs", "macs", "MACs of blocked-layout depthwise convs, channels padded"),
    ("gemm_pointwise_macs", "macs", "MACs of 1x1 convs run as GEMMs"),
    ("gemm_conv_macs", "macs", "MACs of larger convs run as im2col + GEMM (grouped ones per group)"),
    ("im2col_bytes", "bytes", "bytes the im2col copies of those convs write"),
    ("group_count", "count", "groups of grouped convs run as GEMMs (one small GEMM each)"),
    ("linear_macs", "macs", "MACs of fully connected layers (batch 1: one pass over the weights), outputs "
                            "padded to the SIMD block"),
    ("conv_output_bytes", "bytes", "bytes of the feature maps convs write"),
    ("reorder_input_bytes", "bytes", "bytes converted from the plain into the blocked layout"),
    ("reorder_output_bytes", "bytes", "bytes converted from the blocked back into the plain layout"),
    ("fused_activation_bytes", "bytes", "bytes of conv outputs a fused activation other than ReLU passes over"),
    ("cheap_eltwise_bytes", "bytes", "bytes read and written by unfused cheap element-wise operators"),
    ("transcendental_elems", "elems", "elements through vectorised exp/tanh-like activations (sigmoid, tanh, "
                                      "SiLU)"),
    ("scalar_exp_elems", "elems", "elements through ELU/SELU, whose kernels compute exp element by element"),
    ("pool_bytes", "bytes", "bytes of the feature maps blocked-layout pooling operators read"),
    ("plain_pool_bytes", "bytes", "bytes of the feature maps plain-layout pooling operators read"),
    ("concat_bytes", "bytes", "bytes read and written by concatenations"),
)
#: Per-kernel size classes (log10 of one kernel's MACs): small GEMMs run at a fraction of the
#: speed per MAC of large ones, so each MAC feature is also split by kernel size, each kernel's
#: MACs shared linearly between the two nearest classes (a piecewise-linear efficiency curve per
#: kernel type, fitted like every other cost). Sizes outside the range go to the end classes.
SIZE_CLASSES_LOG10_MACS = (3.5, 4.5, 5.5, 6.5, 7.5)
SIZED_FEATURES = ("nchwc_conv_macs", "nchwc_plain_input_macs", "nchwc_plain_input_pointwise_macs",
                  "nchwc_depthwise_macs", "gemm_pointwise_macs", "gemm_conv_macs", "linear_macs")
FEATURES: Tuple[Tuple[str, str, str], ...] = _KERNEL_TOTALS + tuple(
    (f"{name}_size{c:g}", "macs", f"{name} of kernels of about 10^{c:g} MACs each (shared with the neighbouring "
                                  f"size classes)")
    for name in SIZED_FEATURES for c in SIZE_CLASSES_LOG10_MACS)
FEATURE_NAMES: Tuple[str, ...] = tuple(name for name, _, _ in FEATURES)
# Vector positions as module constants: the feature loop runs for every candidate judged.
(
    _F_MACS, _F_PARAMS, _F_OPS, _F_CONV_COUNT, _F_NCHWC_CONV_MACS, _F_NCHWC_PLAIN_INPUT_MACS,
    _F_NCHWC_PLAIN_INPUT_POINTWISE_MACS, _F_NCHWC_DEPTHWISE_MACS, _F_GEMM_POINTWISE_MACS, _F_GEMM_CONV_MACS,
    _F_IM2COL_BYTES, _F_GROUP_COUNT, _F_LINEAR_MACS, _F_CONV_OUTPUT_BYTES, _F_REORDER_INPUT_BYTES,
    _F_REORDER_OUTPUT_BYTES, _F_FUSED_ACTIVATION_BYTES, _F_CHEAP_ELTWISE_BYTES, _F_TRANSCENDENTAL_ELEMS,
    _F_SCALAR_EXP_ELEMS, _F_POOL_BYTES, _F_PLAIN_POOL_BYTES, _F_CONCAT_BYTES,
) = range(len(_KERNEL_TOTALS))
_SIZED_INDEX = {FEATURE_NAMES.index(name): k for k, name in enumerate(SIZED_FEATURES)}
_F32 = 4

_CHEAP_ACTS = frozenset({"relu", "relu6"})
# Hard-swish has no exp: fused it is one more pass over the output, unfused onnxruntime runs it
# as HardSigmoid and Mul (two cheap operators).
_PIECEWISE_ACTS = _CHEAP_ACTS | {"hardswish"}
# Activations whose kernels compute exp element by element.
_SCALAR_EXP_ACTS = frozenset({"elu", "selu"})

# Neutral operator tuples: (kind, output id, input ids, payload)
#   conv:    (cin, cout, groups, kh, kw, out_shape, params)
#   linear:  (fin, fout, params)
#   act:     (activation name, shape)
#   bn:      (shape, params)
#   pool:    (in_shape, out_shape, is_global)
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


def _features(ops: List[Op], shapes: Dict[str, Tuple[int, ...]], rules: RuleLike,
              kernels: Optional[List[Tuple[int, float]]] = None) -> List[float]:
    """The feature vector of a neutral operator list under one runtime rule set (see the
    module docstring and ``rules``); with ``kernels`` a list, each conv and linear kernel is
    appended as (feature index, MACs).

    Layouts are tracked as copies, as onnxruntime's NCHWc transformer keeps them: a tensor
    has a plain copy, a blocked copy or both, and each conversion runs once per tensor
    however many consumers read the converted copy.
    """
    rules = rule_set(rules)
    block = rules.block
    v = [0.0] * len(_KERNEL_TOTALS)
    consumers: Dict[str, int] = {}
    for _, _, inputs, _ in ops:
        for name in inputs:
            consumers[name] = consumers.get(name, 0) + 1
    plain: set = set()  # blocked tensors that also have a plain-layout copy (graph inputs are plain)
    blocked: set = set()  # tensors with a blocked-layout copy
    conv_outputs: Dict[str, bool] = {}  # conv output id -> ran blocked

    kernels = [] if kernels is None else kernels

    def mac(index: int, amount: float) -> None:
        v[index] += amount
        kernels.append((index, amount))

    def convert(name: str, to_blocked: bool) -> None:
        have = blocked if to_blocked else plain
        if name not in have and (to_blocked or name in blocked):
            v[_F_OPS] += 1  # ReorderInput / ReorderOutput
            v[_F_REORDER_INPUT_BYTES if to_blocked else _F_REORDER_OUTPUT_BYTES] += _elems(shapes[name]) * _F32
            have.add(name)

    def emit(name: str, in_blocked: bool) -> None:
        if in_blocked:
            blocked.add(name)

    for kind, out, inputs, p in ops:
        src = inputs[0] if inputs else ""
        if kind == "conv":
            cin, cout, groups, kh, kw, out_shape, params = p
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
                use_block = cin < block or cin % 4 == 0 or src in blocked
            else:
                use_block = depthwise and cin % 4 == 0
            if use_block and groups == 1 and cin < block:
                # The kernel that reads a plain-layout input with few channels; per input
                # channel and tap it loops over output blocks, so 1x1 kernels run it at a
                # fraction of the speed of larger ones.
                convert(src, to_blocked=False)
                padded = _up(cout, block) * cin * kh * kw * hw
                mac(_F_NCHWC_PLAIN_INPUT_MACS if kh * kw > 1 else _F_NCHWC_PLAIN_INPUT_POINTWISE_MACS, padded)
            elif use_block and groups == 1:
                convert(src, to_blocked=True)
                mac(_F_NCHWC_CONV_MACS, _up(cout, block) * _up(cin, block) * kh * kw * hw)
            elif use_block:
                convert(src, to_blocked=True)
                mac(_F_NCHWC_DEPTHWISE_MACS, _up(cout, block) * kh * kw * hw)
            else:
                convert(src, to_blocked=False)
                if groups > 1:
                    v[_F_GROUP_COUNT] += groups
                if kh * kw == 1:
                    mac(_F_GEMM_POINTWISE_MACS, macs)
                else:
                    mac(_F_GEMM_CONV_MACS, macs)
                    v[_F_IM2COL_BYTES] += cin * kh * kw * hw * _F32
            emit(out, use_block)
            conv_outputs[out] = use_block
        elif kind == "act":
            act, shape = p
            fusable = rules.fused_activations_blocked if conv_outputs.get(src) else rules.fused_activations
            if src in conv_outputs and consumers.get(src) == 1 and act in fusable:
                emit(out, src in blocked)
                if act not in rules.in_kernel_activations:
                    # Only some activations (onnxruntime: ReLU) are applied inside the conv
                    # kernel; other fused activations make a second pass over the output.
                    v[_F_FUSED_ACTIVATION_BYTES] += _elems(shape) * _F32
                if act not in _PIECEWISE_ACTS:
                    v[_F_TRANSCENDENTAL_ELEMS] += _elems(shape)
                continue
            run_blocked = src in blocked and act not in rules.plain_only_activations
            if not run_blocked:
                convert(src, to_blocked=False)
            emit(out, run_blocked)
            v[_F_OPS] += 1
            if act in _CHEAP_ACTS:
                v[_F_CHEAP_ELTWISE_BYTES] += 2 * _elems(shape) * _F32
            elif act == "hardswish":
                v[_F_OPS] += 1
                v[_F_CHEAP_ELTWISE_BYTES] += 5 * _elems(shape) * _F32
            elif act in _SCALAR_EXP_ACTS:
                v[_F_SCALAR_EXP_ELEMS] += _elems(shape)
            else:
                v[_F_TRANSCENDENTAL_ELEMS] += _elems(shape)
        elif kind == "linear":
            fin, fout, params = p
            convert(src, to_blocked=False)
            v[_F_MACS] += fin * fout
            v[_F_PARAMS] += params
            v[_F_OPS] += 1
            # The GEMM kernel computes whole SIMD vectors of outputs: a 10-way classifier
            # costs as much as a 16-way one where vectors hold 16 floats (the block).
            mac(_F_LINEAR_MACS, fin * (_up(fout, block) if block and rules.pad_linear_outputs else fout))
        elif kind == "bn":
            shape, params = p
            v[_F_PARAMS] += params
            v[_F_OPS] += 1
            v[_F_CHEAP_ELTWISE_BYTES] += 2 * _elems(shape) * _F32
            emit(out, src in blocked)
        elif kind == "pool":
            in_shape, out_shape, is_global = p
            aligned = block > 0 and in_shape[0] % block == 0
            # Windowed pools are rewritten to the blocked layout (reordering a plain input);
            # global ones only stay blocked when their input already is.
            run_blocked = aligned and (src in blocked or not is_global)
            convert(src, to_blocked=run_blocked)
            emit(out, run_blocked)
            v[_F_OPS] += 1
            v[_F_POOL_BYTES if run_blocked else _F_PLAIN_POOL_BYTES] += _elems(in_shape) * _F32
        elif kind == "eltwise":
            if len(inputs) > 1 and all(s in blocked for s in inputs):
                emit(out, True)
                fused = any(conv_outputs.get(s) and consumers.get(s) == 1 for s in inputs)
                if rules.fuse_residual_add and len(inputs) == 2 and fused:
                    conv_outputs[out] = True  # a residual add fused into the blocked conv
                    continue
            else:
                for s in inputs:
                    convert(s, to_blocked=False)
                emit(out, False)
            v[_F_OPS] += 1
            v[_F_CHEAP_ELTWISE_BYTES] += p[0] * _F32
        elif kind == "concat":
            keep = block > 0 and all(s in blocked and shapes[s][0] % block == 0 for s in inputs)
            if not keep:
                for s in inputs:
                    convert(s, to_blocked=False)
            emit(out, keep)
            v[_F_OPS] += 1
            v[_F_CONCAT_BYTES] += 2 * _elems(p[0]) * _F32
        else:  # reshape
            convert(src, to_blocked=False)
            emit(out, False)
            v[_F_OPS] += 1
    return v[:len(_KERNEL_TOTALS)] + _size_classes(kernels)


def _size_classes(kernels: List[Tuple[int, float]]) -> List[float]:
    """The ``<feature>_size<c>`` block of the vector from the (feature index, MACs) kernels
    (plain floats, no numpy: this runs for every candidate judged). Networks repeat kernel
    sizes, so each size's (class, share) is looked up once (``_SHARES``)."""
    n = len(SIZE_CLASSES_LOG10_MACS)
    out = [0.0] * (len(SIZED_FEATURES) * n)
    shares = _SHARES
    for index, amount in kernels:
        if amount <= 0:
            continue
        found = shares.get(amount)
        if found is None:
            found = _share(amount)
        j, t = found
        row = _SIZED_INDEX[index] * n + j
        out[row] += amount * (1.0 - t)
        out[row + 1] += amount * t
    return out


# kernel MACs -> (lower size class, share of the upper one); bounded, cleared when full.
_SHARES: Dict[float, Tuple[int, float]] = {}
_SHARES_MAX = 1 << 16


def _share(amount: float) -> Tuple[int, float]:
    n = len(SIZE_CLASSES_LOG10_MACS)
    first, last = SIZE_CLASSES_LOG10_MACS[0], SIZE_CLASSES_LOG10_MACS[-1]
    position = min(max(math.log10(amount), first), last)
    j = min(bisect.bisect_right(SIZE_CLASSES_LOG10_MACS, position) - 1, n - 2)
    t = (position - SIZE_CLASSES_LOG10_MACS[j]) / (SIZE_CLASSES_LOG10_MACS[j + 1] - SIZE_CLASSES_LOG10_MACS[j])
    if len(_SHARES) >= _SHARES_MAX:
        _SHARES.clear()
    _SHARES[amount] = (j, t)
    return j, t


def spec_features(spec: ArchSpec, rules: RuleLike = 0) -> List[float]:
    """The feature vector of an ArchSpec under a runtime rule set (a ``RuleSet``, its name or
    an x86 NCHWc block size), from its analytic shapes (tens of microseconds)."""
    from hostside.arch.ops.neutral import spec_neutral_ops  # each op states its operators in its module

    ops, shapes = spec_neutral_ops(spec)
    return _features(ops, shapes, rules)


def features_matrix(specs: Sequence[ArchSpec], rules: RuleLike = 0) -> np.ndarray:
    """Feature vectors of many specs as an (N, F) float64 array."""
    rules = rule_set(rules)
    rows = [spec_features(s, rules) for s in specs]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))


# -- ONNX -> neutral operators ---------------------------------------------------------------

#: Operators that only compute shapes: with a symbolic batch axis onnxruntime cannot fold them,
#: but they run on a handful of integers, so they are left out like constants.
_ONNX_SHAPE_OPS = names(shape_math=True)


def _shape_tensors(nodes: Sequence, constants: set) -> set:
    """Tensors computed from ``Shape`` outputs and constants only (shape arithmetic)."""
    derived: set = set()
    for node in nodes:
        data = [n for n in node.input if n and n not in constants]
        if node.op_type == "Shape" or (
                data and node.op_type in _ONNX_SHAPE_OPS and all(n in derived for n in data)):
            derived.update(o for o in node.output if o)
    return derived


def _onnx_ops(path: Path) -> Tuple[List[Op], Dict[str, Tuple[int, ...]]]:
    """The neutral operator list of an ONNX file, read through ``arch stats``' graph reader
    (so Identity-wrapped and shared initializers, Constant nodes and shape inputs are seen
    as the constants they are), each node's kind taken from the operator table
    (``hostside.onnx.optypes``). UserError naming the node for an operator the latency
    model has no kernel for."""
    from hostside.arch.onnx_stats import node_label, read_graph

    g = read_graph(path)
    nodes = g.runtime_nodes()
    skip = _shape_tensors(nodes, g.constants)
    constants = g.constants | skip
    shapes: Dict[str, Tuple[int, ...]] = {}

    def shape(name: str, owner: str) -> Tuple[int, ...]:
        if name not in shapes:
            # The batch axis is dropped: the features describe batch-1 runs.
            shapes[name] = tuple(g.dims(name, owner)[1:])
        return shapes[name]

    def refuse(node, label: str, why: str) -> UserError:
        return UserError(f"{path}: node {label!r} ({node.op_type}) {why}; the latency model cannot judge this "
                         f"file (it knows the operators of the calibration suite: convs, linear layers, pooling, "
                         f"batchnorm, activations, add and concat)")

    users: Dict[str, int] = {}
    for node in nodes:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    producers = {out: node for node in nodes for out in node.output if out}
    swallowed: set = set()  # Sigmoid outputs that are the inner half of a SiLU
    bias_adds: Dict[str, str] = {}  # Add output -> the MatMul output whose bias it adds
    for node in nodes:
        if node.op_type == "Mul" and len(node.input) == 2:
            a, b = node.input
            for x, sig_out in ((a, b), (b, a)):
                sig = producers.get(sig_out)
                if sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == x and users.get(sig_out) == 1:
                    swallowed.add(sig_out)
        if node.op_type == "Add" and len(node.input) == 2:
            for data, other in (node.input, tuple(reversed(node.input))):
                mm = producers.get(data)
                if (other in constants and mm is not None and mm.op_type == "MatMul" and users.get(data) == 1
                        and mm.input[1] in g.constants):
                    bias_adds[node.output[0]] = data

    alias: Dict[str, str] = {}
    bias_of = {mm: add for add, mm in bias_adds.items()}
    ops: List[Op] = []
    for index, node in enumerate(nodes):
        op, out = node.op_type, node.output[0]
        if out in skip:
            continue
        label = node_label(node, index)
        data = tuple(alias.get(n, n) for n in node.input if n and n not in constants)
        if not data:
            raise refuse(node, label, "reads no network tensor")
        row = op_type(node)
        kind = row.neutral if row is not None else None
        if kind == "skip":
            alias[out] = data[0]
            continue
        if out in bias_adds:
            alias[out] = alias.get(bias_adds[out], bias_adds[out])
            continue
        if op == "Sigmoid" and out in swallowed:
            continue
        if kind is None:
            never = "is an operator the calibration suite never measured"
            raise refuse(node, label, row.refusal if row is not None and row.refusal else never)
        attrs = {a.name: onnx_attribute(a) for a in node.attribute}
        out_shape = shape(out, label)
        if kind == "conv":
            if node.input[1] not in g.constants:
                raise refuse(node, label, "has a weight computed at run time")
            w = g.dims(node.input[1], label)
            if len(w) != 4:
                raise refuse(node, label, f"is a {len(w) - 2}-D convolution")
            bias = g.dims(node.input[2], label)[0] if len(node.input) > 2 and node.input[2] else 0
            groups = int(attrs.get("group", 1))
            ops.append(("conv", out, data[:1], (shape(data[0], label)[0], w[0], groups, w[2], w[3], out_shape,
                                                _elems(w) + bias)))
        elif kind == "linear":
            if len(data) != 1 or node.input[1] not in g.constants or node.input[0] in g.constants:
                raise refuse(node, label, "multiplies two run-time tensors")
            x_shape = shape(data[0], label)
            if len(x_shape) != 1:
                raise refuse(node, label, f"multiplies a rank-{len(x_shape) + 1} tensor (expected a flattened "
                                          f"batch of vectors)")
            w = g.dims(node.input[1], label)
            fin, fout = (w[1], w[0]) if op == "Gemm" and attrs.get("transB", 0) else (w[0], w[1])
            if op == "Gemm":
                bias = fout if len(node.input) > 2 and node.input[2] else 0
            else:
                bias = fout if out in bias_of else 0
            ops.append(("linear", out, data[:1], (fin, fout, fin * fout + bias)))
        elif kind == "bn":
            ops.append(("bn", out, data[:1], (out_shape, 2 * out_shape[0])))
        elif kind == "pool":
            ops.append(("pool", out, data[:1], (shape(data[0], label), out_shape, op.startswith("Global"))))
        elif kind == "global_reduce":
            in_shape = shape(data[0], label)
            if len(in_shape) != 3 or out_shape[:1] != in_shape[:1] or _elems(out_shape) != in_shape[0]:
                raise refuse(node, label, "reduces other axes than a global pool does")
            # torch's dynamo exporter writes adaptive_avg_pool2d(x, 1) this way
            ops.append(("pool", out, data[:1], (in_shape, out_shape, True)))
        elif kind == "reshape":
            ops.append(("reshape", out, data[:1], ()))
        elif kind == "concat":
            ops.append(("concat", out, data, (out_shape,)))
        elif kind == "act":
            ops.append(("act", out, data[:1], (row.activation, out_shape)))
        elif op == "Mul" and any(n in swallowed for n in node.input):
            x = next(n for n in node.input if n not in swallowed)
            ops.append(("act", out, (alias.get(x, x),), ("silu", out_shape)))
        else:  # eltwise
            moved = sum(_elems(shape(n, label)) for n in data) + _elems(out_shape)
            ops.append(("eltwise", out, data, (moved,)))
    return ops, shapes


def onnx_attribute(attr):
    import onnx

    return onnx.helper.get_attribute_value(attr)


def onnx_features(path: Union[str, Path], rules: RuleLike = 0) -> List[float]:
    """The feature vector of an ONNX file (batch taken as 1), read from its graph.

    Raises UserError naming the file when it is not a readable ONNX model with known shapes.
    """
    ops, shapes = _onnx_ops(Path(path))
    return _features(ops, shapes, rules)
