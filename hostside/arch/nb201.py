"""NAS-Bench-201's cell-based network as an ArchSpec, from its arch string.

NAS-Bench-201 (Dong & Yang, 2020) fixes a small ResNet-like skeleton and varies one cell,
repeated 15 times: a DAG of 4 nodes where node j is the sum over i < j of op_{j,i}(node i),
each of the 6 edges one of ``NB201_OPS``. Its 15,625 cells come with published accuracies and
measured latencies (``data/nb201/``), which is why hostside builds exactly that network:
a calibration or a search benchmark judged against those tables must cost and export the
same network the tables describe.

The skeleton: stem conv3x3 (``channels``) + BN; three stages of ``cells_per_stage`` cells at
``channels`` x 1, 2, 4; between stages a residual reduction block (ReLU-conv3x3-BN stride 2,
ReLU-conv3x3-BN; shortcut 2x2 average pool stride 2 + conv1x1, no BN, as NB201's
``ResNetBasicblock``); then BN + ReLU, global average pool, linear. Edge ops: ``none`` (no
edge), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU-conv-BN, size
kept), ``avg_pool_3x3`` (stride 1, pad 1, padding not counted).

The spec is the network as it would be *deployed*, not NB201's training graph:

- an edge whose source node receives nothing (all its inputs ``none``), or whose target never
  reaches the cell output, computes nothing the output sees and is left out;
- a skip edge is wiring (the target reads the source tensor), a node with one input needs no
  ``add``, and a ReLU or pooling of the same tensor is computed once per cell, whichever edges
  read it (they are parameter-free and equal);
- a cell with no path from its input to its output (341 of the 15,625) is refused: its output
  is constant, no input reaches the classifier.

Node ids say where a node sits (``s2c3_e1to3_conv3x3``: stage 2, cell 3, the 3x3 conv on the
edge from node 1 to node 3), so weights are inherited by node id between cells that share an
edge op, and a conv whose kernel changes starts fresh rather than from a cropped kernel.

Odd feature-map sizes: the reduction's stride-2 conv rounds up, so its shortcut pool is padded
by one on an odd side (padding not counted) to give the same size; even sides are NB201's
unpadded pool.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from hostside.arch.blocks import SpecBuilder
from hostside.arch.ops.base import SpecError
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError

__all__ = ["NB201_OPS", "EDGES", "parse_arch_str", "format_arch_str", "is_connected", "kept_edges", "nb201_spec"]

NB201_OPS: Tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: (target node, source node) of each edge, in arch-string order.
EDGES: Tuple[Tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_NODES = 4
_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
_CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


def _malformed(arch_str: object, why: str) -> UserError:
    return UserError(f"arch string {arch_str!r} is malformed: {why}; write it as NAS-Bench-201 does, "
                     f"e.g. {_EXAMPLE!r} (ops: {', '.join(NB201_OPS)})")


def parse_arch_str(arch_str: str) -> Tuple[str, ...]:
    """The 6 edge ops of an NB201 arch string, in arch-string order (edges 1<-0, 2<-0, 2<-1,
    3<-0, 3<-1, 3<-2); one UserError line for anything that is not exactly that format."""
    if not isinstance(arch_str, str):
        raise _malformed(arch_str, f"expected a string, got {type(arch_str).__name__}")
    parts = arch_str.strip().split("+")
    if len(parts) != _NODES - 1:
        raise _malformed(arch_str, f"it has {len(parts)} '+'-separated node(s), NB201 cells have {_NODES - 1}")
    ops: List[str] = []
    for target, part in enumerate(parts, start=1):
        if len(part) < 2 or not part.startswith("|") or not part.endswith("|"):
            raise _malformed(arch_str, f"node {target} ({part!r}) must start and end with '|'")
        entries = part[1:-1].split("|")
        if len(entries) != target:
            raise _malformed(arch_str, f"node {target} has {len(entries)} input(s), it needs {target}")
        for source, entry in enumerate(entries):
            op, sep, index = entry.partition("~")
            if not sep or index != str(source):
                raise _malformed(arch_str, f"node {target}'s input {entry!r} must be 'op~{source}'")
            if op not in NB201_OPS:
                raise _malformed(arch_str, f"unknown op {op!r}")
            ops.append(op)
    return tuple(ops)


def _check_ops(ops: Sequence[str]) -> Tuple[str, ...]:
    ops = tuple(ops)
    if len(ops) != len(EDGES) or not all(isinstance(op, str) and op in NB201_OPS for op in ops):
        raise UserError(f"an NB201 cell is {len(EDGES)} edge ops, each one of {', '.join(NB201_OPS)}; got {list(ops)!r}")
    return ops


def format_arch_str(ops: Sequence[str]) -> str:
    """The arch string of 6 edge ops (the inverse of :func:`parse_arch_str`)."""
    ops = _check_ops(ops)
    nodes: List[List[str]] = [[] for _ in range(_NODES - 1)]
    for (target, source), op in zip(EDGES, ops):
        nodes[target - 1].append(f"{op}~{source}")
    return "+".join("|" + "|".join(node) + "|" for node in nodes)


def _receives(ops: Sequence[str]) -> List[bool]:
    """Per node: whether some path of non-``none`` edges reaches it from node 0."""
    live = [True] + [False] * (_NODES - 1)
    for (target, source), op in zip(EDGES, ops):  # EDGES is in topological order of targets
        if op != "none" and live[source]:
            live[target] = True
    return live


def is_connected(ops: Sequence[str]) -> bool:
    """Whether a path of non-``none`` edges leads from the cell input (node 0) to its output (node 3)."""
    return _receives(_check_ops(ops))[_NODES - 1]


def kept_edges(ops: Sequence[str]) -> Tuple[bool, ...]:
    """Per edge (arch-string order): whether the deployed cell computes it, i.e. its op is not
    ``none``, its source receives the input and its target reaches the output."""
    ops = _check_ops(ops)
    live = _receives(ops)
    feeds = [False] * (_NODES - 1) + [True]
    for (target, source), op in reversed(tuple(zip(EDGES, ops))):
        if op != "none" and feeds[target]:
            feeds[source] = True
    return tuple(op != "none" and live[source] and feeds[target] for (target, source), op in zip(EDGES, ops))


def zero_inputs_kept(arch_str: str) -> str:
    """An arch string whose deployed network costs what HW-NAS-Bench's graph of ``arch_str``
    runs: HW-NAS-Bench exports the cell as written, so the edges leaving a node that receives
    only ``none`` edges are still computed, on a zero tensor. Here such a node is wired to node 0
    (a ``skip_connect``: wiring, no operator), so those edges are built and cost what they cost
    there. Compare a latency from that benchmark with this network, not with ``nb201_spec``'s
    default, which leaves dead edges out."""
    ops = list(parse_arch_str(arch_str))
    for node in (1, 2):
        if all(op == "none" for (target, _), op in zip(EDGES, ops) if target == node):
            ops[EDGES.index((node, 0))] = "skip_connect"
    return format_arch_str(ops)


def _positive(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UserError(f"NB201 {name} must be a positive integer, got {value!r}")
    return value


def _cell(b: SpecBuilder, x: str, ops: Tuple[str, ...], kept: Tuple[bool, ...], prefix: str) -> str:
    """One cell on tensor ``x``; returns the id of its output tensor (``x`` itself for a cell
    that is pure wiring)."""
    width = b.channels(x)
    values: Dict[int, str] = {0: x}
    shared: Dict[str, str] = {}  # relu / pooling of a tensor, computed once per cell

    def once(kind: str, source: int, **attrs: object) -> str:
        node_id = f"{prefix}_n{source}_{kind}"
        if node_id not in shared:
            shared[node_id] = b.add(kind, values[source], node_id, **attrs)
        return shared[node_id]

    for target in range(1, _NODES):
        terms: List[str] = []
        for (to, source), op, keep in zip(EDGES, ops, kept):
            if to != target or not keep:
                continue
            if op == "skip_connect":
                terms.append(values[source])
            elif op == "avg_pool_3x3":
                terms.append(once("avgpool", source, kernel=3, stride=1, padding=1, count_include_pad=False))
            else:
                k = _CONV_KERNELS[op]
                edge = f"{prefix}_e{source}to{target}_conv{k}x{k}"
                terms.append(b.conv_bn_act(once("relu", source), width, k, act=None, ids=(edge, f"{edge}_bn")))
        if len(terms) == 1:
            values[target] = terms[0]
        elif terms:
            values[target] = b.add("add", terms, f"{prefix}_n{target}_add")
    return values[_NODES - 1]


def _reduction(b: SpecBuilder, x: str, width: int, prefix: str) -> str:
    """NB201's ResNetBasicblock at stride 2: the residual path and the pooled 1x1 shortcut."""
    y = b.add("relu", x, f"{prefix}_relu_a")
    y = b.conv_bn_act(y, width, 3, stride=2, act=None, ids=(f"{prefix}_conv_a", f"{prefix}_bn_a"))
    y = b.add("relu", y, f"{prefix}_relu_b")
    y = b.conv_bn_act(y, width, 3, act=None, ids=(f"{prefix}_conv_b", f"{prefix}_bn_b"))
    _, height, width_px = b.shape(x)
    shortcut = b.add("avgpool", x, f"{prefix}_pool", kernel=2, stride=2, padding=[height % 2, width_px % 2],
                     count_include_pad=False)
    shortcut = b.add("conv2d", shortcut, f"{prefix}_proj", out_channels=width, kernel=1, bias=False)
    return b.add("add", [y, shortcut], f"{prefix}_add")


