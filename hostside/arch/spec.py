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
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from hostside.errors import UserError

FORMAT = "hostside.archspec"
VERSION = 1
INPUT = "input"

ACTIVATIONS = (
    "relu", "relu6", "elu", "selu", "silu", "sigmoid", "tanh", "hardswish", "identity",
)
ALIASES = {"swish": "silu"}

# Attribute schema per op: name -> (kind, default). A default of REQUIRED must be given.
REQUIRED = object()
_PAIR = "pair"  # int or [h, w]
_SCHEMA: Dict[str, Dict[str, Tuple[str, Any]]] = {
    "conv2d": {
        "out_channels": ("pos_int", REQUIRED),
        "kernel": (_PAIR, REQUIRED),
        "stride": (_PAIR, 1),
        "padding": ("pad_pair", 0),
        "dilation": (_PAIR, 1),
        "groups": ("pos_int", 1),
        "bias": ("bool", True),
    },
    "batchnorm": {"eps": ("pos_float", 1e-5)},
    "maxpool": {"kernel": (_PAIR, REQUIRED), "stride": (_PAIR, None), "padding": ("pad_pair", 0)},
    "avgpool": {"kernel": (_PAIR, REQUIRED), "stride": (_PAIR, None), "padding": ("pad_pair", 0)},
    "global_avgpool": {},
    "flatten": {},
    "dropout": {"p": ("prob", 0.5)},
    "linear": {"out_features": ("pos_int", REQUIRED), "bias": ("bool", True)},
    "add": {},
    "concat": {},
}
for _act in ACTIVATIONS:
    _SCHEMA[_act] = {}
OPS = tuple(_SCHEMA)
MULTI_INPUT_OPS = ("add", "concat")


class SpecError(UserError):
    """An invalid ArchSpec; the message names the offending node."""


class Node:
    """One operation: ``id``, ``op``, input ids and normalised attributes (JSON-ready)."""

    __slots__ = ("id", "op", "inputs", "attrs")

    def __init__(self, id: str, op: str, inputs: Tuple[str, ...], attrs: Dict[str, Any]):
        self.id = id
        self.op = op
        self.inputs = inputs
        self.attrs = attrs

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "op": self.op, "inputs": list(self.inputs), **_jsonable(self.attrs)}

    def __repr__(self) -> str:
        return f"Node({self.to_dict()!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self.to_dict() == other.to_dict()


