"""ONNX file -> ArchSpec + trained weights, so a model trained elsewhere can seed a search.

``import_onnx`` walks the graph once in its (topological) order and maps every ONNX node onto
an ArchSpec op, carrying the initializers over as weights in torch's layout, keyed
``"<node id>/<tensor>"`` as :mod:`hostside.arch.weights` expects (node ids are the ONNX
node names with ``/`` turned into ``.``). What torch's exporters
write for the networks this project knows is covered:

- ``Conv`` (a bias when the file has one: torch's constant folding merges a batchnorm into
  the conv before it, and that conv comes back as a conv with bias), ``BatchNormalization``,
  ``Gemm`` and ``MatMul`` (+ ``Add`` of a constant bias) as linear layers, the pools, global
  average pooling (also as ``ReduceMean`` over H and W), ``Flatten`` (also as a ``Reshape`` or
  ``Squeeze`` that flattens), ``Add``/``Sum``, ``Concat`` on channels, the activations of
  ArchSpec (``Clip(0, 6)`` is relu6, ``x * Sigmoid(x)`` is silu);
- ``Identity``, inference-time ``Dropout`` and a final ``Softmax``/``LogSoftmax`` (which do not
  change the predicted class) disappear;
- a leading ``Sub``/``Div``/``Mul`` by per-channel constants on the graph input (how
  ``hostside.arch.export`` puts the normalisation inside the file) becomes the recorded input
  normalisation ``input/mean`` / ``input/std``; a file without one takes raw values (mean 0,
  std 1), and training from these weights keeps that normalisation.

The file is read through :mod:`hostside.onnx` (so a fixed batch of 1 reads as a symbolic one,
external data is loaded, and constants written as ``Constant`` nodes or shared through
``Identity`` are plain constants); the operator types with an ArchSpec equivalent are the
``arch`` column of :mod:`hostside.onnx.optypes`. A type mapped onto a registered op that has
no ``op_<Type>`` handler here (``Relu``, ``HardSwish``, an op module's own row such as
``LeakyRelu``) becomes a node of that op, whose ``from_onnx`` reads the node's attributes.

Anything else (an op ArchSpec lacks, an attribute it cannot express such as asymmetric
padding or ``ceil_mode``, an ``Add`` that would broadcast) is one ``UserError`` naming the
node, never a silently different network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple, Union

import numpy as np

from hostside.arch.ops import REGISTRY, Op
from hostside.arch.ops.base import float32_decimal
from hostside.arch.spec import INPUT, ArchSpec, SpecError
from hostside.errors import UserError
from hostside.onnx.graph import Graph, read_graph
from hostside.onnx.optypes import OPS, op_type

#: Keys of the recorded input normalisation inside a weights file.
MEAN_KEY = "input/mean"
STD_KEY = "input/std"

#: The ONNX operator types with an ArchSpec equivalent (the ``arch`` column of the table).
SUPPORTED_OPS = tuple(sorted(row.name for row in OPS.values() if row.arch))


@dataclass
class ImportedModel:
    """The network as an ArchSpec, its weights (torch layout, float32) and what was dropped."""

    spec: ArchSpec
    weights: Dict[str, np.ndarray]
    dropped: List[str] = field(default_factory=list)


class _Unsupported(UserError):
    pass


class _Importer:
    def __init__(self, read: Graph, where: str):
        self.where = where
        self.read = read
        graph = read.model.graph
        self.graph = graph
        # Initializers, Constant outputs and Identity copies of them, with their numbers.
        values = {name: read.value(name) for name in read.constants}
        self.constants: Dict[str, np.ndarray] = {k: v for k, v in values.items() if v is not None}
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise UserError(f"{where}: the graph has {len(inputs)} inputs; ArchSpec networks take exactly one image "
                            f"input, export the network with a single input")
        if len(graph.output) != 1:
            raise UserError(f"{where}: the graph has {len(graph.output)} outputs; ArchSpec networks have one")
        self.graph_input = inputs[0].name
        self.graph_output = graph.output[0].name
        self.consumers: Dict[str, List[Any]] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.names: Dict[str, str] = {self.graph_input: INPUT}  # ONNX value -> ArchSpec node id
        self.nodes: List[Dict[str, Any]] = []
        self.weights: Dict[str, np.ndarray] = {}
        self.counters: Dict[str, np.ndarray] = {}  # batchnorm's step counters (int64, part of torch's state)
        self.ids: set = set()
        self.dropped: List[str] = []
        self.skip: set = set()
        self.mean: Optional[np.ndarray] = None
        self.std: Optional[np.ndarray] = None
        self.at_input = True  # still inside the leading normalisation

    # -- helpers ------------------------------------------------------------------------------

    def fail(self, node: Any, message: str) -> None:
        raise _Unsupported(f"{self.where}: node {_label(node)!r} ({node.op_type}): {message}")

    def attrs(self, node: Any) -> Dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def const(self, name: str) -> Optional[np.ndarray]:
        return self.constants.get(name) if name else None

    def source(self, node: Any, name: str) -> str:
        if name in self.constants:
            self.fail(node, f"input {name!r} is a constant where ArchSpec needs a computed tensor")
        if name not in self.names:
            self.fail(node, f"input {name!r} is produced by nothing this importer understood")
        return self.names[name]

    def shape(self, name: str) -> Optional[Tuple[Optional[int], ...]]:
        """Inferred dims, the batch (whether fixed at 1 or symbolic in the file) as 1."""
        return self.read.shape(name)

    def new_id(self, node: Any, suffix: str = "") -> str:
        base = re.sub(r"^/+", "", node.name or node.output[0]).replace("/", ".") or node.op_type.lower()
        base = (base + suffix) if base != INPUT else "input_"
        candidate, n = base, 1
        while candidate in self.ids or candidate == INPUT:
            n += 1
            candidate = f"{base}_{n}"
        self.ids.add(candidate)
        return candidate

    def emit(self, node: Any, op: str, inputs: Sequence[str], suffix: str = "", **attrs: Any) -> str:
        node_id = self.new_id(node, suffix)
        self.nodes.append({"id": node_id, "op": op, "inputs": list(inputs), **attrs})
        return node_id

    def alias(self, node: Any, value: str) -> None:
        self.names[node.output[0]] = value

    # -- the walk -----------------------------------------------------------------------------

    def run(self) -> ImportedModel:
        self.find_silu()
        for node in self.graph.node:
            if node.op_type == "Constant" or all(out in self.constants for out in node.output if out):
                continue  # a constant (or an Identity copy of one): its numbers are already known
            if id(node) in self.skip:
                continue
            if self.at_input and self.normalisation(node):
                continue
            self.at_input = False
            handler = getattr(self, f"op_{node.op_type}", None)
            row = op_type(node)
            if handler is None and row is not None and row.arch in REGISTRY:
                self.registered_op(node, REGISTRY[row.arch])
                continue
            if handler is None:
                self.fail(node, f"op {node.op_type!r} has no ArchSpec equivalent; supported ops: "
                                f"{', '.join(SUPPORTED_OPS)}")
            handler(node)
        return self.finish()

    def find_silu(self) -> None:
        """Mark ``Sigmoid`` nodes that only feed ``Mul(x, Sigmoid(x))``: that pair is one silu."""
        producers = {out: node for node in self.graph.node for out in node.output}
        self.silu_pairs: Dict[int, str] = {}
        for node in self.graph.node:
            if node.op_type != "Mul" or len(node.input) != 2:
                continue
            for k in (0, 1):
                sig = producers.get(node.input[k])
                other = node.input[1 - k]
                if (sig is not None and sig.op_type == "Sigmoid" and sig.input[0] == other
                        and len(self.consumers.get(sig.output[0], [])) == 1):
                    self.skip.add(id(sig))
                    self.silu_pairs[id(node)] = other

    def normalisation(self, node: Any) -> bool:
        """Absorb ``Sub``/``Div``/``Mul`` of per-channel constants applied to the raw input."""
        if node.op_type not in ("Sub", "Div", "Mul") or len(node.input) != 2:
            return False
        x, c = node.input
        if self.names.get(x) != INPUT or node.input[1] not in self.constants:
            return False
        channels = self.channels_of_input()
        value = np.asarray(self.constants[c], dtype=np.float64)
        if value.size not in (1, channels):
            return False
        per_channel = np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float64)
        mean = np.zeros(channels) if self.mean is None else self.mean
        std = np.ones(channels) if self.std is None else self.std
        # The input so far is (raw - mean) / std; fold this step into mean and std.
        if node.op_type == "Sub":
            mean = mean + per_channel * std
        elif node.op_type == "Div":
            std = std * per_channel
        else:
            if np.any(per_channel == 0):
                return False
            std = std / per_channel
        if np.any(std <= 0):
            return False
        self.mean, self.std = mean, std
        self.names[node.output[0]] = INPUT
        return True

    def channels_of_input(self) -> int:
        dims = self.shape(self.graph_input)
        return int(dims[1]) if dims and len(dims) == 4 and dims[1] else 0

    # -- ops ----------------------------------------------------------------------------------

    def op_Conv(self, node: Any) -> None:
        a = self.attrs(node)
        weight = self.const(node.input[1])
        if weight is None or weight.ndim != 4:
            self.fail(node, "only 2-D convolutions with constant weights are supported")
        bias = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and bias is None:
            self.fail(node, "the bias is computed, not a constant")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            self.fail(node, f"auto_pad={a['auto_pad']!r}; ArchSpec needs explicit symmetric padding")
        kernel = list(a.get("kernel_shape", weight.shape[2:]))
        node_id = self.emit(
            node, "conv2d", [self.source(node, node.input[0])], out_channels=int(weight.shape[0]),
            kernel=kernel, stride=list(a.get("strides", [1, 1])), padding=self.symmetric_pads(node, a),
            dilation=list(a.get("dilations", [1, 1])), groups=int(a.get("group", 1)), bias=bias is not None,
        )
        self.alias(node, node_id)
        self.weights[f"{node_id}/weight"] = weight
        if bias is not None:
            self.weights[f"{node_id}/bias"] = bias.reshape(-1)

    def symmetric_pads(self, node: Any, a: Mapping[str, Any]) -> List[int]:
        pads = list(a.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
            self.fail(node, f"pads {pads} are not symmetric; ArchSpec pads both sides alike")
        return [int(pads[0]), int(pads[1])]

    def op_BatchNormalization(self, node: Any) -> None:
        a = self.attrs(node)
        if a.get("training_mode", 0):
            self.fail(node, "training_mode=1; export the model in eval mode")
        tensors = [self.const(n) for n in node.input[1:5]]
        if len(tensors) != 4 or any(t is None for t in tensors):
            self.fail(node, "scale, bias, mean and variance must be constants")
        node_id = self.emit(node, "batchnorm", [self.source(node, node.input[0])],
                            eps=float32_decimal(a.get("epsilon", 1e-5)))
        self.alias(node, node_id)
        for name, tensor in zip(("weight", "bias", "running_mean", "running_var"), tensors):
            self.weights[f"{node_id}/{name}"] = tensor.reshape(-1)
        self.counters[f"{node_id}/num_batches_tracked"] = np.array(0, dtype=np.int64)

    def op_Gemm(self, node: Any) -> None:
        a = self.attrs(node)
        if a.get("transA", 0):
            self.fail(node, "transA=1 has no ArchSpec equivalent")
        b = self.const(node.input[1])
        if b is None or b.ndim != 2:
            self.fail(node, "the weight matrix must be a 2-D constant")
        weight = b if a.get("transB", 0) else b.T
        weight = weight * float(a.get("alpha", 1.0))
        bias = None
        if len(node.input) > 2 and node.input[2]:
            c = self.const(node.input[2])
            if c is None or c.size != weight.shape[0]:
                self.fail(node, "the bias must be a constant with one value per output")
            bias = c.reshape(-1) * float(a.get("beta", 1.0))
        self.linear(node, self.source(node, node.input[0]), weight, bias, node.output[0])

    def linear(self, node: Any, src: str, weight: np.ndarray, bias: Optional[np.ndarray], output: str) -> None:
        node_id = self.emit(node, "linear", [src], out_features=int(weight.shape[0]), bias=bias is not None)
        self.names[output] = node_id
        self.weights[f"{node_id}/weight"] = np.ascontiguousarray(weight)
        if bias is not None:
            self.weights[f"{node_id}/bias"] = bias

    def op_MatMul(self, node: Any) -> None:
        w = self.const(node.input[1])
        dims = self.shape(node.input[0])
        if w is None or w.ndim != 2 or (dims is not None and len(dims) != 2):
            self.fail(node, "only a feature vector times a constant 2-D matrix is a linear layer")
        users = self.consumers.get(node.output[0], [])
        bias, output = None, node.output[0]
        if len(users) == 1 and users[0].op_type == "Add":
            add = users[0]
            other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
            c = self.const(other)
            if c is not None and c.size == w.shape[1]:
                bias, output = c.reshape(-1), add.output[0]
                self.skip.add(id(add))
        self.linear(node, self.source(node, node.input[0]), w.T, bias, output)

    def op_Add(self, node: Any) -> None:
        if any(name in self.constants for name in node.input):
            self.fail(node, "adding a constant has no ArchSpec equivalent (only a linear layer's bias)")
        self.merge(node, "add")

    def op_Sum(self, node: Any) -> None:
        self.merge(node, "add")

    def merge(self, node: Any, op: str) -> None:
        shapes = [self.shape(n) for n in node.input]
        if op == "add" and (any(s is None for s in shapes) or len({tuple(s[1:]) for s in shapes}) != 1):
            self.fail(node, f"input shapes {shapes} differ; ArchSpec adds tensors of one shape (no broadcasting)")
        if len(node.input) < 2:
            self.alias(node, self.source(node, node.input[0]))
            return
        self.alias(node, self.emit(node, op, [self.source(node, n) for n in node.input]))

    def op_Concat(self, node: Any) -> None:
        axis = self.attrs(node).get("axis")
        ranks = {len(s) for s in (self.shape(n) for n in node.input) if s is not None}
        rank = ranks.pop() if len(ranks) == 1 else None
        if rank is None or axis not in (1, 1 - rank):
            self.fail(node, f"concat on axis {axis}; ArchSpec concatenates channels (axis 1)")
        self.merge(node, "concat")

    def pool(self, node: Any, op: str) -> None:
        a = self.attrs(node)
        if a.get("ceil_mode", 0):
            self.fail(node, "ceil_mode=1; ArchSpec pools round down (export with ceil_mode=False)")
        if any(d != 1 for d in a.get("dilations", [1, 1])):
            self.fail(node, "dilated pooling has no ArchSpec equivalent")
        if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
            self.fail(node, f"auto_pad={a['auto_pad']!r}; ArchSpec needs explicit symmetric padding")
        kernel = list(a["kernel_shape"])
        if len(kernel) != 2:
            self.fail(node, "only 2-D pooling is supported")
        padding = self.symmetric_pads(node, a)
        extra: Dict[str, Any] = {}
        if op == "avgpool" and any(padding) and not a.get("count_include_pad", 0):
            # ONNX's default averages over the real pixels only; ArchSpec's (torch's) counts the
            # padding unless told otherwise. Without padding the two agree and the spec keeps
            # the default.
            extra["count_include_pad"] = False
        node_id = self.emit(node, op, [self.source(node, node.input[0])], kernel=kernel,
                            stride=list(a.get("strides", [1, 1])), padding=padding, **extra)
        self.alias(node, node_id)

    def op_MaxPool(self, node: Any) -> None:
        if len(node.output) > 1 and node.output[1]:
            self.fail(node, "the Indices output has no ArchSpec equivalent")
        self.pool(node, "maxpool")

    def op_AveragePool(self, node: Any) -> None:
        self.pool(node, "avgpool")

    def op_GlobalAveragePool(self, node: Any) -> None:
        self.alias(node, self.emit(node, "global_avgpool", [self.source(node, node.input[0])]))

    def op_ReduceMean(self, node: Any) -> None:
        a = self.attrs(node)
        axes = a.get("axes")
        if axes is None and len(node.input) > 1:
            axes_value = self.const(node.input[1])
            axes = None if axes_value is None else axes_value.tolist()
        dims = self.shape(node.input[0])
        rank = len(dims) if dims is not None else 4
        if axes is None or sorted(int(x) % rank for x in axes) != [2, 3] or rank != 4:
            self.fail(node, f"mean over axes {axes}; only the mean over H and W (global average pooling) is supported")
        pooled = self.emit(node, "global_avgpool", [self.source(node, node.input[0])])
        if a.get("keepdims", 1):
            self.alias(node, pooled)
        else:
            self.alias(node, self.emit(node, "flatten", [pooled], suffix="_flatten"))

    def op_Flatten(self, node: Any) -> None:
        if self.attrs(node).get("axis", 1) != 1:
            self.fail(node, "flatten must keep the batch axis (axis=1)")
        self.alias(node, self.emit(node, "flatten", [self.source(node, node.input[0])]))

    def op_Reshape(self, node: Any) -> None:
        target = self.const(node.input[1])
        dims = self.shape(node.input[0])
        features = None
        if dims is not None and all(isinstance(d, int) for d in dims[1:]):
            features = int(np.prod(dims[1:]))
        ok = target is not None and target.size == 2 and features is not None and (
            list(target.tolist()) in ([-1, features], [0, -1], [0, features], [1, features])
            or (target[1] == -1 and target[0] in (-1, 0, 1) and dims[0] in (None, 1, target[0]) and target[0] != -1)
        )
        if not ok:
            self.fail(node, f"reshape to {None if target is None else target.tolist()}; only flattening "
                            f"(batch, C, H, W) -> (batch, C*H*W) is supported")
        self.alias(node, self.emit(node, "flatten", [self.source(node, node.input[0])]))

    def op_Squeeze(self, node: Any) -> None:
        axes = self.attrs(node).get("axes")
        if axes is None and len(node.input) > 1:
            value = self.const(node.input[1])
            axes = None if value is None else value.tolist()
        dims = self.shape(node.input[0])
        if dims is None or len(dims) != 4 or dims[2] != 1 or dims[3] != 1 or sorted(int(x) % 4 for x in axes or []) != [2, 3]:
            self.fail(node, "only squeezing a (batch, C, 1, 1) map to (batch, C) is supported")
        self.alias(node, self.emit(node, "flatten", [self.source(node, node.input[0])]))

    def registered_op(self, node: Any, op: Op) -> None:
        """A node whose type the table maps onto ``op`` and that needs no handler here: the op
        itself reads the node's attributes (``Op.from_onnx``), so a new op imports without a
        line in this module."""
        try:
            attrs = op.from_onnx(node.op_type, self.attrs(node))
        except SpecError as exc:
            self.fail(node, str(exc))
        self.alias(node, self.emit(node, op.name, [self.source(node, name) for name in node.input if name], **attrs))

    def activation(self, node: Any, op: str) -> None:
        self.alias(node, self.emit(node, op, [self.source(node, node.input[0])]))

    def op_Elu(self, node: Any) -> None:
        if not np.isclose(self.attrs(node).get("alpha", 1.0), 1.0):
            self.fail(node, "ArchSpec's elu has alpha 1")
        self.activation(node, "elu")

    def op_Selu(self, node: Any) -> None:
        a = self.attrs(node)
        if not (np.isclose(a.get("alpha", 1.67326319), 1.67326319) and np.isclose(a.get("gamma", 1.05070102), 1.05070102)):
            self.fail(node, "ArchSpec's selu has the standard alpha and gamma")
        self.activation(node, "selu")

    def op_Clip(self, node: Any) -> None:
        a = self.attrs(node)
        low = a.get("min")
        high = a.get("max")
        if len(node.input) > 1 and node.input[1]:
            low = self.const(node.input[1])
        if len(node.input) > 2 and node.input[2]:
            high = self.const(node.input[2])
        bounds = [None if b is None else np.asarray(b).reshape(-1) for b in (low, high)]
        if any(b is not None and b.size != 1 for b in bounds):
            self.fail(node, "the clip bounds must be constant scalars")
        low, high = (None if b is None else float(b[0]) for b in bounds)
        if low == 0.0 and high == 6.0:
            self.activation(node, "relu6")
        elif low == 0.0 and high is None:
            self.activation(node, "relu")
        else:
            self.fail(node, f"clip to [{low}, {high}]; only [0, 6] (relu6) and [0, inf) (relu) are ArchSpec ops")

    def op_Mul(self, node: Any) -> None:
        if id(node) not in self.silu_pairs:
            self.fail(node, "a product has no ArchSpec equivalent (only x * sigmoid(x), silu)")
        self.activation_from(node, "silu", self.silu_pairs[id(node)])

    def activation_from(self, node: Any, op: str, onnx_input: str) -> None:
        self.alias(node, self.emit(node, op, [self.source(node, onnx_input)]))

    def op_Identity(self, node: Any) -> None:
        self.alias(node, self.source(node, node.input[0]))

    def op_Dropout(self, node: Any) -> None:
        if len(node.input) > 2 and node.input[2]:
            training = self.const(node.input[2])
            if training is None or bool(np.asarray(training)):
                self.fail(node, "dropout in training mode; export the model in eval mode")
        self.alias(node, self.source(node, node.input[0]))

    def final_only(self, node: Any) -> None:
        if node.output[0] != self.graph_output:
            self.fail(node, f"{node.op_type} inside the network has no ArchSpec equivalent (only as the last op)")
        self.dropped.append(f"{_label(node)} ({node.op_type}: does not change the predicted class)")
        self.alias(node, self.source(node, node.input[0]))

    op_Softmax = final_only
    op_LogSoftmax = final_only

    def op_Sub(self, node: Any) -> None:
        self.fail(node, "a subtraction has no ArchSpec equivalent (only as the input normalisation)")

    def op_Div(self, node: Any) -> None:
        self.fail(node, "a division has no ArchSpec equivalent (only as the input normalisation)")

    # -- result -------------------------------------------------------------------------------

    def finish(self) -> ImportedModel:
        dims = self.shape(self.graph_input)
        if dims is None or len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
            raise UserError(f"{self.where}: input {self.graph_input!r} has shape {dims}; ArchSpec needs a fixed "
                            f"(batch, C, H, W) image input")
        output = self.names.get(self.graph_output)
        if output is None or output == INPUT:
            raise UserError(f"{self.where}: output {self.graph_output!r} is not computed by the imported layers")
        out_dims = self.shape(self.graph_output)
        num_classes = out_dims[-1] if out_dims and isinstance(out_dims[-1], int) else None
        name = self.graph.name or ""
        try:
            spec = ArchSpec(list(dims[1:]), num_classes or 1, self.nodes, output=output, name=name)
        except SpecError as exc:
            if num_classes is None and "num_classes" in str(exc):
                shape = re.search(r"output shape \[(\d+)\]", str(exc))
                if shape:
                    spec = ArchSpec(list(dims[1:]), int(shape.group(1)), self.nodes, output=output, name=name)
                else:
                    raise UserError(f"{self.where}: the imported network is not valid ({exc})") from None
            else:
                raise UserError(f"{self.where}: the imported network is not valid ({exc})") from None
        channels = spec.input_shape[0]
        mean = np.zeros(channels) if self.mean is None else self.mean
        std = np.ones(channels) if self.std is None else self.std
        weights = {k: np.array(v, dtype=np.float32, order="C") for k, v in self.weights.items()}  # own, writable
        weights.update(self.counters)
        weights[MEAN_KEY] = mean.astype(np.float32)
        weights[STD_KEY] = std.astype(np.float32)
        return ImportedModel(spec, weights, self.dropped)


def _label(node: Any) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def import_onnx(path: Union[str, Path]) -> ImportedModel:
    """The ArchSpec and weights of the ONNX file at ``path``; a ``UserError`` naming the node
    for anything ArchSpec cannot express."""
    path = Path(path)
    return _Importer(read_graph(path, check=_check_importable, weights=True), str(path)).run()


def _check_importable(path: Path, nodes: Iterable[Any], constants: Set[str]) -> None:
    """Before shape inference (whose messages on unknown operators are vaguer): the first
    computed node whose operator type has no ArchSpec equivalent, named."""
    for node in nodes:
        row = op_type(node)
        if (row is None or not row.arch) and not all(out in constants for out in node.output if out):
            raise _Unsupported(f"{path}: node {_label(node)!r} ({node.op_type}): op {node.op_type!r} has no ArchSpec "
                               f"equivalent; supported ops: {', '.join(SUPPORTED_OPS)}")


def network_state(weights: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The weights without the recorded input normalisation (what a torch module holds)."""
    return {k: v for k, v in weights.items() if k not in (MEAN_KEY, STD_KEY)}


