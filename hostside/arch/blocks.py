"""The public ArchSpec builder: nodes and the classic blocks, with shapes tracked as they go.

Search spaces, the calibration suite and the random-spec family all write networks as
ArchSpecs; they share this builder instead of each keeping a private one, so a block means
the same nodes everywhere (and a fix to one is a fix to all). Shapes come from the ops' own
rules (``hostside.arch.ops``), so ``shape(x)`` is what the cost model will say.

Blocks (each returns the id of its output tensor):

- ``conv_bn_act``: conv -> batchnorm -> activation (the conv has no bias when a batchnorm
  follows, its shift replaces it); ``bn_act_conv``: the pre-activation order of DenseNets.
- ``residual``: the ResNet basic block (two kxk convs, identity or 1x1 projection shortcut).
- ``bottleneck``: the ResNet bottleneck (1x1 reduce, kxk, 1x1 expand, shortcut).
- ``inception``: parallel 1x1, 1x1->3x3, 1x1->5x5 and pool->1x1 branches, concatenated.
- ``dense_block`` / ``transition``: DenseNet layers concatenated onto their input, and the
  1x1 conv + average pool between dense blocks.
- ``depthwise_separable``: MobileNet-v1 (depthwise kxk, pointwise 1x1, both activated);
  ``inverted_residual``: MobileNet-v2 (1x1 expand, depthwise, linear 1x1, optional add).
- ``head``: optional global average pool, flatten, hidden linear layers and the classifier.

Node ids follow ``id_format`` (fields ``op``, ``index`` = position, ``number`` = position + 1)
unless a call names them. ``strict=False`` defers shape errors to :meth:`SpecBuilder.build`
(a rejected layer gets its shape by formula), so seeded generators consume the same random
draws whether or not a layer fits. Normalised attributes are cached per (op, attributes) and
shared between nodes: never mutate a node's ``attrs``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from hostside.arch.ops import get_op
from hostside.arch.ops.base import INPUT, Shape, SpecError
from hostside.arch.spec import FORMAT, VERSION, ArchSpec, Node, _parse_input_shape

Inputs = Union[str, Sequence[str]]
Kernel = Union[int, Tuple[int, int], List[int]]

_ATTRS: Dict[Tuple[str, tuple], Dict[str, Any]] = {}


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _normalised(op_name: str, node_id: str, attrs: Dict[str, Any]) -> Dict[str, Any]:
    """The op's normalised attributes, parsed once per distinct (op, attributes)."""
    try:
        key = (op_name, tuple(sorted((k, _frozen(v)) for k, v in attrs.items())))
        found = _ATTRS.get(key)
    except TypeError:  # an unhashable value: parse without caching
        key, found = None, None
    if found is None:
        op = get_op(op_name)
        found = op.parse_attrs(node_id, {"id": "", "op": op_name, "inputs": (), **attrs})
        if key is not None:
            _ATTRS[key] = found
    return found


