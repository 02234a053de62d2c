"""The intermediate form every ONNX reader works on: a checked, shape-inferred graph.

What the readers need and the exporters spell differently is settled here once:

- the batch: a symbolic batch dimension is set to 1 before shape inference, so every shape
  is concrete, and a fixed batch of 1 gives the same graph (a fixed batch above 1 is refused:
  the readers' figures are per sample);
- constants: a tensor is constant when it is an initializer, a ``Constant`` output, or
  computed from constants only (the Transpose / Identity / Cast wrappers exporters put around
  weights, the ``Identity`` through which TorchScript shares equal initializers); a runtime
  folds them, so no reader counts them as work. ``value`` gives the numbers of those an
  importer needs (initializers, ``Constant`` outputs and ``Identity`` copies of them);
- shapes: ``onnx.shape_inference`` in strict mode, so an inconsistent file is one line
  instead of a wrong figure.

Operator types are looked up in :mod:`hostside.onnx.optypes`; a reader can refuse a node
before shape inference (``check``), whose messages on unknown operators are vaguer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from hostside.errors import UserError
from hostside.onnx.load import read_model
from hostside.onnx.optypes import names

Dims = Tuple[Optional[int], ...]
#: A reader's check of the nodes, run before shape inference: (path, nodes, constant tensors).
NodeCheck = Callable[[Path, Iterable[onnx.NodeProto], Set[str]], None]

_RANDOM_OPS = names(random=True)


@dataclass(frozen=True)
class Graph:
    """A checked ONNX graph with shapes inferred for batch 1 and the tensors a runtime folds
    into constants (see the module docstring)."""

    path: Path
    model: onnx.ModelProto
    inputs: Tuple[onnx.ValueInfoProto, ...]
    tensors: Dict[str, Tuple[int, Dims]]
    constants: Set[str]
    producers: Dict[str, onnx.NodeProto]
    _values: Dict[str, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    def dims(self, tensor: str, owner: str) -> Tuple[int, ...]:
        """The tensor's static dims (batch 1); UserError naming the node when unknown."""
        return known_dims(self.path, self.tensors, tensor, owner)

    def shape(self, tensor: str) -> Optional[Dims]:
        """The tensor's inferred dims (batch 1, None where unknown); None when not inferred."""
        return self.tensors.get(tensor, (0, None))[1]

    def runtime_nodes(self) -> List[onnx.NodeProto]:
        """The nodes that run at inference time (constant subgraphs are folded away)."""
        return [node for node in self.model.graph.node if node.output[0] not in self.constants]

    def value(self, tensor: str) -> Optional[np.ndarray]:
        """The numbers of a constant tensor (an initializer, a ``Constant`` output or an
        ``Identity`` of one); None for a computed tensor. Needs the graph read with weights."""
        if not self._values:
            self._values.update(_resolve_values(self.model.graph))
        return self._values.get(tensor) if tensor else None


def node_label(node: onnx.NodeProto, index: int = 0) -> str:
    """How messages name a node: its name, else its first output, else op type and position."""
    return node.name or (node.output[0] if node.output else "") or f"{node.op_type}_{index}"


def read_graph(path: Union[str, Path], check: Optional[NodeCheck] = None, weights: bool = False) -> Graph:
    """Load, check and shape-infer an ONNX file; every way it can fail is one UserError line.

    ``check`` refuses, naming the node, what the calling reader cannot handle; ``weights``
    also loads external data (readers that only need shapes skip it).
    """
    path = Path(path)
    model = read_model(path, weights=weights)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = tuple(v for v in graph.input if v.name not in initializers)
    if not inputs:
        raise UserError(f"{path}: the model has no inputs; export it with the network's input as a graph input")
    _check_structure(path, graph, initializers)
    constants = _constant_tensors(graph, initializers)
    if check is not None:
        check(path, graph.node, constants)
    for value in inputs:
        _fix_batch(path, value)
    tensors = _infer(path, model)
    producers = {out: node for node in graph.node for out in node.output if out}
    return Graph(path, model, inputs, tensors, constants, producers)


def network_input(model: onnx.ModelProto, where: Union[str, Path]) -> onnx.ValueInfoProto:
    """The one float32 input of a model hostside feeds dataset images to; one UserError line
    for a model with none, several, or one of another element type (the images are float32)."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if not inputs:
        raise UserError(f"{where}: the model has no inputs; export it with the network's input as a graph input")
    if len(inputs) > 1:
        listed = ", ".join(repr(v.name) for v in inputs)
        raise UserError(f"{where}: the model has {len(inputs)} inputs ({listed}); hostside feeds one image tensor, "
                        f"export the network with a single input")
    value = inputs[0]
    elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
    if elem != TensorProto.FLOAT:
        kind = TensorProto.DataType.Name(elem).lower() if elem in TensorProto.DataType.values() else "not a tensor"
        raise UserError(f"{where}: input {value.name!r} is {kind}; hostside feeds the dataset's float32 images, "
                        f"export the model with a float32 input (scale the values inside the model)")
    return value


def known_dims(path: Union[str, Path], tensors: Dict[str, Tuple[int, Dims]], tensor: str,
               owner: str) -> Tuple[int, ...]:
    """The tensor's dims (a symbolic batch already set to 1); an unknown one ends the read."""
    _, dims = tensors.get(tensor, (0, None))
    if dims is None or any(d is None for d in dims):
        raise UserError(
            f"{path}: cannot infer the shape of tensor {tensor!r} used by {owner!r}; the costs need static "
            f"shapes, re-export the model with a fixed input shape"
        )
    return dims  # type: ignore[return-value]


def captured_names(node: onnx.NodeProto) -> Set[str]:
    """Names a node's subgraphs (If/Loop/Scan bodies) read from the enclosing graph."""
    found: Set[str] = set()
    for attr in node.attribute:
        subgraphs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
        for sub in subgraphs:
            local = {t.name for t in sub.initializer} | {v.name for v in sub.input}
            for inner in sub.node:
                found.update(n for n in inner.input if n and n not in local)
                found.update(captured_names(inner) - local)
                local.update(inner.output)
    return found


def _check_structure(path: Path, graph: onnx.GraphProto, initializers: Set[str]) -> None:
    """What the readers rely on and a truncated or damaged file breaks: an output, nodes
    with an op type and outputs, and every input defined before its node (graph order is
    topological, so a walk in graph order is the execution order)."""
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


def _fix_batch(path: Path, value: onnx.ValueInfoProto) -> None:
    """Set a symbolic batch dimension to 1 so every shape inferred downstream is concrete;
    any other unknown dimension leaves the figures undefined."""
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


def _infer(path: Path, model: onnx.ModelProto) -> Dict[str, Tuple[int, Dims]]:
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
            and node.op_type not in _RANDOM_OPS
            and all(name in constants for name in data_inputs)
            and not captured_names(node)
        ):
            constants.update(out for out in node.output if out)
    return constants


def _resolve_values(graph: onnx.GraphProto) -> Dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = _constant_value(node)
            if value is not None:
                values[node.output[0]] = value
        elif node.op_type == "Identity" and node.input and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _constant_value(node: onnx.NodeProto) -> Optional[np.ndarray]:
    """The numbers a ``Constant`` node holds (None for a string or sparse constant)."""
    for attr in node.attribute:
        if attr.name == "value":
            return numpy_helper.to_array(attr.t)
        if attr.name in ("value_float", "value_floats"):
            return np.array(onnx.helper.get_attribute_value(attr), dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.array(onnx.helper.get_attribute_value(attr), dtype=np.int64)
    return None
