"""The contract every ArchSpec op fulfils, and the attribute kinds its schema is written in.

An op is one object (an :class:`Op` subclass instance registered in ``hostside.arch.ops``)
that answers every question the toolchain asks about a node of that op: which attributes
it takes, the shape it outputs, what it costs, which torch module computes it, which ONNX
nodes it exports to, and which neutral operators the calibration features see. Keeping them
together is what lets a new op arrive without touching the parser, the cost model, the
builder, the exporter or the features.

This module imports nothing heavy (no torch, no onnx): the parser and the cost model run
for every candidate a search judges. Torch and onnx are imported inside the methods that
need them.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from hostside.errors import UserError

INPUT = "input"
FLOAT32_BYTES = 4

Shape = Tuple[int, ...]
#: What :meth:`Op.infer` returns: (output shape, params, deployed params, deployed biases, MACs).
Inferred = Tuple[Shape, int, int, int, int]


class SpecError(UserError):
    """An invalid ArchSpec; the message names the offending node."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an attribute that must be given.
REQUIRED: Any = _Required()
_MISSING = object()

Checker = Callable[[str, str, Any], Any]


class Attr:
    """One attribute of an op's schema.

    ``check(where, key, value)`` returns the normalised value (tuples for pairs, floats for
    numbers) or raises SpecError; ``default`` is stored already normalised. ``omit_default``:
    the attribute is left out of the JSON (and so of the content hash) while it holds its
    default. Give it to every attribute added to an op that already has specs in the wild,
    so those specs keep their hashes.
    """

    __slots__ = ("kind", "check", "default", "omit_default", "doc")

    def __init__(self, kind: str, check: Checker, default: Any = REQUIRED, omit_default: bool = False,
                 doc: str = ""):
        self.kind = kind
        self.check = check
        self.default = default
        self.omit_default = omit_default
        self.doc = doc

    def describe(self) -> str:
        """``kind`` or ``kind = default`` (for docs and error messages)."""
        if self.default is REQUIRED:
            return f"{self.kind}, required"
        if self.default is None:
            return f"{self.kind}, {self.doc or 'optional'}"
        return f"{self.kind} = {json.dumps(list(self.default) if isinstance(self.default, tuple) else self.default)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_pos_int(where: str, key: str, value: Any) -> int:
    if (type(value) is int or _is_int(value)) and value > 0:
        return value
    raise SpecError(f"{where}: {key} must be a positive integer, got {value!r}")


def _pair_checker(low: int) -> Checker:
    def check(where: str, key: str, value: Any) -> Tuple[int, int]:
        if type(value) is int and value >= low:
            return (value, value)
        if type(value) is list or type(value) is tuple:
            if len(value) == 2:
                h, w = value
                if (type(h) is int or _is_int(h)) and (type(w) is int or _is_int(w)) and h >= low and w >= low:
                    return (h, w)
        elif _is_int(value) and value >= low:
            return (value, value)
        raise SpecError(f"{where}: {key} must be an integer >= {low} or a pair [h, w], got {value!r}")
    return check


def _check_bool(where: str, key: str, value: Any) -> bool:
    if value is True or value is False:
        return value
    raise SpecError(f"{where}: {key} must be true or false, got {value!r}")


