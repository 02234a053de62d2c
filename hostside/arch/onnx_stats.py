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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from hostside.errors import UserError

Dims = Tuple[Optional[int], ...]

# Input positions that hold a layer's weights or biases, per op type.
_PARAM_INPUTS: Dict[str, Tuple[int, ...]] = {
    "Conv": (1, 2),
    "ConvTranspose": (1, 2),
    "Gemm": (0, 1, 2),
    "MatMul": (0, 1),
    "BatchNormalization": (1, 2),
    "InstanceNormalization": (1, 2),
    "LayerNormalization": (1, 2),
    "GroupNormalization": (1, 2),
    "PRelu": (1,),
}
# Ops whose output differs between runs even with constant inputs: never folded.
_NONDETERMINISTIC = frozenset(
    {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}
)
_DTYPE_BYTES = {
    TensorProto.FLOAT: 4, TensorProto.DOUBLE: 8, TensorProto.FLOAT16: 2, TensorProto.BFLOAT16: 2,
    TensorProto.INT8: 1, TensorProto.UINT8: 1, TensorProto.INT16: 2, TensorProto.UINT16: 2,
    TensorProto.INT32: 4, TensorProto.UINT32: 4, TensorProto.INT64: 8, TensorProto.UINT64: 8,
    TensorProto.BOOL: 1, TensorProto.COMPLEX64: 8, TensorProto.COMPLEX128: 16,
}
_FLOAT_DTYPES = frozenset(
    dtype for name, dtype in TensorProto.DataType.items()
    if name.startswith("FLOAT") or name in ("DOUBLE", "BFLOAT16")
)
FLOAT32_BYTES = 4
#: Operators with MACs (counted by ``_node_macs``).
_MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
#: Operators whose MACs are zero by the conventions above (element-wise maths, pooling,
#: normalisation, data movement, shape arithmetic) and whose parameters, if any, are counted.
#: Anything else (LSTM/GRU/RNN, Einsum, quantized convs, custom domains, ...) is refused.
_ZERO_MAC_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
    "AveragePool", "BatchNormalization", "BitShift", "Cast", "CastLike", "Ceil", "Celu", "Clip",
    "Compress", "Concat", "Constant", "ConstantOfShape", "Cos", "Cosh", "CumSum", "DepthToSpace",
    "Div", "Dropout", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather",
    "GatherElements", "GatherND", "Gelu", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool",
    "Greater", "GreaterOrEqual", "GroupNormalization", "HardSigmoid", "HardSwish", "Hardmax",
    "Identity", "If", "InstanceNormalization", "IsInf", "IsNaN", "LRN", "LayerNormalization",
    "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LpNormalization", "LpPool",
    "Max", "MaxPool", "Mean", "Min", "Mish", "Mod", "Mul", "Neg", "NonZero", "Not", "OneHot", "Or",
    "PRelu", "Pad", "Pow", "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
    "ReduceSumSquare", "Relu", "Reshape", "Resize", "Round", "Scan", "ScatterElements", "ScatterND",
    "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice", "Softmax",
    "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})


@dataclass(frozen=True)
class Graph:
    """A checked ONNX graph with everything a cost reader needs: shapes inferred for batch 1
    and the tensors a runtime folds into constants. The latency features read files through
    this too, so they accept exactly the files ``arch stats`` accepts."""

    path: Path
    model: onnx.ModelProto
    inputs: Tuple[onnx.ValueInfoProto, ...]
    tensors: Dict[str, Tuple[int, Dims]]
    constants: Set[str]
    producers: Dict[str, onnx.NodeProto]

    def dims(self, tensor: str, owner: str) -> Tuple[int, ...]:
        """The tensor's static dims (batch 1); UserError naming the node when unknown."""
        return _known_dims(self.path, self.tensors, tensor, owner)

    def runtime_nodes(self) -> List[onnx.NodeProto]:
        """The nodes that run at inference time (constant subgraphs are folded away)."""
        return [node for node in self.model.graph.node if node.output[0] not in self.constants]


def node_label(node: onnx.NodeProto, index: int = 0) -> str:
    return node.name or node.output[0] or f"{node.op_type}_{index}"


