"""An ArchSpec as the neutral operator list the calibration features are computed from.

``hostside.calibration.features`` turns both an ArchSpec and an ONNX file into one list of
neutral operators ``(kind, output id, input ids, payload)`` and computes the latency features
from that list. The ArchSpec side is this walk: the exporter's input normalisation, then each
node's own :meth:`~hostside.arch.ops.base.Op.calibration_ops` (so a new op states its
operators in its own module). Kinds and payloads:

- ``conv``:    (cin, cout, groups, kh, kw, out_shape, deployed params)
- ``linear``:  (fin, fout, deployed params)
- ``act``:     (activation name, shape)
- ``bn``:      (shape, deployed params)
- ``pool``:    (in_shape, out_shape, is_global)
- ``eltwise``: (moved elements,)  -- binary ops, pads, constant scaling
- ``concat``:  (out_shape,)
- ``reshape``: ()
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple

from hostside.arch.ops import REGISTRY
from hostside.arch.ops.base import INPUT, Shape, elements

NeutralOp = Tuple[str, str, Tuple[str, ...], tuple]


def spec_neutral_ops(spec) -> Tuple[List[NeutralOp], Dict[str, Shape]]:
    """(operators, tensor shapes) of an ArchSpec as its exported ONNX graph runs it.

    Runs for every candidate whose latency is predicted, so the loop is flat: one table
    lookup per node for the op's hook, and single-input nodes (most) skip the generator."""
    hooks = _hooks()
    shapes: Dict[str, Shape] = {INPUT: spec.input_shape}
    alias: Dict[str, str] = {INPUT: "norm"}
    n_in = elements(spec.input_shape)
    ops: List[NeutralOp] = [("eltwise", "centred", (INPUT,), (2 * n_in,)),
                            ("eltwise", "norm", ("centred",), (2 * n_in,))]
    shapes["centred"] = shapes["norm"] = spec.input_shape
    folded_convs = spec.folded_convs
    extend = ops.extend
    for node, layer in zip(spec.nodes, spec.cost.layers):
        calibration_ops, folds = hooks[node.op]
        inputs = node.inputs
        srcs = (alias[inputs[0]],) if len(inputs) == 1 else tuple([alias[s] for s in inputs])
        emitted = calibration_ops(node, srcs, shapes, layer[2], layer, folds and inputs[0] in folded_convs)
        nid = node.id
        if emitted is None:
            alias[nid] = srcs[0]
            continue
        alias[nid] = nid
        shapes[nid] = layer[2]
        extend(emitted)
    return ops, shapes


# op name -> (bound calibration_ops, folds_into_producer), rebuilt when an op registers late.
_HOOKS: Dict[str, Tuple[Callable, bool]] = {}


def _hooks() -> Dict[str, Tuple[Callable, bool]]:
    if len(_HOOKS) != len(REGISTRY):
        _HOOKS.clear()
        _HOOKS.update({name: (op.calibration_ops, op.folds_into_producer) for name, op in REGISTRY.items()})
    return _HOOKS
