"""ArchSpec: the one genotype-independent description of a network.

Every search space decodes into an ArchSpec; the cost model, the torch builder, the ONNX
exporter and the journal all read it. It is a small DAG of named nodes with an input shape
(C, H, W) and a number of classes, serialised as plain JSON so it can be hashed, stored and
diffed. This module imports nothing heavy: the pre-training filter builds and judges tens of
thousands of specs per second.
"""

from __future__ import annotations

import hashlib
import json
from collections import abc
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from hostside.arch.cost import Cost, analyze
from hostside.arch.ops import ALIASES, REGISTRY
from hostside.arch.ops.activation import STANDARD as ACTIVATIONS
from hostside.arch.ops.base import INPUT, REQUIRED, SpecError
from hostside import safe_io

__all__ = ["FORMAT", "VERSION", "INPUT", "ACTIVATIONS", "ALIASES", "REQUIRED", "OPS", "MULTI_INPUT_OPS",
           "SpecError", "Node", "ArchSpec"]

FORMAT = "hostside.archspec"
VERSION = 1

#: Every registered op (``hostside.arch.ops``), and those that take several inputs.
OPS = tuple(REGISTRY)
MULTI_INPUT_OPS = tuple(name for name, op in REGISTRY.items() if op.max_inputs != 1)
# op name or alias -> Op: the parser's one lookup per node.
_BY_NAME = {**REGISTRY, **{alias: REGISTRY[name] for alias, name in ALIASES.items()}}
_NUMBER_WORDS = ("no", "one", "two", "three", "four")
_TOP_LEVEL = frozenset({"format", "version", "name", "input_shape", "num_classes", "nodes", "output"})


class Node:
    """One operation: ``id``, ``op``, input ids and normalised attributes (JSON-ready)."""

    __slots__ = ("id", "op", "inputs", "attrs")

    def __init__(self, id: str, op: str, inputs: Tuple[str, ...], attrs: Dict[str, Any]):
        self.id = id
        self.op = op
        self.inputs = inputs
        self.attrs = attrs

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "op": self.op, "inputs": list(self.inputs), **REGISTRY[self.op].json_attrs(self.attrs)}

    def __repr__(self) -> str:
        return f"Node({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self.to_dict() == other.to_dict()


class ArchSpec:
    """A validated network description. Nodes are kept in execution (topological) order.

    Build one with :meth:`from_dict`, :meth:`from_json`, :meth:`load` or the constructor;
    each validates the graph (unknown op, bad attribute, dangling input, cycle, shape
    mismatch) and raises :class:`SpecError` naming the node. The constructor also takes
    already parsed :class:`Node` objects (``hostside.arch.blocks`` passes them), which are
    not parsed again.
    """

    __slots__ = ("input_shape", "num_classes", "nodes", "output", "name", "folded_convs", "frees", "_index", "_cost")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        nodes: Iterable[Union[Node, Mapping[str, Any]]],
        output: Optional[str] = None,
        name: str = "",
    ):
        self.input_shape = _parse_input_shape(input_shape)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise SpecError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes = num_classes
        self.name = name
        self.nodes, self.output, self._index, self.folded_convs, self.frees = _structure(nodes, output)
        # Shape inference doubles as the shape validation.
        self._cost = analyze(self)
        out_shape = self._cost.output_shape
        if out_shape != (num_classes,):
            raise SpecError(
                f"node {self.output!r}: output shape {list(out_shape)} must be [{num_classes}] "
                f"(num_classes); end the network with flatten/global_avgpool and linear"
            )

    @property
    def cost(self) -> Cost:
        """The analytic cost (``hostside.arch.cost.Cost``), computed once when the spec was validated."""
        return self._cost

    def node(self, node_id: str) -> Node:
        return self.nodes[self._index[node_id]]

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"format": FORMAT, "version": VERSION}
        if self.name:
            data["name"] = self.name
        data.update(
            input_shape=list(self.input_shape),
            num_classes=self.num_classes,
            nodes=[n.to_dict() for n in self.nodes],
            output=self.output,
        )
        return data

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def content_hash(self) -> str:
        """sha256 of the network's structure (name excluded), so equal networks collide."""
        data = self.to_dict()
        data.pop("name", None)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def structure_hash(self) -> str:
        """sha256 of the network with node ids replaced by positions: equal networks collide
        whatever their (lineage-stable) node names. A search's identity of a network."""
        data = self.to_dict()
        data.pop("name", None)
        names = {"input": "input", **{node["id"]: f"n{i}" for i, node in enumerate(data["nodes"])}}
        for node in data["nodes"]:
            node["id"] = names[node["id"]]
            node["inputs"] = [names[i] for i in node["inputs"]]
        data["output"] = names[data["output"]]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json(indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        if type(data) is not dict and not isinstance(data, abc.Mapping):
            raise SpecError("an ArchSpec is a JSON object with input_shape, num_classes and nodes")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise SpecError(f"format is {fmt!r}, expected {FORMAT!r}")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise SpecError(f"ArchSpec version {version!r} is not supported (this is version {VERSION})")
        if "input_shape" not in data or "num_classes" not in data or "nodes" not in data:
            missing = [k for k in ("input_shape", "num_classes", "nodes") if k not in data]
            raise SpecError(f"missing key(s) {', '.join(missing)}; an ArchSpec needs input_shape, num_classes, nodes")
        unknown = data.keys() - _TOP_LEVEL
        if unknown:
            raise SpecError(f"unknown top-level key(s) {', '.join(sorted(unknown))}")
        nodes = data["nodes"]
        if not isinstance(nodes, list):
            raise SpecError("nodes must be a list of node objects")
        return cls(data["input_shape"], data["num_classes"], nodes, data.get("output"), data.get("name", ""))

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON ({exc})") from None
        except RecursionError:
            raise SpecError("nested too deeply to be an ArchSpec; is it the right file?") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ArchSpec":
        """Read an ArchSpec JSON file; errors name the file."""
        text = safe_io.read_text(path, "ArchSpec")
        try:
            return cls.from_json(text)
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.content_hash())

    def __repr__(self) -> str:
        return f"ArchSpec({self.name or 'unnamed'}, {len(self.nodes)} nodes, input {list(self.input_shape)})"