class ArchSpec:
    """A validated network description. Nodes are kept in execution (topological) order.

    Build one with :meth:`from_dict`, :meth:`from_json`, :meth:`load` or the constructor;
    each validates the graph (unknown op, bad attribute, dangling input, cycle, shape
    mismatch) and raises :class:`SpecError` naming the node.
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
        parsed = [n if isinstance(n, Node) else _parse_node(n, i) for i, n in enumerate(nodes)]
        if not parsed:
            raise SpecError("the spec has no nodes; add at least a flatten and a linear layer")
        self.nodes = _topological_order(parsed)
        self.output = output if output is not None else parsed[-1].id
        self.name = name
        self._index = {n.id: i for i, n in enumerate(self.nodes)}
        if self.output not in self._index:
            raise SpecError(f"output {self.output!r} is not a node id")
        _check_reaches_output(self.nodes, self.output)
        self.folded_convs, self.frees = _dataflow(self.nodes, self.output)
        # Shape inference doubles as the shape validation; imported here to avoid a cycle.
        from hostside.arch.cost import analyze

        self._cost = analyze(self)
        out_shape = self._cost.output_shape
        if out_shape != (num_classes,):
            raise SpecError(
                f"node {self.output!r}: output shape {list(out_shape)} must be [{num_classes}] "
                f"(num_classes); end the network with flatten/global_avgpool and linear"
            )

    @property
    def cost(self):
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

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(self.to_json(indent=1) + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ArchSpec":
        if not isinstance(data, Mapping):
            raise SpecError("an ArchSpec is a JSON object with input_shape, num_classes and nodes")
        fmt = data.get("format", FORMAT)
        if fmt != FORMAT:
            raise SpecError(f"format is {fmt!r}, expected {FORMAT!r}")
        version = data.get("version", VERSION)
        if version != VERSION:
            raise SpecError(f"ArchSpec version {version!r} is not supported (this is version {VERSION})")
        missing = [k for k in ("input_shape", "num_classes", "nodes") if k not in data]
        if missing:
            raise SpecError(f"missing key(s) {', '.join(missing)}; an ArchSpec needs input_shape, num_classes, nodes")
        unknown = set(data) - {"format", "version", "name", "input_shape", "num_classes", "nodes", "output"}
        if unknown:
            raise SpecError(f"unknown top-level key(s) {', '.join(sorted(unknown))}")
        if not isinstance(data["nodes"], list):
            raise SpecError("nodes must be a list of node objects")
        return cls(data["input_shape"], data["num_classes"], data["nodes"], data.get("output"), data.get("name", ""))

    @classmethod
    def from_json(cls, text: str) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON ({exc})") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ArchSpec":
        """Read an ArchSpec JSON file; errors name the file."""
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
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


def _jsonable(attrs: Dict[str, Any]) -> Dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


def _parse_input_shape(shape: Any) -> Tuple[int, int, int]:
    if (
        not isinstance(shape, (list, tuple))
        or len(shape) != 3
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape)
    ):
        raise SpecError(f"input_shape must be [C, H, W] with positive integers, got {shape!r}")
    return (shape[0], shape[1], shape[2])


def _parse_node(raw: Any, position: int) -> Node:
    if not isinstance(raw, Mapping):
        raise SpecError(f"node #{position}: expected an object, got {type(raw).__name__}")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not node_id:
        raise SpecError(f"node #{position}: missing or empty 'id'")
    where = f"node {node_id!r}"
    if node_id == INPUT:
        raise SpecError(f"{where}: the id {INPUT!r} is reserved for the network input")
    op = raw.get("op")
    op = ALIASES.get(op, op)
    if op not in _SCHEMA:
        raise SpecError(f"{where}: unknown op {raw.get('op')!r}; known ops: {', '.join(OPS)}")
    inputs = raw.get("inputs")
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(i, str) for i in inputs) or not inputs:
        raise SpecError(f"{where}: 'inputs' must be a non-empty list of node ids")
    if op in MULTI_INPUT_OPS:
        if len(inputs) < 2:
            raise SpecError(f"{where}: {op} needs at least two inputs")
    elif len(inputs) != 1:
        raise SpecError(f"{where}: {op} takes exactly one input, got {len(inputs)}")
    schema = _SCHEMA[op]
    unknown = set(raw) - {"id", "op", "inputs"} - set(schema)
    if unknown:
        allowed = ", ".join(schema) or "none"
        raise SpecError(f"{where}: unknown attribute(s) {', '.join(sorted(unknown))} for {op} (allowed: {allowed})")
    attrs: Dict[str, Any] = {}
    for key, (kind, default) in schema.items():
        if key in raw:
            attrs[key] = _check_attr(where, key, kind, raw[key])
        elif default is REQUIRED:
            raise SpecError(f"{where}: {op} needs attribute {key!r}")
        else:
            attrs[key] = default if kind not in (_PAIR, "pad_pair") or default is None else (default, default)
    if op in ("maxpool", "avgpool") and attrs["stride"] is None:
        attrs["stride"] = attrs["kernel"]
    return Node(node_id, op, tuple(inputs), attrs)


def _check_attr(where: str, key: str, kind: str, value: Any) -> Any:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "pos_int":
        if is_int and value > 0:
            return value
        raise SpecError(f"{where}: {key} must be a positive integer, got {value!r}")
    if kind in (_PAIR, "pad_pair"):
        low = 0 if kind == "pad_pair" else 1
        pair = (value, value) if is_int else value
        if (
            isinstance(pair, (list, tuple))
            and len(pair) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= low for v in pair)
        ):
            return (pair[0], pair[1])
        raise SpecError(f"{where}: {key} must be an integer >= {low} or a pair [h, w], got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise SpecError(f"{where}: {key} must be true or false, got {value!r}")
    if kind == "pos_float":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        raise SpecError(f"{where}: {key} must be a positive number, got {value!r}")
    if kind == "prob":
        if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
            return float(value)
        raise SpecError(f"{where}: {key} must be in [0, 1), got {value!r}")
    raise AssertionError(f"unknown attribute kind {kind}")


def _topological_order(nodes: List[Node]) -> Tuple[Node, ...]:
    """Kahn's algorithm, stable with respect to the given order; names cycles and dangling inputs."""
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
    """Structural facts the cost model and the exporter share.

    - folded convs: a batchnorm whose input is a conv used by nothing else is folded into that
      conv on export, so the conv is deployed with a bias and the batchnorm disappears;
    - frees: for each node (in order), the tensors whose last use it is, for liveness.
    """
    consumers: Dict[str, int] = {}
    last_use: Dict[str, int] = {}
    ops = {INPUT: "input"}
    for i, n in enumerate(nodes):
        ops[n.id] = n.op
        for src in n.inputs:
            consumers[src] = consumers.get(src, 0) + 1
            last_use[src] = i
    last_use[output] = len(nodes)
    folded = frozenset(
        n.inputs[0] for n in nodes
        if n.op == "batchnorm" and ops[n.inputs[0]] == "conv2d" and consumers[n.inputs[0]] == 1
    )
    frees = tuple(tuple(src for src in set(n.inputs) if last_use[src] == i) for i, n in enumerate(nodes))
    return folded, frees


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