def _check_pos_float(where: str, key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    raise SpecError(f"{where}: {key} must be a positive number, got {value!r}")


def _check_prob(where: str, key: str, value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    raise SpecError(f"{where}: {key} must be in [0, 1), got {value!r}")


def pos_int(default: Any = REQUIRED, **options: Any) -> Attr:
    """A positive integer."""
    return Attr("pos_int", _check_pos_int, default, **options)


def pair(default: Any = REQUIRED, **options: Any) -> Attr:
    """An integer >= 1 or ``[h, w]``; stored as a tuple. A default of None stays None."""
    return Attr("pair", _pair_checker(1), default if default is None or default is REQUIRED else (default, default),
                **options)


def pad_pair(default: int = 0, **options: Any) -> Attr:
    """An integer >= 0 or ``[h, w]`` (padding); stored as a tuple."""
    return Attr("pad_pair", _pair_checker(0), (default, default), **options)


def boolean(default: Any = REQUIRED, **options: Any) -> Attr:
    return Attr("bool", _check_bool, default, **options)


def pos_float(default: Any = REQUIRED, **options: Any) -> Attr:
    return Attr("pos_float", _check_pos_float, default, **options)


def prob(default: Any = REQUIRED, **options: Any) -> Attr:
    """A probability in [0, 1)."""
    return Attr("prob", _check_prob, default, **options)


def choice(values: Sequence[Any], default: Any = REQUIRED, **options: Any) -> Attr:
    """One of ``values`` (strings or numbers, compared with ==)."""
    allowed = tuple(values)

    def check(where: str, key: str, value: Any) -> Any:
        if isinstance(value, bool) or value not in allowed:
            raise SpecError(f"{where}: {key} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    return Attr("choice", check, default, **options)


def numbers(default: Any = REQUIRED, min_length: int = 1, **options: Any) -> Attr:
    """A list of finite numbers (at least ``min_length``), stored as a tuple of floats."""
    def check(where: str, key: str, value: Any) -> Tuple[float, ...]:
        if (isinstance(value, (list, tuple)) and len(value) >= min_length
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
                        and abs(v) != float("inf") for v in value)):
            return tuple(float(v) for v in value)
        raise SpecError(f"{where}: {key} must be a list of at least {min_length} finite numbers, got {value!r}")
    return Attr("numbers", check, default if default is REQUIRED else tuple(float(v) for v in default), **options)


# Kinds the parser checks inline (see Op.parse_attrs); 0: call the attribute's check.
_FAST_POS_INT, _FAST_PAIR, _FAST_PAD_PAIR, _FAST_BOOL = 1, 2, 3, 4
_FAST = {"pos_int": _FAST_POS_INT, "pair": _FAST_PAIR, "pad_pair": _FAST_PAD_PAIR, "bool": _FAST_BOOL}


def float32_decimal(value: float) -> float:
    """The shortest decimal that is the same float32 as ``value``: ONNX stores float
    attributes (an epsilon, a slope) as float32, and an imported 9.99999974e-06 should read
    as the 1e-05 that was written, so a round trip keeps the spec's JSON and content hash."""
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.unpack("<f", struct.pack("<f", candidate))[0] == single:
            return candidate
    return single


def elements(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class Op:
    """Base class of every op. Subclasses set the class attributes and override what differs.

    Class attributes:

    - ``name``: the ``op`` string of the JSON; ``aliases``: other accepted spellings.
    - ``family``: the op module's family (docs).
    - ``schema``: attribute name -> :class:`Attr`, in JSON order.
    - ``min_inputs`` / ``max_inputs`` (None: unbounded).
    - ``shape_preserving``: output shape = input shape, no params, no MACs; the cost model
      takes a fast path and :meth:`infer` is never called.
    - ``absorbs_batchnorm``: a batchnorm reading this op's output (and nothing else reading it)
      is folded into it on export (conv-like ops); ``folds_into_producer``: this op is such a
      batchnorm.
    - ``conv_multiplications``: this op's MACs are multiplications in a convolution layer, the
      ``n_mult`` of the cost (CGP's N_mult).
    - ``shape_rule`` / ``cost_rule``: one line each for docs/ops.md.
    - ``example``: attributes of a small node of this op, and ``example_input`` ("map" for a
      feature map, "vector" for a feature vector): ``tests/arch/test_ops.py`` builds a network
      around it for every registered op and holds analytic cost == torch == ONNX read-back and
      onnxruntime == torch to it, so a new op is tested without a new test.
    - ``onnx_types``: rows (``hostside.onnx.optypes.OpType``) for the ONNX operator types this
      op's export uses that the operator table does not declare itself; registering the op
      adds them to the table, so every ONNX reader knows them. A row whose ``arch`` is this
      op's name makes ``arch import`` turn that type into this op (see :meth:`from_onnx`).
    """

    name: str = ""
    aliases: Tuple[str, ...] = ()
    family: str = ""
    schema: Mapping[str, Attr] = {}
    min_inputs: int = 1
    max_inputs: Optional[int] = 1
    shape_preserving: bool = False
    absorbs_batchnorm: bool = False
    folds_into_producer: bool = False
    conv_multiplications: bool = False
    shape_rule: str = "same as the input"
    cost_rule: str = "none"
    example: Mapping[str, Any] = {}
    example_input: str = "map"
    onnx_types: Tuple[Any, ...] = ()

    def __init__(self) -> None:
        # (key, check, default) per attribute: the parser's loop, built once.
        self._fields = tuple((key, _FAST.get(a.kind, 0), a.check, a.default) for key, a in self.schema.items())
        self._finishes = type(self).finish_attrs is not Op.finish_attrs
        self._bare = not self._fields and not self._finishes
        self._omitted = tuple((key, a.default) for key, a in self.schema.items() if a.omit_default)
        self._allowed = frozenset(self.schema) | {"id", "op", "inputs"}

    # -- attributes ------------------------------------------------------------------------

    def parse_attrs(self, node_id: str, raw: Mapping[str, Any]) -> Dict[str, Any]:
        """Normalised attributes of a raw node object (which holds id, op and inputs too);
        errors name node ``node_id``.

        The parser calls this for every node of every spec it reads, so the common kinds are
        checked inline and the attribute's ``check`` (which also words the error) only runs for
        anything else.
        """
        attrs: Dict[str, Any] = {}
        if self._bare and len(raw) == 3:
            return attrs  # an op without attributes (activations, flatten...): nothing to check
        given = 3
        get = raw.get
        for key, fast, check, default in self._fields:
            value = get(key, _MISSING)
            if value is _MISSING:
                if default is REQUIRED:
                    raise SpecError(f"node {node_id!r}: {self.name} needs attribute {key!r}")
                attrs[key] = default
                continue
            given += 1
            kind = type(value)
            if kind is int:
                if fast == _FAST_POS_INT:
                    if value > 0:
                        attrs[key] = value
                        continue
                elif fast == _FAST_PAIR:
                    if value >= 1:
                        attrs[key] = (value, value)
                        continue
                elif fast == _FAST_PAD_PAIR and value >= 0:
                    attrs[key] = (value, value)
                    continue
            elif kind is list:
                if (fast == _FAST_PAIR or fast == _FAST_PAD_PAIR) and len(value) == 2:
                    h, w = value
                    low = 1 if fast == _FAST_PAIR else 0
                    if type(h) is int and type(w) is int and h >= low and w >= low:
                        attrs[key] = (h, w)
                        continue
            elif kind is bool and fast == _FAST_BOOL:
                attrs[key] = value
                continue
            attrs[key] = check(f"node {node_id!r}", key, value)
        if len(raw) != given:
            unknown = set(raw) - self._allowed
            if unknown:
                allowed = ", ".join(self.schema) or "none"
                raise SpecError(f"node {node_id!r}: unknown attribute(s) {', '.join(sorted(unknown))} for "
                                f"{self.name} (allowed: {allowed})")
        if self._finishes:
            self.finish_attrs(node_id, attrs)
        return attrs

    def finish_attrs(self, node_id: str, attrs: Dict[str, Any]) -> None:
        """Cross-attribute defaults and checks after the schema's (e.g. pool stride = kernel)."""

    def json_attrs(self, attrs: Mapping[str, Any]) -> Dict[str, Any]:
        """Attributes as JSON values (tuples as lists), ``omit_default`` ones left out at default."""
        data = {k: list(v) if type(v) is tuple else v for k, v in attrs.items()}
        for key, default in self._omitted:
            if data.get(key) == (list(default) if type(default) is tuple else default):
                del data[key]
        return data

    # -- shape and cost --------------------------------------------------------------------

    def infer(self, node: Any, shapes: Mapping[str, Shape], folded: frozenset) -> Inferred:
        """(output shape, params, deployed params, deployed biases, MACs) of ``node``.

        ``shapes`` maps every earlier tensor id to its shape (batch excluded); ``folded`` holds
        the ids of the conv-like nodes that absorb the batchnorm after them on export. Raises
        SpecError naming the node when the input shapes do not fit. Called for every node of
        every candidate judged: keep it flat.
        """
        return shapes[node.inputs[0]], 0, 0, 0, 0

    def loose_shape(self, node: Any, shapes: Mapping[str, Shape]) -> Optional[Shape]:
        """The output shape by formula alone, for a node :meth:`infer` rejected: lets a
        generator that tracks shapes keep consuming the same random draws after an invalid
        layer (its spec is rejected at the end), so seeded generators stay reproducible.
        None where no formula applies."""
        return None

    # -- torch and ONNX --------------------------------------------------------------------

    def torch_module(self, node: Any, in_shapes: List[Shape], out_shape: Shape) -> Any:
        """A freshly initialised ``torch.nn.Module`` computing the node from its inputs."""
        raise NotImplementedError(f"op {self.name!r} has no torch module")

    def emit_onnx(self, g: Any, node: Any, module: Any, inputs: List[str], in_shapes: List[Shape],
                  out_shape: Shape, out: str) -> str:
        """Append the node's ONNX nodes to ``g`` (``hostside.arch.export.GraphWriter``: ``g.node``,
        ``g.const``) and return the name of the tensor that holds its output. ``module`` is the
        eval-mode torch module (a folded batchnorm arrives as ``nn.Identity``); ``out`` is a
        unique name to use for the output (and as a prefix for helper tensors)."""
        raise NotImplementedError(f"op {self.name!r} has no ONNX emission")

    def from_onnx(self, op_type: str, attrs: Mapping[str, Any]) -> Dict[str, Any]:
        """The attributes of this op for an ONNX node of ``op_type`` (a type whose table row
        names this op in its ``arch`` column) with ONNX attributes ``attrs``, for ``arch
        import``; SpecError saying why when they have no equivalent here. By default an op
        takes a node without attributes (Relu, Sigmoid...) and refuses any other: an
        attribute dropped silently would import a different network."""
        if attrs:
            raise SpecError(f"attribute(s) {', '.join(sorted(attrs))} have no equivalent in ArchSpec's {self.name}")
        return {}

    # -- calibration features --------------------------------------------------------------

    def calibration_ops(self, node: Any, srcs: Tuple[str, ...], shapes: Dict[str, Shape], out_shape: Shape,
                        layer: Any, folded: bool) -> Optional[List[tuple]]:
        """The node as neutral operators ``(kind, output id, input ids, payload)`` of
        ``hostside.calibration.features`` (see ``hostside.arch.ops.neutral``), or None when it
        runs as nothing (dropout, a folded batchnorm): its output is then its input. ``srcs``
        are the input tensor names after such aliasing, ``shapes`` their shapes (add any helper
        tensor's shape to it), ``layer`` the node's ``LayerCost``, ``folded`` whether the node
        is a batchnorm folded into its conv."""
        raise NotImplementedError(f"op {self.name!r} has no calibration features")

    def __repr__(self) -> str:
        return f"<op {self.name}>"
