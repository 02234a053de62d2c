"""A small graph builder the narrow families write their networks with.

Why not ArchSpec dicts: the laws' genetic algorithm and the Pareto elaboration build tens of
thousands of networks, and parsing a JSON-like dict costs several microseconds per node. The
families produce only well-formed nodes, so each distinct (op, attributes) pair is normalised
once (by the ArchSpec parser itself, so defaults and checks stay the parser's) and reused; the
networks a law samples skip the ArchSpec parser and graph checks (``trusted_spec``): nodes are
appended in execution order and every one feeds the output, which the tests check against the
validating constructor for random configurations of every family. ``decode`` (what a search
journals and trains) still validates.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from hostside.arch.cost import analyze
from hostside.arch.spec import INPUT, ArchSpec, Node, _dataflow, _parse_node

_ATTRS: Dict[Tuple[str, Tuple[Tuple[str, Any], ...]], Dict[str, Any]] = {}
_DATAFLOW: Dict[tuple, tuple] = {}
_DATAFLOW_MAX = 4096


def _normalised(op: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
    key = (op, tuple(attrs.items()))  # call sites pass attributes in a fixed order
    found = _ATTRS.get(key)
    if found is None:
        n_inputs = 2 if op in ("add", "concat") else 1
        found = _parse_node({"id": "n", "op": op, "inputs": [INPUT] * n_inputs, **attrs}, 0).attrs
        _ATTRS[key] = found
    return found


# (channels, kernel, stride, padding, groups) -> the normalised attributes of a bias-free conv.
_CONV_ATTRS: Dict[Tuple[int, int, int, int, int], Dict[str, Any]] = {}
_BN_ATTRS = _normalised("batchnorm", {})


class Graph:
    """Nodes appended in execution order, with ids numbered per kind (``conv3``, ``bn3``...)."""

    def __init__(self) -> None:
        self.nodes: List[Node] = []
        self._count = 0

    def add(self, op: str, inputs: Sequence[str], **attrs: Any) -> str:
        self._count += 1
        nid = op + str(self._count)
        found = _ATTRS.get((op, tuple(attrs.items())))
        self.nodes.append(Node(nid, op, tuple(inputs), found if found is not None else _normalised(op, attrs)))
        return nid

    def conv_bn_act(self, src: str, channels: int, kernel: int, stride: int = 1, groups: int = 1,
                    act: str = "relu", padding: int = -1) -> str:
        """conv (no bias: the batchnorm's shift replaces it) -> batchnorm -> activation."""
        pad = kernel // 2 if padding < 0 else padding
        attrs = _CONV_ATTRS.get((channels, kernel, stride, pad, groups))
        if attrs is None:
            attrs = _CONV_ATTRS[(channels, kernel, stride, pad, groups)] = _normalised(
                "conv2d", dict(out_channels=channels, kernel=kernel, stride=stride, padding=pad, groups=groups,
                               bias=False))
        # The three nodes appended directly: the laws build tens of thousands of these.
        count = self._count
        conv, bn = "conv2d" + str(count + 1), "batchnorm" + str(count + 2)
        nodes = self.nodes
        nodes.append(Node(conv, "conv2d", (src,), attrs))
        nodes.append(Node(bn, "batchnorm", (conv,), _BN_ATTRS))
        self._count = count + 2
        return self.add(act, (bn,)) if act != "identity" else bn

    def bn_act_conv(self, src: str, channels: int, kernel: int, act: str = "relu") -> str:
        """The pre-activation order of DenseNets: batchnorm -> activation -> conv."""
        bn = self.add("batchnorm", [src])
        relu = self.add(act, [bn])
        return self.add("conv2d", [relu], out_channels=channels, kernel=kernel, padding=kernel // 2, bias=False)

    def head(self, src: str, num_classes: int, pool: bool = True) -> str:
        """Global average pool (optional), flatten and the linear classifier."""
        if pool:
            src = self.add("global_avgpool", [src])
        flat = self.add("flatten", [src])
        return self.add("linear", [flat], out_features=num_classes)

    def spec(self, input_shape: Sequence[int], num_classes: int, name: str = "") -> ArchSpec:
        return ArchSpec(input_shape, num_classes, self.nodes, name=name)

    def trusted_spec(self, input_shape: Sequence[int], num_classes: int, name: str = "") -> ArchSpec:
        """The same ArchSpec as ``spec`` without re-validating a graph built valid by construction.

        Why: the validating constructor costs several times the analytic cost itself, and the
        laws judge ten thousand networks per run. Cost is still computed by ``analyze``.
        """
        spec = ArchSpec.__new__(ArchSpec)
        spec.input_shape = tuple(input_shape)
        spec.num_classes = num_classes
        spec.nodes = tuple(self.nodes)
        spec.output = self.nodes[-1].id
        spec.name = name
        spec._index = {n.id: i for i, n in enumerate(spec.nodes)}
        # The dataflow facts depend only on the graph's structure, which many networks of a law share.
        structure = tuple((n.op, n.inputs) for n in spec.nodes)
        flow = _DATAFLOW.get(structure)
        if flow is None:
            flow = _DATAFLOW[structure] = _dataflow(spec.nodes, spec.output)
            if len(_DATAFLOW) > _DATAFLOW_MAX:
                _DATAFLOW.pop(next(iter(_DATAFLOW)))
        spec.folded_convs, spec.frees = flow
        spec._cost = analyze(spec)
        return spec