def max_abs_diff(path: Union[str, Path], imported: ImportedModel, batch: int = 4) -> float:
    """Largest difference between onnxruntime on the file and torch on the imported network
    (normalisation applied), on a seeded random batch of raw inputs in [0, 1)."""
    import torch

    from hostside.arch.build import build_module
    from hostside.arch.weights import load_state
    from hostside.onnx.runtime import open_session, predict

    spec = imported.spec
    x = np.random.default_rng(0).uniform(0.0, 1.0, size=(batch, *spec.input_shape)).astype(np.float32)
    want = predict(open_session(path), x, batch)  # a file with a fixed batch of 1 runs image by image
    module = build_module(spec).eval()
    load_state(module, network_state(imported.weights), f"{path}")
    shape = (1, -1, 1, 1)
    mean = imported.weights[MEAN_KEY].reshape(shape)
    std = imported.weights[STD_KEY].reshape(shape)
    with torch.no_grad():
        got = module(torch.from_numpy((x - mean) / std)).numpy()
    return float(np.max(np.abs(got - want.reshape(got.shape))))


def run_import(model: Path, out: Path) -> int:
    """``hostside arch import MODEL.onnx --out DIR``: write DIR/spec.json and DIR/weights.npz,
    after checking that torch on the imported network computes what onnxruntime computes."""
    from hostside.arch.weights import save_state

    imported = import_onnx(model)
    diff = max_abs_diff(model, imported)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create the folder ({exc.strerror}); choose a writable folder") from None
    imported.spec.save(out / "spec.json")
    sha = save_state(imported.weights, out / "weights.npz")
    cost = imported.spec.cost
    print(f"{model}: {len(imported.spec.nodes)} nodes, {cost.params:,} params, {cost.macs:,} MACs; "
          f"torch vs onnxruntime max abs diff {diff:.2e}")
    for note in imported.dropped:
        print(f"  dropped {note}")
    print(f"wrote {out / 'spec.json'} and {out / 'weights.npz'} (sha256 {sha[:12]}...)")
    return 0
