"""Analytic cost of an ArchSpec, computed without building anything.

Conventions (held to the torch module and the exported ONNX file by the tests):

- ``params``: trainable parameters exactly as ``sum(p.numel() for p in module.parameters())``.
- ``deployed_params``: parameters left after export, where a batchnorm whose input is a conv
  used by nothing else is folded into that conv (the conv gains a bias if it had none); any
  other batchnorm keeps its scale and shift. Equals the float weight/bias elements of the
  exported ONNX file.
- ``macs``: multiply-accumulates of conv and linear layers only (MLPerf Tiny convention:
  no bias adds, pooling, activations or normalisation).
- ``n_mult``: multiplications in convolution layers per inference (the N_mult of CGP-based
  NAS with approximate multipliers): the MACs of conv-like ops (``conv_multiplications``).
- ``activation_bytes``: peak, for batch 1 in float32, of the sum of the node outputs alive
  at once when the nodes run in order; the input counts; a tensor dies after its last use.
- ``weight_bytes``: deployed parameters stored at fp32 / fp16 / int8 (int8 weights with
  int32 biases, as quantised runtimes store them).

The shape and cost rule of each op lives with the op (``hostside.arch.ops``, ``Op.infer``);
this module walks the graph. It runs in the pre-training filter for every candidate, so the
loop is kept flat and allocation-light (one table lookup per node, shape-preserving ops on a
fast path); see ``benchmarks/cost_model.py``.
"""

from __future__ import annotations

from operator import itemgetter
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from hostside.arch.ops import REGISTRY
from hostside.arch.ops.base import FLOAT32_BYTES, INPUT, Shape
from hostside.arch.ops.merge import merge_shape

if TYPE_CHECKING:
    from hostside.arch.spec import ArchSpec

__all__ = ["FLOAT32_BYTES", "Shape", "LayerCost", "Cost", "analyze", "merge_shape"]


class LayerCost(tuple):
    """Cost of one node; ``output_shape`` excludes the batch dimension.

    A tuple (id, op, output_shape, params, deployed_params, macs) with named fields: the
    latency features read the layers of every candidate judged, and a tuple is built from the
    cost model's rows at C speed (``Cost.layers``).
    """

    __slots__ = ()

    def __new__(cls, id: str, op: str, output_shape: Shape, params: int, deployed_params: int,
                macs: int) -> "LayerCost":
        return tuple.__new__(cls, (id, op, output_shape, params, deployed_params, macs))

    def __getnewargs__(self) -> tuple:  # copy / deepcopy (a torch module that holds its spec)
        return tuple(self)

    id = property(itemgetter(0))
    op = property(itemgetter(1))
    output_shape = property(itemgetter(2))
    params = property(itemgetter(3))
    deployed_params = property(itemgetter(4))
    macs = property(itemgetter(5))

    @property
    def output_bytes(self) -> int:
        n = FLOAT32_BYTES
        for d in self[2]:
            n *= d
        return n

    def to_dict(self) -> Dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "deployed_params": self.deployed_params,
            "macs": self.macs,
            "output_bytes": self.output_bytes,
        }


class Cost:
    """Totals and the per-layer breakdown of one ArchSpec."""

    __slots__ = (
        "output_shape", "params", "deployed_params", "deployed_biases", "macs", "n_mult",
        "activation_bytes", "input_bytes", "_rows", "_layers",
    )

    def __init__(self, output_shape: Shape, params: int, deployed_params: int, deployed_biases: int,
                 macs: int, n_mult: int, activation_bytes: int, input_bytes: int, rows: List[tuple]):
        self.output_shape = output_shape
        self.params = params
        self.deployed_params = deployed_params
        self.deployed_biases = deployed_biases
        self.macs = macs
        self.n_mult = n_mult
        self.activation_bytes = activation_bytes
        self.input_bytes = input_bytes
        # Per-layer objects are built on first access: the filter only needs the totals.
        self._rows = rows
        self._layers: Optional[List[LayerCost]] = None

    @property
    def layers(self) -> List[LayerCost]:
        if self._layers is None:
            make = tuple.__new__
            self._layers = [make(LayerCost, row) for row in self._rows]
        return self._layers

    @property
    def weight_bytes(self) -> Dict[str, int]:
        weights = self.deployed_params - self.deployed_biases
        return {
            "fp32": 4 * self.deployed_params,
            "fp16": 2 * self.deployed_params,
            "int8": weights + 4 * self.deployed_biases,
        }

    def layer_counts(self) -> Dict[str, int]:
        counts: Dict[str, int] = {}
        for row in self._rows:
            counts[row[1]] = counts.get(row[1], 0) + 1
        return counts

    def to_dict(self, per_layer: bool = True) -> Dict[str, Any]:
        data: Dict[str, Any] = {
            "params": self.params,
            "deployed_params": self.deployed_params,
            "macs": self.macs,
            "n_mult": self.n_mult,
            "activation_bytes": self.activation_bytes,
            "weight_bytes": self.weight_bytes,
            "output_shape": list(self.output_shape),
            "layers": self.layer_counts(),
        }
        if per_layer:
            data["per_layer"] = [layer.to_dict() for layer in self.layers]
        return data


# op name -> its bound ``infer`` (None for shape-preserving ops), and the ops counted in n_mult.
_RULES: Dict[str, Optional[Callable]] = {}
_CONV_OPS: frozenset = frozenset()


def _tables() -> Tuple[Dict[str, Optional[Callable]], frozenset]:
    global _CONV_OPS
    if len(_RULES) != len(REGISTRY):
        _RULES.clear()
        _RULES.update({name: None if op.shape_preserving else op.infer for name, op in REGISTRY.items()})
        _CONV_OPS = frozenset(name for name, op in REGISTRY.items() if op.conv_multiplications)
    return _RULES, _CONV_OPS


def analyze(spec: "ArchSpec") -> Cost:
    """Shapes and cost of every node; raises SpecError naming a node whose shapes do not fit."""
    rules, conv_ops = _tables()
    folded = spec.folded_convs
    shapes: Dict[str, Shape] = {INPUT: spec.input_shape}
    c0, h0, w0 = spec.input_shape
    input_bytes = c0 * h0 * w0 * FLOAT32_BYTES
    sizes: Dict[str, int] = {INPUT: input_bytes}
    live = peak = input_bytes
    total_params = total_deployed = total_biases = total_macs = n_mult = 0
    layers: List[tuple] = []
    append = layers.append

    for node, frees in zip(spec.nodes, spec.frees):
        op = node.op
        nid = node.id
        rule = rules[op]
        if rule is None:
            src = node.inputs[0]
            out = shapes[src]
            size = sizes[src]
            append((nid, op, out, 0, 0, 0))
        else:
            out, params, deployed, biases, macs = rule(node, shapes, folded)
            append((nid, op, out, params, deployed, macs))
            total_params += params
            total_deployed += deployed
            total_biases += biases
            if macs:
                total_macs += macs
                if op in conv_ops:
                    n_mult += macs
            if len(out) == 3:
                size = out[0] * out[1] * out[2] * FLOAT32_BYTES
            else:
                size = FLOAT32_BYTES
                for d in out:
                    size *= d
        shapes[nid] = out
        sizes[nid] = size
        live += size
        if live > peak:
            peak = live
        for s in frees:
            live -= sizes[s]

    return Cost(shapes[spec.output], total_params, total_deployed, total_biases, total_macs, n_mult,
                peak, input_bytes, layers)
