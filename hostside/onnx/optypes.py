"""The table of ONNX operator types: each one declared once, with what every reader does with it.

Why one table: ``arch stats``, the latency features, ``arch import`` and the precision
emulator each used to keep their own operator lists, and they drifted apart (the latency
features refused the ``Less``/``Where`` of the piecewise activation that ``arch stats``
costed). Here a row says, for one operator type of the default ``ai.onnx`` domain:

- ``cost``: how ``arch stats`` counts it: ``"macs"`` (Conv, ConvTranspose, Gemm, MatMul, see
  ``hostside.arch.onnx_stats``), ``"zero"`` (no MACs by its conventions), ``""`` (unknown: a
  graph running it is refused rather than costed as zero);
- ``params``: the input positions that hold a layer's weights or biases;
- ``neutral``: its kind in the latency features' neutral operator list
  (``hostside.calibration.features``): ``conv``, ``linear``, ``bn``, ``pool``,
  ``global_reduce`` (a mean or max that must be a global pool), ``reshape``, ``concat``,
  ``act`` (with ``activation``), ``eltwise`` (costed by the bytes it moves), ``skip``
  (vanishes); ``None``: refused, with ``refusal`` saying why when it is not the default;
- ``activation``: the activation's name, for the features and as the ArchSpec op;
- ``arch``: what ``arch import`` turns it into (an ArchSpec op, or a role such as the input
  normalisation); ``None``: no ArchSpec equivalent;
- ``keeps_values``: its outputs are values of its inputs (or zero), so the precision emulator
  does not round them again; ``multiplies``: the inputs that are multiplication operands
  (rounded in the emulator's ``multiplication`` mode);
- ``shape_math``: may compute shapes from ``Shape`` outputs (left out of the features like a
  constant); ``random``: its output differs between runs (never folded into a constant);
  ``subgraph``: holds a graph body (If/Loop/Scan).

Pruning works on ArchSpec nodes, not ONNX ones, so it needs no column here.

Rows here describe operator types as any exporter writes them. An ArchSpec op whose export
uses a type this table lacks, or onto which ``arch import`` maps a type, declares that row in
its own module (``Op.onnx_types``, e.g. ``LeakyRelu`` in ``hostside/arch/ops/leaky_relu.py``):
the op registry adds it here when the op registers (:func:`declare`), so a new op needs no line
here. This layer never imports the ops (it sits below them); each reader imports
``hostside.arch.ops`` before it builds its operator sets from the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple

#: The default ONNX operator domain (written as "" or "ai.onnx" in files).
DEFAULT_DOMAIN = "ai.onnx"


@dataclass(frozen=True)
class OpType:
    """What the readers know about one ONNX operator type (see the module docstring)."""

    name: str
    cost: str = "zero"
    params: Tuple[int, ...] = ()
    neutral: Optional[str] = "eltwise"
    activation: Optional[str] = None
    refusal: str = ""
    arch: Optional[str] = None
    keeps_values: bool = False
    multiplies: Tuple[int, ...] = ()
    shape_math: bool = False
    random: bool = False
    subgraph: bool = False


_ROWS = (
    # Layers with weights.
    OpType("Conv", cost="macs", params=(1, 2), neutral="conv", arch="conv2d", multiplies=(0, 1)),
    OpType("ConvTranspose", cost="macs", params=(1, 2), neutral=None, multiplies=(0, 1),
           refusal="is a transposed convolution, which the calibration suite never measured"),
    OpType("Gemm", cost="macs", params=(0, 1, 2), neutral="linear", arch="linear", multiplies=(0, 1)),
    OpType("MatMul", cost="macs", params=(0, 1), neutral="linear", arch="linear", multiplies=(0, 1)),
    OpType("BatchNormalization", params=(1, 2), neutral="bn", arch="batchnorm"),
    OpType("InstanceNormalization", params=(1, 2)),
    OpType("LayerNormalization", params=(1, 2)),
    OpType("GroupNormalization", params=(1, 2)),
    OpType("PRelu", params=(1,)),
    # Activations.
    OpType("Relu", neutral="act", activation="relu", arch="relu", keeps_values=True),
    OpType("Clip", neutral="act", activation="relu6", arch="relu6"),
    OpType("Sigmoid", neutral="act", activation="sigmoid", arch="sigmoid"),
    OpType("Tanh", neutral="act", activation="tanh", arch="tanh"),
    OpType("Elu", neutral="act", activation="elu", arch="elu"),
    OpType("Selu", neutral="act", activation="selu", arch="selu"),
    OpType("HardSwish", neutral="act", activation="hardswish", arch="hardswish"),
    *(OpType(name, neutral="act", activation=name.lower()) for name in (
        "Exp", "Log", "Erf", "Gelu", "Softplus", "Softsign", "Mish", "Celu", "Sin", "Cos", "Tan", "Sinh",
        "Cosh", "Asin", "Acos", "Atan", "Asinh", "Acosh", "Atanh")),
    # Pooling and reductions.
    OpType("MaxPool", neutral="pool", arch="maxpool", keeps_values=True),
    OpType("AveragePool", neutral="pool", arch="avgpool"),
    OpType("GlobalAveragePool", neutral="pool", arch="global_avgpool"),
    OpType("GlobalMaxPool", neutral="pool", keeps_values=True),
    OpType("LpPool", neutral="pool"),
    OpType("GlobalLpPool", neutral="pool"),
    OpType("ReduceMean", neutral="global_reduce", arch="global_avgpool"),
    OpType("ReduceMax", neutral="global_reduce"),
    # Data movement.
    OpType("Flatten", neutral="reshape", arch="flatten", keeps_values=True),
    OpType("Reshape", neutral="reshape", arch="flatten", keeps_values=True, shape_math=True),
    OpType("Squeeze", neutral="reshape", arch="flatten", keeps_values=True, shape_math=True),
    OpType("Unsqueeze", neutral="reshape", keeps_values=True, shape_math=True),
    OpType("Concat", neutral="concat", arch="concat", keeps_values=True, shape_math=True),
    OpType("Identity", neutral="skip", arch="identity", keeps_values=True, shape_math=True),
    OpType("Dropout", neutral="skip", arch="identity", keeps_values=True),
    OpType("Transpose", keeps_values=True),
    OpType("Pad", keeps_values=True),
    OpType("Slice", keeps_values=True, shape_math=True),
    OpType("Split", keeps_values=True),
    OpType("Gather", keeps_values=True, shape_math=True),
    OpType("Expand", keeps_values=True, shape_math=True),
    OpType("Tile", keeps_values=True),
    # Element-wise maths.
    OpType("Add", arch="add", shape_math=True),
    OpType("Sum", arch="add"),
    OpType("Mul", arch="silu", shape_math=True),
    OpType("Sub", arch="input normalisation", shape_math=True),
    OpType("Div", arch="input normalisation", shape_math=True),
    OpType("Softmax", arch="dropped as the last op"),
    OpType("LogSoftmax", arch="dropped as the last op"),
    OpType("Cast", shape_math=True),
    # Shapes and constants.
    OpType("Shape", shape_math=True),
    OpType("ConstantOfShape", shape_math=True),
    OpType("Range", shape_math=True),
    OpType("Constant", arch="constant"),
    # Control flow: the bodies are not costed, and the features and the emulator cannot run them.
    *(OpType(name, neutral=None, subgraph=True, refusal="holds a subgraph") for name in ("If", "Loop", "Scan")),
    # Random operators: no cost, and never folded into constants.
    *(OpType(name, cost="", neutral=None, random=True) for name in (
        "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli")),
    # Other element-wise and data-moving operators, costed by the bytes they move.
    *(OpType(name) for name in (
        "Abs", "And", "ArgMax", "ArgMin", "BitShift", "CastLike", "Ceil", "Compress", "CumSum", "DepthToSpace",
        "Equal", "EyeLike", "Floor", "GatherElements", "GatherND", "Greater", "GreaterOrEqual", "HardSigmoid",
        "Hardmax", "IsInf", "IsNaN", "LRN", "Less", "LessOrEqual", "LpNormalization", "Max", "Mean",
        "Min", "Mod", "Neg", "NonZero", "Not", "OneHot", "Or", "Pow", "Reciprocal", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Resize",
        "Round", "ScatterElements", "ScatterND", "Shrink", "Sign", "Size", "SpaceToDepth", "Sqrt", "ThresholdedRelu",
        "TopK", "Trilu", "Upsample", "Where", "Xor")),
)

OPS: Dict[str, OpType] = {}


def declare(row: OpType, owner: str = "hostside.onnx.optypes") -> OpType:
    """Add ``row`` to the table; ``owner`` (the table itself or an ArchSpec op) names who
    declared it in the error when a type is declared twice, which would leave the readers
    disagreeing about it."""
    if row.name in OPS:
        raise ValueError(f"ONNX operator type {row.name} is declared twice (again by {owner}); "
                         f"declare each type once, in this table or in one op module")
    OPS[row.name] = row
    return row


for _row in _ROWS:
    declare(_row)


def op_type(node: object) -> Optional[OpType]:
    """The row of a node's operator type; None for an unknown type or a custom-domain op."""
    domain = getattr(node, "domain", "") or DEFAULT_DOMAIN
    return OPS.get(getattr(node, "op_type", "")) if domain == DEFAULT_DOMAIN else None


def names(**column: object) -> FrozenSet[str]:
    """The operator types whose columns have the given values, e.g. ``names(cost="macs")``."""
    return frozenset(
        row.name for row in OPS.values() if all(getattr(row, key) == value for key, value in column.items()))