def same_padding(kernel: Kernel, dilation: int = 1) -> Union[int, List[int]]:
    """Padding that keeps H x W at stride 1 for odd kernels: dilation * (k - 1) // 2."""
    if isinstance(kernel, int):
        return dilation * (kernel - 1) // 2
    return [dilation * (k - 1) // 2 for k in kernel]


class SpecBuilder:
    """Appends nodes in execution order and tracks every tensor's shape."""

    def __init__(self, input_shape: Sequence[int], id_format: str = "{op}{index}", strict: bool = True):
        self.input_shape = _parse_input_shape(tuple(input_shape))
        self.id_format = id_format
        self.strict = strict
        self.nodes: List[Node] = []
        self.problems: List[str] = []  # shape errors deferred when not strict, in node order
        self._shapes: Dict[str, Optional[Shape]] = {INPUT: self.input_shape}
        self._last = INPUT

    # -- nodes ------------------------------------------------------------------------------

    def add(self, op: str, inputs: Inputs, id: Optional[str] = None, **attrs: Any) -> str:
        """One node of ``op`` reading ``inputs`` (an id or a list of ids); returns its id."""
        srcs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
        node_id = id if id is not None else self.id_format.format(op=op, index=len(self.nodes),
                                                                  number=len(self.nodes) + 1)
        definition = get_op(op)
        for src in srcs:
            if src not in self._shapes:
                raise SpecError(f"node {node_id!r}: input {src!r} is not a node id (dangling input)")
        if node_id in self._shapes:
            raise SpecError(f"node {node_id!r}: duplicate id")
        node = Node(node_id, definition.name, srcs, _normalised(definition.name, node_id, attrs))
        self.nodes.append(node)
        self._shapes[node_id] = self._infer(definition, node)
        self._last = node_id
        return node_id

    def _infer(self, definition: Any, node: Node) -> Optional[Shape]:
        if any(self._shapes[s] is None for s in node.inputs):
            return None
        if definition.shape_preserving:
            return self._shapes[node.inputs[0]]
        try:
            return definition.infer(node, self._shapes, frozenset())[0]
        except SpecError as exc:
            if self.strict:
                self.nodes.pop()
                raise
            self.problems.append(str(exc))
            return definition.loose_shape(node, self._shapes)

    def shape(self, x: str) -> Optional[Shape]:
        """The shape of tensor ``x`` (batch excluded); None after a rejected layer without formula."""
        return self._shapes[x]

    def channels(self, x: str) -> int:
        shape = self._shapes[x]
        if shape is None:
            raise SpecError(f"the shape of {x!r} is unknown (an earlier layer was rejected)")
        return shape[0]

    def merge(self, op: str, inputs: Sequence[str]) -> str:
        """``add`` or ``concat`` of several tensors (aligned as ``hostside.arch.ops.merge`` says)."""
        return self.add(op, list(inputs))

    def pool(self, x: str, kind: str = "max", kernel: Kernel = 2, stride: Optional[Kernel] = None,
             padding: Kernel = 0) -> str:
        attrs: Dict[str, Any] = {"kernel": kernel, "padding": padding}
        if stride is not None:
            attrs["stride"] = stride
        return self.add(f"{kind}pool", x, **attrs)

    # -- blocks -----------------------------------------------------------------------------

    def conv_bn_act(self, x: str, out_channels: int, kernel: Kernel, stride: Kernel = 1,
                    padding: Optional[Kernel] = None, groups: int = 1, dilation: int = 1, bn: bool = True,
                    act: Optional[str] = "relu", bias: Optional[bool] = None,
                    ids: Optional[Sequence[str]] = None) -> str:
        """conv -> batchnorm (if ``bn``) -> ``act`` (None or "identity": none). ``padding``
        defaults to :func:`same_padding`, ``bias`` to ``not bn``; ``ids`` names the nodes."""
        names = list(ids) if ids is not None else []
        x = self.add("conv2d", x, names.pop(0) if names else None, out_channels=int(out_channels), kernel=kernel,
                     stride=stride, padding=same_padding(kernel, dilation) if padding is None else padding,
                     dilation=dilation, groups=groups, bias=(not bn) if bias is None else bias)
        if bn:
            x = self.add("batchnorm", x, names.pop(0) if names else None)
        if act is not None and act != "identity":
            x = self.add(act, x, names.pop(0) if names else None)
        return x

    def bn_act_conv(self, x: str, out_channels: int, kernel: Kernel, act: str = "relu", stride: Kernel = 1) -> str:
        """batchnorm -> activation -> conv without bias (DenseNet's pre-activation order)."""
        x = self.add(act, self.add("batchnorm", x))
        return self.add("conv2d", x, out_channels=int(out_channels), kernel=kernel, stride=stride,
                        padding=same_padding(kernel), bias=False)

    def _shortcut(self, x: str, out_channels: int, stride: int, bn: bool) -> str:
        """Identity, or a 1x1 projection (conv + batchnorm) where the stride or width changes."""
        if stride != 1 or self.channels(x) != out_channels:
            return self.conv_bn_act(x, out_channels, 1, stride=stride, bn=bn, act=None)
        return x

    def residual(self, x: str, out_channels: int, stride: int = 1, kernel: int = 3, act: str = "relu",
                 bn: bool = True) -> str:
        """ResNet basic block: conv-bn-act, conv-bn, + shortcut, act."""
        y = self.conv_bn_act(x, out_channels, kernel, stride=stride, bn=bn, act=act)
        y = self.conv_bn_act(y, out_channels, kernel, bn=bn, act=None)
        return self.add(act, self.merge("add", [y, self._shortcut(x, out_channels, stride, bn)]))

    def bottleneck(self, x: str, out_channels: int, mid_channels: int, stride: int = 1, kernel: int = 3,
                   groups: int = 1, act: str = "relu", bn: bool = True) -> str:
        """ResNet bottleneck: 1x1 reduce, kxk (stride, groups), 1x1 expand without act, + shortcut, act."""
        y = self.conv_bn_act(x, mid_channels, 1, bn=bn, act=act)
        y = self.conv_bn_act(y, mid_channels, kernel, stride=stride, groups=groups, bn=bn, act=act)
        y = self.conv_bn_act(y, out_channels, 1, bn=bn, act=None)
        return self.add(act, self.merge("add", [y, self._shortcut(x, out_channels, stride, bn)]))

    def inception(self, x: str, branch1: Optional[int] = None, branch3: Optional[Tuple[int, int]] = None,
                  branch5: Optional[Tuple[int, int]] = None, pool_proj: Optional[int] = None,
                  act: str = "relu", bn: bool = True) -> str:
        """Inception module: 1x1; 1x1 reduce -> 3x3; 1x1 reduce -> 5x5; 3x3 max-pool -> 1x1 (each
        optional; a reduce of 0 skips the 1x1), concatenated in that order."""
        branches = []
        if branch1:
            branches.append(self.conv_bn_act(x, branch1, 1, bn=bn, act=act))
        for spec, kernel in ((branch3, 3), (branch5, 5)):
            if spec:
                reduce, out = spec
                y = self.conv_bn_act(x, reduce, 1, bn=bn, act=act) if reduce else x
                branches.append(self.conv_bn_act(y, out, kernel, bn=bn, act=act))
        if pool_proj:
            branches.append(self.conv_bn_act(self.pool(x, "max", 3, 1, 1), pool_proj, 1, bn=bn, act=act))
        if len(branches) < 2:
            raise SpecError("an inception module needs at least two branches")
        return self.merge("concat", branches)

    def dense_block(self, x: str, layers: int, growth: int, bottleneck: int = 0, kernel: int = 3,
                    act: str = "relu") -> str:
        """DenseNet block: ``layers`` times [bn-act-1x1 (``bottleneck`` x growth, if > 0),]
        bn-act-kxk conv of ``growth`` channels, concatenated onto the running input."""
        for _ in range(layers):
            y = self.bn_act_conv(x, bottleneck * growth, 1, act) if bottleneck else x
            y = self.bn_act_conv(y, growth, kernel, act)
            x = self.merge("concat", [x, y])
        return x

    def transition(self, x: str, out_channels: int, act: str = "relu") -> str:
        """Between dense blocks: bn-act-1x1 conv, 2x2 average pool."""
        return self.pool(self.bn_act_conv(x, out_channels, 1, act), "avg", 2)

    def depthwise_separable(self, x: str, out_channels: int, kernel: int = 3, stride: int = 1,
                            act: str = "relu", bn: bool = True) -> str:
        """MobileNet-v1: depthwise kxk conv-bn-act, pointwise 1x1 conv-bn-act."""
        channels = self.channels(x)
        y = self.conv_bn_act(x, channels, kernel, stride=stride, groups=channels, bn=bn, act=act)
        return self.conv_bn_act(y, out_channels, 1, bn=bn, act=act)

    def inverted_residual(self, x: str, out_channels: int, kernel: int = 3, stride: int = 1, expand: int = 1,
                          residual: Optional[bool] = None, act: str = "relu6", bn: bool = True) -> str:
        """MobileNet-v2: 1x1 expand (if ``expand`` > 1), depthwise kxk, linear 1x1 projection;
        ``residual`` (default: where stride 1 keeps the width) adds the input."""
        channels = self.channels(x)
        hidden = channels * expand
        y = self.conv_bn_act(x, hidden, 1, bn=bn, act=act) if expand > 1 else x
        y = self.conv_bn_act(y, hidden, kernel, stride=stride, groups=hidden, bn=bn, act=act)
        y = self.conv_bn_act(y, out_channels, 1, bn=bn, act=None)
        if residual is None:
            residual = stride == 1 and out_channels == channels
        return self.merge("add", [y, x]) if residual else y

    def head(self, x: str, num_classes: int, global_pool: bool = True, hidden: Sequence[int] = (),
             act: str = "relu", dropout: float = 0.0) -> str:
        """[global average pool,] flatten, [linear + act]* per ``hidden`` width, [dropout,] classifier."""
        if global_pool:
            x = self.add("global_avgpool", x)
        x = self.add("flatten", x)
        for width in hidden:
            x = self.add(act, self.add("linear", x, out_features=int(width)))
        if dropout:
            x = self.add("dropout", x, p=dropout)
        return self.add("linear", x, out_features=num_classes)

    # -- results ----------------------------------------------------------------------------

    def _num_classes(self, num_classes: Optional[int], output: str) -> int:
        if num_classes is not None:
            return num_classes
        shape = self._shapes.get(output)
        if shape is None or len(shape) != 1:
            raise SpecError(f"node {output!r}: the network must end in a feature vector (flatten + linear); "
                            f"got shape {None if shape is None else list(shape)}")
        return shape[0]

    def build(self, num_classes: Optional[int] = None, name: str = "", output: Optional[str] = None) -> ArchSpec:
        """The validated ArchSpec (``num_classes`` defaults to the output's width); raises the
        first deferred shape error, if any."""
        if self.problems:
            raise SpecError(self.problems[0])
        output = output or self._last
        return ArchSpec(self.input_shape, self._num_classes(num_classes, output), self.nodes, output, name)

    def to_dict(self, num_classes: Optional[int] = None, name: str = "") -> Dict[str, Any]:
        """The spec as JSON data, unvalidated (a builder that is not strict may hold errors)."""
        data: Dict[str, Any] = {"format": FORMAT, "version": VERSION}
        if name:
            data["name"] = name
        output = self._last
        if num_classes is None and self._shapes.get(output) is None and self.problems:
            raise SpecError(self.problems[0])
        data.update(input_shape=list(self.input_shape), num_classes=self._num_classes(num_classes, output),
                    nodes=[n.to_dict() for n in self.nodes], output=output)
        return data

