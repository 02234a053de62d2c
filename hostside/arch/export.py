"""Export a (trained) SpecNet to one self-contained ONNX file a board can run as is.

The graph takes the raw input values: the dataset's normalisation is its first operation,
so the device agent needs no preprocessing code. Batchnorms that ``hostside.arch.cost``
counts as folded are folded into their conv here. Each node's ONNX nodes are written by its
op (``Op.emit_onnx`` in ``hostside.arch.ops``).

Why we write the graph ourselves with ``onnx.helper`` instead of calling
``torch.onnx.export``: torch's TorchScript exporter applies optimisations that change the
parameter count in ways the cost model cannot predict (it moves a conv's bias into the next
conv when no non-linearity separates them, folds some batchnorms and not others), and the
torch.export-based exporter takes 2-3 s a model, which a calibration suite of hundreds of
models cannot afford. The spec already names every operation, so emitting the graph is a
direct mapping (milliseconds), the file's cost equals the analytic cost by construction,
and onnxruntime's output is still checked against torch's on every export.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from hostside.arch.build import SpecNet
from hostside.arch.ops import REGISTRY
from hostside.arch.spec import INPUT, ArchSpec

OPSET = 17
# IR version 8 keeps the files loadable by the older onnxruntime releases boards ship
# (Debian's 1.21 on 32-bit Raspberry Pi OS, pip wheels for Python 3.9).
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


@dataclass
class ExportReport:
    """What was written and how closely onnxruntime reproduces torch on it."""

    path: str
    sha256: str
    size_bytes: int
    opset: int
    max_abs_diff: float


def fold_batchnorms(net: SpecNet) -> SpecNet:
    """A copy of ``net`` in eval mode with every conv -> batchnorm pair the cost model folds
    merged into the conv (the batchnorm becomes an identity)."""
    net = copy.deepcopy(net).eval()
    for conv_pos, bn_pos in _folded_pairs(net.spec):
        net.layers[conv_pos] = fuse_conv_bn_eval(net.layers[conv_pos], net.layers[bn_pos])
        net.layers[bn_pos] = nn.Identity()
    return net


def _folded_pairs(spec: ArchSpec) -> List[Tuple[int, int]]:
    """(conv position, batchnorm position) for each batchnorm the cost model counts as folded."""
    position = {n.id: i for i, n in enumerate(spec.nodes)}
    return [
        (position[n.inputs[0]], i)
        for i, n in enumerate(spec.nodes)
        if REGISTRY[n.op].folds_into_producer and n.inputs[0] in spec.folded_convs
    ]


def _normalization(spec: ArchSpec, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]):
    channels = spec.input_shape[0]
    mean = [0.0] * channels if mean is None else [float(v) for v in mean]
    std = [1.0] * channels if std is None else [float(v) for v in std]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(f"normalisation needs {channels} means and {channels} positive stds, got {mean} / {std}")
    return mean, std


class GraphWriter:
    """Accumulates ONNX nodes and initializers; what ``Op.emit_onnx`` writes into."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        """An initializer named ``name`` (unique: use the node's output name as a prefix)."""
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: List[str], output: str, **attrs) -> str:
        """One ONNX node with a single output named ``output``; returns that name."""
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    @staticmethod
    def array(t: Optional[torch.Tensor]) -> np.ndarray:
        """A torch parameter or buffer as a float32 array."""
        return t.detach().cpu().numpy().astype(np.float32)


def _emit(net: SpecNet, mean: List[float], std: List[float]):
    """The ONNX ModelProto of a batchnorm-folded, eval-mode SpecNet; each node as its op emits it."""
    from onnx import TensorProto

    spec = net.spec
    shapes = {INPUT: spec.input_shape, **{layer.id: layer.output_shape for layer in spec.cost.layers}}
    g = GraphWriter()
    channels = spec.input_shape[0]
    mean_c = g.const("norm_mean", np.array(mean, np.float32).reshape(channels, 1, 1))
    inv_std_c = g.const("norm_inv_std", (1.0 / np.array(std, np.float32)).reshape(channels, 1, 1))
    centred = g.node("Sub", [INPUT_NAME, mean_c], "norm_centred")
    names: Dict[str, str] = {INPUT: g.node("Mul", [centred, inv_std_c], "norm_scaled")}

    for i, (node, layer) in enumerate(zip(spec.nodes, net.layers)):
        names[node.id] = REGISTRY[node.op].emit_onnx(
            g, node, layer, [names[s] for s in node.inputs], [shapes[s] for s in node.inputs], shapes[node.id],
            f"n{i}_{node.op}",
        )

    # The graph's output must be a node output of its own name.
    g.node("Identity", [names[spec.output]], OUTPUT_NAME)
    h = g.helper
    graph = h.make_graph(
        g.nodes, spec.name or "archspec",
        [h.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *spec.input_shape])],
        [h.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", spec.num_classes])],
        initializer=g.initializers,
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], producer_name="hostside")
    model.ir_version = IR_VERSION
    return model


def export_onnx(
    net: SpecNet,
    path: Union[str, Path],
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    check: bool = True,
) -> ExportReport:
    """Write ``net`` to ``path`` as ONNX (opset 17, dynamic batch) with normalisation inside.

    With ``check`` the file goes through ``onnx.checker`` and onnxruntime is compared with
    torch on a seeded random input; the maximum absolute difference is reported.
    """
    import onnx

    mean, std = _normalization(net.spec, mean, std)
    folded = fold_batchnorms(net)
    model = _emit(folded, mean, std)
    data = model.SerializeToString()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    max_diff = float("nan")
    if check:
        onnx.checker.check_model(model, full_check=True)
        max_diff = _max_abs_diff(net, mean, std, data)
    return ExportReport(str(path), hashlib.sha256(data).hexdigest(), len(data), OPSET, max_diff)


def _max_abs_diff(net: SpecNet, mean: List[float], std: List[float], onnx_bytes: bytes) -> float:
    import onnxruntime as ort

    spec = net.spec
    example = np.random.default_rng(0).uniform(0.0, 1.0, size=(2, *spec.input_shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    got = session.run(None, {INPUT_NAME: example})[0]
    mean_t = torch.tensor(mean).reshape(-1, 1, 1)
    std_t = torch.tensor(std).reshape(-1, 1, 1)
    was_training = net.training
    net.eval()
    from hostside.approx.conv import float_products  # the file is the float model (approx_conv2d)

    with torch.no_grad(), float_products():
        want = net((torch.from_numpy(example) - mean_t) / std_t).numpy()
    net.train(was_training)
    return float(np.max(np.abs(got - want)))