def read_graph(path: Union[str, Path]) -> Graph:
    """Load, check and shape-infer an ONNX file; every way it can fail is one UserError line.

    Refuses graphs with operators whose cost this reader does not know (recurrent layers,
    custom-domain ops, ...), naming the node: reporting their cost as zero would be a wrong
    answer given without a word.
    """
    path = Path(path)
    model = _load(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(v for v in graph.input if v.name not in initializers)
    if not inputs:
        raise UserError(f"{path}: the model has no inputs; export it with the network's input as a graph input")
    _check_structure(path, graph, initializers)
    constants = _constant_tensors(graph, initializers)
    # Before the shape checks and inference: those fail on unknown ops with vaguer messages.
    _check_costable(path, graph.node, constants)
    for value in inputs:
        _fix_batch(path, value)
    tensors = _infer(path, model)
    producers = {out: node for node in graph.node for out in node.output if out}
    return Graph(path, model, inputs, tensors, constants, producers)


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
            out_dims = _known_dims(path, tensors, node.output[0], name)
            per_layer.append({
                "name": name, "op_type": node.op_type, "params": params, "macs": macs,
                "output_shape": list(out_dims[1:]),
            })
            total_params += params
            total_macs += macs

    input_dims = _known_dims(path, tensors, inputs[0].name, "the graph input")
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
        domain = node.domain or "ai.onnx"
        if domain != "ai.onnx" or node.op_type not in known:
            kind = f"{node.op_type}" if domain == "ai.onnx" else f"{node.op_type} (domain {domain!r})"
            raise UserError(
                f"{path}: node {node_label(node, index)!r} is a {kind} operator, whose params and MACs hostside "
                f"cannot count, so its cost would be missing from the totals; hostside costs CNN operators "
                f"(Conv, Gemm, MatMul, pooling, normalisation, element-wise)"
            )
        for attr in node.attribute:
            for sub in list(attr.graphs) + ([attr.g] if attr.HasField("g") else []):
                _check_costable(path, sub.node, set(), in_subgraph=True)


def _load(path: Path) -> onnx.ModelProto:
    """Parse the file, turning every way it can fail into one line that names it.

    External weight files are not read: only their shapes matter here.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the path of an .onnx file") from None
    except OSError as exc:
        raise UserError(
            f"{path}: cannot read the file ({exc.strerror}); check the path and the file's permissions"
        ) from None
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as exc:
        raise UserError(
            f"{path}: not a readable ONNX model ({exc}); the file is corrupt, truncated or not ONNX, re-export it"
        ) from None
    if model.ir_version <= 0 or not model.opset_import or not model.graph.node:
        raise UserError(
            f"{path}: not an ONNX model (no IR version, opset or graph nodes); "
            f"the file is empty, truncated or of another format, re-export it"
        )
    return model


def _check_structure(path: Union[str, Path], graph: onnx.GraphProto, initializers: Set[str]) -> None:
    """What the costing relies on and a truncated or damaged file breaks: an output, nodes
    with an op type and outputs, and every input defined before its node (graph order is
    topological, so the liveness walk below is the execution order)."""
    if not graph.output:
        raise UserError(f"{path}: the graph has no outputs; the file is damaged, re-export it")
    defined = set(initializers) | {v.name for v in graph.input} | {""}
    for index, node in enumerate(graph.node):
        label = node.name or node.op_type or f"number {index}"
        if not node.op_type or not any(node.output):
            raise UserError(f"{path}: node {label!r} has no op type or no outputs; the file is damaged, re-export it")
        for name in node.input:
            if name not in defined:
                raise UserError(
                    f"{path}: node {label!r} reads {name!r}, which no earlier node, input or initializer "
                    f"defines; the file is corrupt or not topologically sorted, re-export it"
                )
        defined.update(node.output)


def _fix_batch(path: Union[str, Path], value: onnx.ValueInfoProto) -> None:
    """Set a symbolic batch dimension to 1 so every shape inferred downstream is concrete;
    any other unknown dimension leaves the costs undefined."""
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        raise UserError(
            f"{path}: input {value.name!r} has no shape; export the model with a fixed input shape"
        )
    dims = tensor_type.shape.dim
    if not dims:
        raise UserError(f"{path}: input {value.name!r} is a scalar; a network input needs a batch dimension")
    batch = dims[0]
    if batch.HasField("dim_value") and batch.dim_value > 1:
        raise UserError(
            f"{path}: input {value.name!r} has a fixed batch size of {batch.dim_value}; the costs are per "
            f"sample, re-export the model with batch 1 or a dynamic batch axis"
        )
    if not batch.HasField("dim_value"):
        batch.Clear()
        batch.dim_value = 1
    for position, dim in enumerate(dims[1:], start=1):
        if not dim.HasField("dim_value"):
            label = repr(dim.dim_param) if dim.dim_param else "unknown"
            raise UserError(
                f"{path}: input {value.name!r} has a {label} dimension at position {position}; "
                f"only the batch may be dynamic, re-export the model with a fixed input shape"
            )


def _infer(path: Union[str, Path], model: onnx.ModelProto) -> Dict[str, Tuple[int, Dims]]:
    """Name -> (element type, dims) for every tensor whose type is known after inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError, ValueError) as exc:
        # ValueError: onnx's own message for a tensor type it does not know (a corrupt file).
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: the model is inconsistent ({first_line}); re-export it") from None
    graph = inferred.graph
    tensors: Dict[str, Tuple[int, Dims]] = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
            tensor_type = value.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
            if dims and dims[0] is None:
                dims = (1,) + dims[1:]
            tensors[value.name] = (tensor_type.elem_type, dims)
    for init in graph.initializer:
        tensors[init.name] = (init.data_type, tuple(init.dims))
    return tensors