def _parse_input_shape(shape: Any) -> Tuple[int, int, int]:
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise SpecError(f"input_shape must be [C, H, W] with positive integers, got {shape!r}")
    return (shape[0], shape[1], shape[2])


def _parse_node(raw: Any, position: int) -> Node:
    """One node object -> Node; the op's schema (``hostside.arch.ops``) checks the attributes."""
    if type(raw) is not dict and not isinstance(raw, abc.Mapping):
        raise SpecError(f"node #{position}: expected an object, got {type(raw).__name__}")
    get = raw.get
    node_id = get("id")
    if type(node_id) is not str and not isinstance(node_id, str) or not node_id:
        raise SpecError(f"node #{position}: missing or empty 'id'")
    if node_id == INPUT:
        raise SpecError(f"node {node_id!r}: the id {INPUT!r} is reserved for the network input")
    name = get("op")
    op = _BY_NAME.get(name) if type(name) is str or isinstance(name, str) else None
    if op is None:
        raise SpecError(f"node {node_id!r}: unknown op {name!r}; known ops: {', '.join(OPS)}")
    inputs = get("inputs")
    if type(inputs) is list and len(inputs) == 1 and type(inputs[0]) is str:
        if op.min_inputs == 1:  # the common case, checked without a generator
            return Node(node_id, op.name, (inputs[0],), op.parse_attrs(node_id, raw))
        n_inputs = 1
    elif not isinstance(inputs, (list, tuple)) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise SpecError(f"node {node_id!r}: 'inputs' must be a non-empty list of node ids")
    else:
        n_inputs = len(inputs)
    if n_inputs != 1 or op.min_inputs > 1:
        _check_arity(node_id, op, n_inputs)
    return Node(node_id, op.name, tuple(inputs), op.parse_attrs(node_id, raw))


def _structure(raw: Iterable[Union[Node, Mapping[str, Any]]], output: Optional[str]):
    """(nodes in execution order, output id, id -> position, folded convs, frees) of the given
    nodes, parsing those that are not Nodes yet.

    Why one pass: this runs for every spec read or built. Parsing, the order check, the consumer
    counts and last uses share a loop; nodes that are not in execution order (or repeat an id)
    take the general path of :func:`_topological_order` and :func:`_dataflow`.
    """
    nodes: List[Node] = []
    index: Dict[str, int] = {INPUT: -1}
    consumers: Dict[str, int] = {}
    last_use: Dict[str, int] = {}
    folding: List[str] = []
    in_order = True
    for i, n in enumerate(raw):
        if type(n) is not Node:
            n = _parse_node(n, i)
        for src in n.inputs:
            if src not in index:
                in_order = False
            consumers[src] = consumers.get(src, 0) + 1
            last_use[src] = i
        if n.id in index:
            in_order = False
        index[n.id] = i
        if n.op in _FOLDS_INTO_PRODUCER:
            folding.append(n.inputs[0])
        nodes.append(n)
    if not nodes:
        raise SpecError("the spec has no nodes; add at least a flatten and a linear layer")
    if output is None:
        output = nodes[-1].id
    if not in_order:
        ordered = _topological_order(nodes)
        position = {n.id: i for i, n in enumerate(ordered)}
        if output not in position:
            raise SpecError(f"output {output!r} is not a node id")
        return (ordered, output, position) + _dataflow(ordered, output)
    del index[INPUT]
    if output not in index:
        raise SpecError(f"output {output!r} is not a node id")
    last_use[output] = len(nodes)
    if len(last_use) < len(nodes) + 1:
        _check_reaches_output(nodes, output)
    folded: frozenset = _NOTHING
    if folding:
        folded = frozenset(src for src in folding
                           if src in index and nodes[index[src]].op in _ABSORBS_BATCHNORM and consumers[src] == 1)
    return tuple(nodes), output, index, folded, _frees(nodes, last_use)


