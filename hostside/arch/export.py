"""Export a (trained) SpecNet to one self-contained ONNX file a board can run as is.

The graph takes the raw input values: the dataset's normalisation is its first operation,
so the device agent needs no preprocessing code. Batchnorms that ``hostside.arch.cost``
counts as folded are folded into their conv here.

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
from hostside.arch.cost import analyze
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
        if n.op == "batchnorm" and n.inputs[0] in spec.folded_convs
    ]


def _normalization(spec: ArchSpec, mean: Optional[Sequence[float]], std: Optional[Sequence[float]]):
    channels = spec.input_shape[0]
    mean = [0.0] * channels if mean is None else [float(v) for v in mean]
    std = [1.0] * channels if std is None else [float(v) for v in std]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(f"normalisation needs {channels} means and {channels} positive stds, got {mean} / {std}")
    return mean, std


class _GraphWriter:
    """Accumulates ONNX nodes and initializers with unique names."""

    def __init__(self):
        from onnx import helper, numpy_helper

        self.helper = helper
        self.numpy_helper = numpy_helper
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: List[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output


def _tensor(t: Optional[torch.Tensor]) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _emit(net: SpecNet, mean: List[float], std: List[float]):
    """The ONNX ModelProto of a batchnorm-folded, eval-mode SpecNet."""
    from onnx import TensorProto

    spec = net.spec
    cost = analyze(spec)
    shapes = {INPUT: spec.input_shape, **{layer.id: layer.output_shape for layer in cost.layers}}
    g = _GraphWriter()
    channels = spec.input_shape[0]
    mean_c = g.const("norm_mean", np.array(mean, np.float32).reshape(channels, 1, 1))
    inv_std_c = g.const("norm_inv_std", (1.0 / np.array(std, np.float32)).reshape(channels, 1, 1))
    centred = g.node("Sub", [INPUT_NAME, mean_c], "norm_centred")
    names: Dict[str, str] = {INPUT: g.node("Mul", [centred, inv_std_c], "norm_scaled")}

    for i, (node, layer) in enumerate(zip(spec.nodes, net.layers)):
        op, a, out = node.op, node.attrs, f"n{i}_{node.op}"
        x = names[node.inputs[0]]
        if isinstance(layer, nn.Identity) and op == "batchnorm":
            names[node.id] = x  # folded into the conv before it
            continue
        if op == "conv2d":
            inputs = [x, g.const(f"{out}.weight", _tensor(layer.weight))]
            if layer.bias is not None:
                inputs.append(g.const(f"{out}.bias", _tensor(layer.bias)))
            ph, pw = a["padding"]
            names[node.id] = g.node(
                "Conv", inputs, out, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                pads=[ph, pw, ph, pw], dilations=list(a["dilation"]), group=a["groups"],
            )
        elif op == "batchnorm":
            names[node.id] = g.node(
                "BatchNormalization",
                [x, g.const(f"{out}.scale", _tensor(layer.weight)), g.const(f"{out}.bias", _tensor(layer.bias)),
                 g.const(f"{out}.running_mean", _tensor(layer.running_mean)),
                 g.const(f"{out}.running_var", _tensor(layer.running_var))],
                out, epsilon=float(layer.eps),
            )
        elif op == "linear":
            inputs = [x, g.const(f"{out}.weight", _tensor(layer.weight))]
            if layer.bias is not None:
                inputs.append(g.const(f"{out}.bias", _tensor(layer.bias)))
            names[node.id] = g.node("Gemm", inputs, out, transB=1)
        elif op in ("maxpool", "avgpool"):
            ph, pw = a["padding"]
            kwargs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=[ph, pw, ph, pw])
            if op == "avgpool":
                kwargs["count_include_pad"] = 1  # torch's AvgPool2d default
            names[node.id] = g.node("MaxPool" if op == "maxpool" else "AveragePool", [x], out, **kwargs)
        elif op == "global_avgpool":
            names[node.id] = g.node("GlobalAveragePool", [x], out)
        elif op == "flatten":
            names[node.id] = g.node("Flatten", [x], out, axis=1)
        elif op in ("dropout", "identity"):
            names[node.id] = x  # nothing to do at inference
        elif op in ("add", "concat"):
            names[node.id] = _emit_merge(g, op, out, [names[s] for s in node.inputs],
                                         [shapes[s] for s in node.inputs], shapes[node.id])
        else:
            names[node.id] = _emit_activation(g, op, x, out)

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


def _emit_activation(g: _GraphWriter, op: str, x: str, out: str) -> str:
    if op == "relu6":
        return g.node("Clip", [x, g.const(f"{out}.min", np.array(0.0, np.float32)),
                               g.const(f"{out}.max", np.array(6.0, np.float32))], out)
    if op == "silu":  # opset 17 has no Swish: x * sigmoid(x)
        return g.node("Mul", [x, g.node("Sigmoid", [x], f"{out}.sigmoid")], out)
    onnx_op = {"relu": "Relu", "elu": "Elu", "selu": "Selu", "sigmoid": "Sigmoid", "tanh": "Tanh",
               "hardswish": "HardSwish"}[op]
    return g.node(onnx_op, [x], out)


def _emit_merge(g: _GraphWriter, op: str, out: str, inputs: List[str], in_shapes: List[tuple],
                out_shape: tuple) -> str:
    """CGP-style alignment (max-pool larger maps down, zero-pad narrower ones) then Sum/Concat."""
    aligned = []
    for k, (x, shape) in enumerate(zip(inputs, in_shapes)):
        if len(shape) == 3 and shape[1:] != out_shape[1:]:
            ratio = [shape[1] // out_shape[1], shape[2] // out_shape[2]]
            x = g.node("MaxPool", [x], f"{out}.pool{k}", kernel_shape=ratio, strides=ratio)
        if op == "add" and shape[0] != out_shape[0]:
            # ONNX pads: begins for every axis, then ends; only the channel axis (1) ends padded.
            ends = [0, out_shape[0] - shape[0]] + [0] * (len(shape) - 1)
            pads = g.const(f"{out}.pads{k}", np.array([0] * (len(shape) + 1) + ends, np.int64))
            x = g.node("Pad", [x, pads], f"{out}.pad{k}", mode="constant")
        aligned.append(x)
    if op == "concat":
        return g.node("Concat", aligned, out, axis=1)
    return g.node("Sum", aligned, out)


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
    with torch.no_grad():
        want = net((torch.from_numpy(example) - mean_t) / std_t).numpy()
    net.train(was_training)
    return float(np.max(np.abs(got - want)))