def _constant_tensors(graph: onnx.GraphProto, initializers: Set[str]) -> Set[str]:
    """Tensors whose value is fixed before the first input arrives: what a runtime folds."""
    constants = set(initializers)
    for node in graph.node:
        data_inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (
            data_inputs
            and node.op_type not in _NONDETERMINISTIC
            and all(name in constants for name in data_inputs)
            and not _captured_names(node)
        ):
            constants.update(out for out in node.output if out)
    return constants


def _node_params(
    path: Union[str, Path], node: onnx.NodeProto, name: str, tensors: Dict[str, Tuple[int, Dims]],
    constants: Set[str], producers: Dict[str, onnx.NodeProto],
) -> int:
    positions: Iterable[int] = _PARAM_INPUTS.get(node.op_type, ())
    if node.op_type == "Add" and _is_bias_add(node, constants, producers):
        positions = (0, 1)
    params = 0
    for position in positions:
        if position < len(node.input) and node.input[position] in constants:
            tensor = node.input[position]
            dtype, _ = tensors.get(tensor, (0, None))
            if dtype in _FLOAT_DTYPES:
                params += _numel(_known_dims(path, tensors, tensor, name))
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
        x = _known_dims(path, tensors, node.input[0], name)
        w = _known_dims(path, tensors, node.input[1], name)
        groups = _int_attr(node, "group", 1)
        if x[1] != w[1] * groups:
            raise UserError(
                f"{path}: Conv node {name!r} gets {x[1]} input channels but its weight expects "
                f"{w[1] * groups} ({w[1]} x group {groups}); the model is inconsistent, re-export it"
            )
        return _numel(_known_dims(path, tensors, node.output[0], name)) * _numel(w[1:])
    if op == "ConvTranspose":
        x = _known_dims(path, tensors, node.input[0], name)
        w = _known_dims(path, tensors, node.input[1], name)
        return _numel(x) * _numel(w[1:])
    if op == "Gemm":
        a = _known_dims(path, tensors, node.input[0], name)
        k = a[0] if _int_attr(node, "transA", 0) else a[1]
        return _numel(_known_dims(path, tensors, node.output[0], name)) * k
    if op == "MatMul":
        a = _known_dims(path, tensors, node.input[0], name)
        return _numel(_known_dims(path, tensors, node.output[0], name)) * a[-1]
    return 0


def _peak_activation_bytes(
    path: Union[str, Path], graph: onnx.GraphProto, inputs: Sequence[onnx.ValueInfoProto],
    tensors: Dict[str, Tuple[int, Dims]], constants: Set[str],
) -> int:
    nodes = [node for node in graph.node if node.output[0] not in constants]
    last_use: Dict[str, float] = {}
    for index, node in enumerate(nodes):
        for name in list(node.input) + sorted(_captured_names(node)):
            if name and name not in constants:
                last_use[name] = index
    for value in graph.output:
        last_use[value.name] = math.inf

    def size(name: str, owner: str) -> int:
        dtype, _ = tensors.get(name, (0, None))
        return _numel(_known_dims(path, tensors, name, owner)) * _DTYPE_BYTES.get(dtype, FLOAT32_BYTES)

    sizes = {value.name: size(value.name, "the graph input") for value in inputs}
    live = peak = sum(sizes.values())
    for index, node in enumerate(nodes):
        name = node.name or node.op_type
        for out in node.output:
            if out:
                sizes[out] = size(out, name)
                live += sizes[out]
        peak = max(peak, live)
        for tensor in set(node.input) | set(node.output) | _captured_names(node):
            if tensor in sizes and last_use.get(tensor, index) == index:
                live -= sizes.pop(tensor)
    return peak


def _captured_names(node: onnx.NodeProto) -> Set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing graph."""
    names: Set[str] = set()
    for attr in node.attribute:
        subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for sub in subgraphs:
            local = {t.name for t in sub.initializer} | {v.name for v in sub.input}
            for inner in sub.node:
                names.update(n for n in inner.input if n and n not in local)
                names.update(_captured_names(inner) - local)
                local.update(inner.output)
    return names


def _known_dims(
    path: Union[str, Path], tensors: Dict[str, Tuple[int, Dims]], tensor: str, owner: str
) -> Tuple[int, ...]:
    """The tensor's dims (a symbolic batch already set to 1); an unknown one ends the read."""
    _, dims = tensors.get(tensor, (0, None))
    if dims is None or any(d is None for d in dims):
        raise UserError(
            f"{path}: cannot infer the shape of tensor {tensor!r} used by {owner!r}; the costs need static "
            f"shapes, re-export the model with a fixed input shape"
        )
    return dims  # type: ignore[return-value]


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