def _frees(nodes: Sequence[Node], last_use: Mapping[str, int]) -> Tuple[Tuple[str, ...], ...]:
    """For each node (in order), the tensors whose last use it is, for liveness."""
    frees = []
    append = frees.append
    for i, n in enumerate(nodes):
        inputs = n.inputs
        if len(inputs) == 1:
            append(inputs if last_use[inputs[0]] == i else ())
        else:
            append(tuple({src for src in inputs if last_use[src] == i}))
    return tuple(frees)


def _check_reaches_output(nodes: Sequence[Node], output: str) -> None:
    """A node that does not feed the output would be pruned by the exporter and break the
    promise that analytic cost equals the exported file's cost, so it is an error."""
    needed = {output}
    for n in reversed(nodes):
        if n.id in needed:
            needed.update(n.inputs)
    for n in nodes:
        if n.id not in needed:
            raise SpecError(f"node {n.id!r}: does not reach the output {output!r}; remove it or connect it")


def _check_arity(node_id: str, op: Any, n_inputs: int) -> None:
    if op.min_inputs == op.max_inputs == 1:
        if n_inputs != 1:
            raise SpecError(f"node {node_id!r}: {op.name} takes exactly one input, got {n_inputs}")
    elif n_inputs < op.min_inputs:
        count = _NUMBER_WORDS[op.min_inputs] if op.min_inputs < len(_NUMBER_WORDS) else str(op.min_inputs)
        raise SpecError(f"node {node_id!r}: {op.name} needs at least {count} inputs")
    elif op.max_inputs is not None and n_inputs > op.max_inputs:
        raise SpecError(f"node {node_id!r}: {op.name} takes at most {op.max_inputs} inputs, got {n_inputs}")


def _topological_order(nodes: List[Node]) -> Tuple[Node, ...]:
    """Kahn's algorithm, stable with respect to the given order; names duplicates, cycles and
    dangling inputs."""
    by_id: Dict[str, Node] = {}
    for n in nodes:
        if n.id in by_id:
            raise SpecError(f"node {n.id!r}: duplicate id")
        by_id[n.id] = n
    for n in nodes:
        for src in n.inputs:
            if src != INPUT and src not in by_id:
                raise SpecError(f"node {n.id!r}: input {src!r} is not a node id (dangling input)")
    placed = {INPUT}
    order: List[Node] = []
    pending = list(nodes)
    while pending:
        still: List[Node] = []
        for n in pending:
            if all(src in placed for src in n.inputs):
                order.append(n)
                placed.add(n.id)
            else:
                still.append(n)
        if len(still) == len(pending):
            raise SpecError(f"node {still[0].id!r}: part of a cycle ({' -> '.join(n.id for n in still)})")
        pending = still
    return tuple(order)


def _dataflow(nodes: Sequence[Node], output: str) -> Tuple[frozenset, Tuple[Tuple[str, ...], ...]]:
    """Structural facts the cost model and the exporter share, and the reachability check.

    - folded convs: a batchnorm (``folds_into_producer``) whose input is a conv-like op
      (``absorbs_batchnorm``) used by nothing else is folded into it on export, so the conv is
      deployed with a bias and the batchnorm disappears;
    - frees: for each node (in order), the tensors whose last use it is, for liveness.

    A node that does not feed the output would be pruned by the exporter and break the promise
    that analytic cost equals the exported file's cost, so it is an error.
    """
    consumers: Dict[str, int] = {}
    last_use: Dict[str, int] = {}
    folding = []
    for i, n in enumerate(nodes):
        for src in n.inputs:
            consumers[src] = consumers.get(src, 0) + 1
            last_use[src] = i
        if n.op in _FOLDS_INTO_PRODUCER:
            folding.append(n.inputs[0])
    last_use[output] = len(nodes)
    # In a DAG where every node but the output is read by some node, every node reaches the
    # output (last_use then holds each node and the input); only otherwise is the set of nodes
    # that do reach it computed, to name the first that does not.
    if len(last_use) < len(nodes) + 1:
        _check_reaches_output(nodes, output)
    folded: frozenset = _NOTHING
    if folding:
        ops = {n.id: n.op for n in nodes}
        folded = frozenset(src for src in folding if ops.get(src) in _ABSORBS_BATCHNORM and consumers[src] == 1)
    return folded, _frees(nodes, last_use)


_NOTHING: frozenset = frozenset()
_ABSORBS_BATCHNORM = frozenset(name for name, op in REGISTRY.items() if op.absorbs_batchnorm)
_FOLDS_INTO_PRODUCER = frozenset(name for name, op in REGISTRY.items() if op.folds_into_producer)