def nb201_spec(arch_str: str, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, channels: int = 16,
               cells_per_stage: int = 5) -> ArchSpec:
    """The deployed NB201 network of ``arch_str`` for this input and number of classes.

    Raises one UserError line for a malformed string, a cell with no path from its input to
    its output, or a non-positive ``channels`` / ``cells_per_stage``.
    """
    ops = parse_arch_str(arch_str)
    if not is_connected(ops):
        # A SpecError (a UserError): the network is invalid, and a search skips such a genotype.
        raise SpecError(f"arch {arch_str!r} has no path from the cell input to its output: every path from node 0 "
                        f"to node 3 crosses a 'none' edge, so the output is constant; choose another cell")
    channels = _positive("channels", channels)
    cells_per_stage = _positive("cells_per_stage", cells_per_stage)
    kept = kept_edges(ops)
    b = SpecBuilder(input_shape)
    x = b.conv_bn_act("input", channels, 3, act=None, ids=("stem_conv", "stem_bn"))
    for stage in range(3):
        if stage:
            x = _reduction(b, x, channels * 2 ** stage, f"red{stage}")
        for cell in range(cells_per_stage):
            x = _cell(b, x, ops, kept, f"s{stage + 1}c{cell + 1}")
    x = b.add("relu", b.add("batchnorm", x, "head_bn"), "head_relu")
    x = b.add("flatten", b.add("global_avgpool", x, "head_gap"), "head_flatten")
    b.add("linear", x, "classifier", out_features=_positive("num_classes", num_classes))
    return b.build(num_classes, name=f"nb201 {format_arch_str(ops)}")
