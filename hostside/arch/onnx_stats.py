"""Cost read back from any ONNX file: params, MACs, peak activation memory, op counts.

The search journals ONNX files from our own exporter, but calibration also measures models
written by other tools (torch's TorchScript and dynamo exporters, hand-made graphs), so this
reads the graph itself instead of trusting any naming scheme. The conventions are those of
``hostside.arch.cost`` so that the analytic figures and the read-back can be compared:

- ``params``: elements of the float tensors that feed the weight/bias inputs of parametric
  ops (Conv/ConvTranspose W and B, Gemm and MatMul constant operands and the Gemm C, the
  bias ``Add`` right after such a MatMul, Batch/Instance/Layer/GroupNormalization scale and
  bias, PRelu slope). Batchnorm running mean/var, and constants feeding elementwise maths,
  Pad, Reshape and the like, are not parameters. A tensor counts as constant when it is an
  initializer, a ``Constant`` output, or computed only from constants (so the Transpose /
  Identity / Cast wrappers exporters put around weights are seen through). Parameters are
  counted once per use: torch's TorchScript exporter merges initializers that happen to hold
  equal values (the ones and zeros of a fresh batchnorm), which would otherwise make the
  count depend on the weights' values.
- ``macs``: multiply-accumulates of Conv (output elements x Cin/groups x kernel), ConvTranspose
  (input elements x Cout/groups x kernel, i.e. each input value times each kernel tap it
  scatters to), Gemm and MatMul (M x N x K); nothing for bias adds, pooling, activations or
  elementwise ops. Batch 1: a symbolic batch dimension is set to 1 before shape inference.
- ``activation_bytes``: peak, running the nodes in graph order, of the bytes of the
  non-constant tensors alive at once; the input counts, a tensor dies after its last consumer,
  graph outputs live to the end; element sizes follow each tensor's dtype.

Shapes come from ``onnx.shape_inference`` in strict mode. Subgraph bodies (If/Loop/Scan) are
not costed (a Conv, Gemm or MatMul inside one is refused); the outer tensors they read are kept
alive until their node runs. A graph with an operator of unknown cost (LSTM, a custom-domain
op, ...) is refused with the node's name rather than costed as zero.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence, Set, Tuple, Union

import onnx
from onnx import TensorProto

import hostside.arch.ops  # noqa: F401 - the op modules declare their ONNX types in the table
from hostside.errors import UserError
from hostside.onnx.graph import Dims, Graph, captured_names, known_dims, node_label
from hostside.onnx.graph import read_graph as _read_graph
from hostside.onnx.optypes import DEFAULT_DOMAIN, OPS, names

__all__ = ["Graph", "node_label", "onnx_stats", "read_graph"]

#: Operators with MACs (counted by ``_node_macs``) and those whose MACs are zero by the
#: conventions above; anything else (LSTM/GRU/RNN, Einsum, quantized convs, custom domains,
#: ...) is refused.
_MAC_OPS = names(cost="macs")
_ZERO_MAC_OPS = names(cost="zero")

_DTYPE_BYTES = {
    TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2,
    TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2,
    TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8,
    TensorProto.BOOL: 1, TensorProto.COMPLEX64: 8, TensorProto.COMPLEX128: 16,
}
FLOAT32_BYTES = 4
_FLOAT_DTYPES = frozenset(
    dtype for name, dtype in TensorProto.DataType.items()
    if name.startswith("FLOAT") or name in ("DOUBLE", "BFLOAT16")
)


def read_graph(path: Union[str, Path]) -> Graph:
    """The checked, batch-1 graph of an ONNX file whose every runtime operator this reader
    can cost (the latency features read files through this too, so they accept exactly the
    files ``arch stats`` accepts). Refuses, naming the node, graphs with operators of unknown
    cost (recurrent layers, custom-domain ops, ...): reporting their cost as zero would be a
    wrong answer given without a word."""
    return _read_graph(path, check=_check_costable)


def onnx_stats(path: Union[str, Path]) -> Dict[str, Any]:
    """Cost of the ONNX model at ``path`` for batch 1.

    Returns ``params``, ``macs``, ``activation_bytes``; ``input_name`` and ``input_shape``
    of the first graph input and ``output_shape`` of the first output (without the batch
    dimension; ``[]`` if unknown); ``layers`` (op type -> node count, every node of the main
    graph) and ``per_layer`` (``name``, ``op_type``, ``params``, ``macs``, ``output_shape``
    without batch, for each node that has parameters or MACs, in graph order). Raises
    ``UserError`` naming the file when it is missing, unreadable, not ONNX, damaged, has
    an input whose shape is not fixed apart from the batch, or holds an operator it cannot
    cost (named).
    """
    g = read_graph(path)
    graph, tensors, constants, producers = g.model.graph, g.tensors, g.constants, g.producers
    inputs = g.inputs
    layers: Dict[str, int] = {}
    per_layer: List[Dict[str, Any]] = []
    total_params = total_macs = 0
    for index, node in enumerate(graph.node):
        layers[node.op_type] = layers.get(node.op_type, 0) + 1
        if node.output[0] in constants:
            continue  # folded into a constant by any runtime: no work at inference time
        name = node_label(node, index)
        params = _node_params(path, node, name, tensors, constants, producers)
        macs = _node_macs(path, node, name, tensors)
        if params or macs:
            out_dims = known_dims(path, tensors, node.output[0], name)
            per_layer.append({
                "name": name, "op_type": node.op_type, "params": params, "macs": macs,
                "output_shape": list(out_dims[1:]),
            })
            total_params += params
            total_macs += macs

    input_dims = known_dims(path, tensors, inputs[0].name, "the graph input")
    _, output_dims = tensors.get(graph.output[0].name, (0, None))
    return {
        "params": total_params,
        "macs": total_macs,
        "activation_bytes": _peak_activation_bytes(path, graph, inputs, tensors, constants),
        "input_name": inputs[0].name,
        "input_shape": list(input_dims[1:]),
        "output_shape": list(output_dims[1:]) if output_dims else [],
        "layers": layers,
        "per_layer": per_layer,
    }


def _check_costable(path: Union[str, Path], nodes: Iterable[onnx.NodeProto], constants: Set[str],
                    in_subgraph: bool = False) -> None:
    """UserError naming the first runtime node (subgraph bodies included) whose params or
    MACs this reader does not know how to count. Subgraph bodies are not costed, so a
    MAC-bearing node inside one is refused too."""
    known = _ZERO_MAC_OPS if in_subgraph else _ZERO_MAC_OPS | _MAC_OPS
    for index, node in enumerate(nodes):
        if node.output and node.output[0] in constants:
            continue
        domain = node.domain or DEFAULT_DOMAIN
        if domain != DEFAULT_DOMAIN or node.op_type not in known:
            kind = f"{node.op_type}" if domain == DEFAULT_DOMAIN else f"{node.op_type} (domain {domain!r})"
            raise UserError(
                f"{path}: node {node_label(node, index)!r} is a {kind} operator, whose params and MACs hostside "
                f"cannot count, so its cost would be missing from the totals; hostside costs CNN operators "
                f"(Conv, Gemm, MatMul, pooling, normalisation, element-wise)"
            )
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                _check_costable(path, sub.node, set(), in_subgraph=True)


def _node_params(
    path: Union[str, Path], node: onnx.NodeProto, name: str, tensors: Dict[str, Tuple[int, Dims]],
    constants: Set[str], producers: Dict[str, onnx.NodeProto],
) -> int:
    row = OPS.get(node.op_type)
    positions: Iterable[int] = row.params if row is not None else ()
    if node.op_type == "Add" and _is_bias_add(node, constants, producers):
        positions = (0, 1)
    params = 0
    for position in positions:
        if position < len(node.input) and node.input[position] in constants:
            tensor = node.input[position]
            dtype, _ = tensors.get(tensor, (0, None))
            if dtype in _FLOAT_DTYPES:
                params += _numel(known_dims(path, tensors, tensor, name))
    return params


def _is_bias_add(node: onnx.NodeProto, constants: Set[str], producers: Dict[str, onnx.NodeProto]) -> bool:
    """An Add of a constant to the output of a MatMul by a constant weight: a linear layer's
    bias as exporters write it for inputs of rank > 2."""
    if len(node.input) != 2:
        return False
    for data, other in (node.input, reversed(node.input)):
        producer = producers.get(data)
        if (
            other in constants and data not in constants and producer is not None
            and producer.op_type == "MatMul" and any(name in constants for name in producer.input)
        ):
            return True
    return False


def _node_macs(
    path: Union[str, Path], node: onnx.NodeProto, name: str, tensors: Dict[str, Tuple[int, Dims]]
) -> int:
    op = node.op_type
    if op == "Conv":
        x = known_dims(path, tensors, node.input[0], name)
        w = known_dims(path, tensors, node.input[1], name)
        groups = _int_attr(node, "group", 1)
        if x[1] != w[1] * groups:
            raise UserError(
                f"{path}: Conv node {name!r} gets {x[1]} input channels but its weight expects "
                f"{w[1] * groups} ({w[1]} x group {groups}); the model is inconsistent, re-export it"
            )
        return _numel(known_dims(path, tensors, node.output[0], name)) * _numel(w[1:])
    if op == "ConvTranspose":
        x = known_dims(path, tensors, node.input[0], name)
        w = known_dims(path, tensors, node.input[1], name)
        return _numel(x) * _numel(w[1:])
    if op == "Gemm":
        a = known_dims(path, tensors, node.input[0], name)
        k = a[0] if _int_attr(node, "transA", 0) else a[1]
        return _numel(known_dims(path, tensors, node.output[0], name)) * k
    if op == "MatMul":
        a = known_dims(path, tensors, node.input[0], name)
        return _numel(known_dims(path, tensors, node.output[0], name)) * a[-1]
    return 0


def _peak_activation_bytes(
    path: Union[str, Path], graph: onnx.GraphProto, inputs: Sequence[onnx.ValueInfoProto],
    tensors: Dict[str, Tuple[int, Dims]], constants: Set[str],
) -> int:
    nodes = [node for node in graph.node if node.output[0] not in constants]
    last_use: Dict[str, float] = {}
    for index, node in enumerate(nodes):
        for name in list(node.input) + sorted(captured_names(node)):
            if name and name not in constants:
                last_use[name] = index
    for value in graph.output:
        last_use[value.name] = math.inf

    def size(name: str, owner: str) -> int:
        dtype, _ = tensors.get(name, (0, None))
        return _numel(known_dims(path, tensors, name, owner)) * _DTYPE_BYTES.get(dtype, FLOAT32_BYTES)

    sizes = {value.name: size(value.name, "the graph input") for value in inputs}
    live = peak = sum(sizes.values())
    for index, node in enumerate(nodes):
        name = node.name or node.op_type
        for out in node.output:
            if out:
                sizes[out] = size(out, name)
                live += sizes[out]
        peak = max(peak, live)
        for tensor in set(node.input) | set(node.output) | captured_names(node):
            if tensor in sizes and last_use.get(tensor, index) == index:
                live -= sizes.pop(tensor)
    return peak


def _numel(dims: Sequence[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _int_attr(node: onnx.NodeProto, name: str, default: int) -> int:
    for attr in node.attribute:
        if attr.name == name:
            return int(attr.i)
    return default
