"""Run a model as if it computed in a reduced number format, on the host, in float32.

Two methods (``MODES``):

- ``extrinsic`` (the IoT precision analysis, section 3.2): every parameter and every
  activation map passed between operations is rounded to the format; each operation itself
  computes in float32 on the rounded values.
- ``multiplication`` (EA4CNN, section 3.6): only the operands of the convolution and fully
  connected multiplications (their input map and their weights) are rounded; the product is
  kept exact and accumulated in float32 with the bias, and every other operation (batchnorm,
  activations, pooling, adds) stays float32. This is what EA4CNN's modified TinyDNN does:
  operands converted to fixed point, multiplied, the product converted back to float.

Two routes compute the same thing:

- :class:`OnnxEmulator` for any ONNX file (our exports, ``arch import``-ed or foreign models).
  It runs the graph *node by node*, each node as its own onnxruntime session, and rounds the
  tensors between them. Why not a numpy interpreter of ArchSpec's ops: onnxruntime then
  computes every op exactly as on the board, and every op of any imported model is covered
  with no code of ours; why not one session exposing the intermediate outputs: onnxruntime
  cannot then feed the *rounded* maps to the next op. Ops that only select or move values
  (ReLU, max-pool, reshape, ...) output values that are already in the format, so their
  outputs are not rounded again.
- :func:`emulate_module` for a torch module (an ArchSpec-built ``SpecNet``), with forward
  hooks on its leaf modules.

The float model (``fmt=None``) is the reference every accuracy drop is measured against.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

import hostside.arch.ops  # noqa: F401 - the op modules declare their ONNX types in the table
from hostside.errors import UserError
from hostside.onnx.graph import network_input
from hostside.onnx.load import read_model
from hostside.onnx.optypes import OPS, names
from hostside.onnx.runtime import fixed_batch, run_in_chunks
from hostside.precision.formats import FixedFormat, FloatFormat

MODES = ("extrinsic", "multiplication")
RoundingFormat = Union[FloatFormat, FixedFormat]
EVAL_BATCH = 512

# From the operator table (hostside.onnx.optypes): the float inputs that are the operands of
# multiplications, per op; the ops whose outputs are values of their inputs (or zero), so
# rounded inputs give rounded outputs; the ops that hold a subgraph.
MULTIPLYING_INPUTS: Dict[str, Tuple[int, ...]] = {row.name: row.multiplies for row in OPS.values() if row.multiplies}
VALUE_PRESERVING = names(keeps_values=True)
_SUBGRAPH_OPS = names(subgraph=True)


@dataclass
class EmulationResult:
    """Accuracy under one format; ``accuracy`` is NaN when logits were NaN, with the ``reason``."""

    format: str
    mode: str
    accuracy: float
    correct: int
    count: int
    reason: str = ""
    first_inf_node: Optional[str] = None
    first_nan_node: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": self.format, "mode": self.mode,
            "accuracy": None if math.isnan(self.accuracy) else self.accuracy,
            "correct": self.correct, "count": self.count, "reason": self.reason or None,
        }


@dataclass
class _Trace:
    """Where non-finite values first appeared in one forward pass."""

    first_inf: Optional[str] = None
    first_nan: Optional[str] = None

    def look(self, name: str, value: np.ndarray) -> None:
        if self.first_nan is not None or value.dtype != np.float32 or not value.size:
            return
        if math.isfinite(float(value.sum(dtype=np.float64))):
            return
        if self.first_inf is None and np.isinf(value).any():
            self.first_inf = name
        if np.isnan(value).any():
            self.first_nan = name


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"unknown emulation mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


class OnnxEmulator:
    """An ONNX model split into one onnxruntime session per node, so tensors can be rounded
    between nodes. ``run`` gives the logits under a format; ``evaluate`` the accuracy."""

    def __init__(self, model: Union[str, Path, Any], threads: int = 1):
        import onnx
        import onnxruntime as ort

        self.where = str(model) if isinstance(model, (str, Path)) else (model.graph.name or "model")
        if isinstance(model, (str, Path)):
            model = read_model(model, weights=True)
        graph = model.graph
        self.constants: Dict[str, np.ndarray] = {t.name: onnx.numpy_helper.to_array(t) for t in graph.initializer}
        first = network_input(model, self.where)
        self.input_name = first.name
        dims = [d.dim_value if d.HasField("dim_value") else None for d in first.type.tensor_type.shape.dim]
        self.input_shape = tuple(dims[1:])
        # A file exported with a fixed batch (of 1) is run that many images at a time.
        self.fixed_batch = fixed_batch(dims)
        self.output_name = graph.output[0].name
        types = _elem_types(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._full = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.nodes: List[Tuple[Any, Any, List[str]]] = []  # (node, session, fed input names)
        for index, node in enumerate(graph.node):
            label = f"node {node.name or node.output[0]!r} ({node.op_type})"
            if node.op_type in _SUBGRAPH_OPS:
                raise UserError(f"{self.where}: {label} holds a subgraph; the emulator runs plain graphs only")
            single, fed = _single_node_model(model, node, index, types, self.constants)
            try:
                session = ort.InferenceSession(single.SerializeToString(), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's errors are untyped
                raise UserError(f"{self.where}: onnxruntime cannot run {label} on its own ({exc})") from None
            self.nodes.append((node, session, fed))
        self.float_constants = {k for k, v in self.constants.items() if v.dtype == np.float32}
        # Computed tensors are dropped after their last consumer, so memory stays at a few maps.
        last_use = {name: i for i, node in enumerate(graph.node) for name in node.input if name}
        self._drop_after: List[List[str]] = [[] for _ in graph.node]
        for name, i in last_use.items():
            if name not in self.constants and name != self.output_name:
                self._drop_after[i].append(name)

    def check_input(self, shape: Sequence[int], dataset_name: str) -> None:
        """Refuse a dataset whose examples do not have the model's input shape."""
        fits = len(shape) == len(self.input_shape) and all(
            d is None or d == s for d, s in zip(self.input_shape, shape))
        if not fits:
            raise UserError(
                f"{self.where}: model input {list(self.input_shape)} does not fit dataset {dataset_name!r} "
                f"{list(shape)}; use the dataset the model was trained on")

    def run_float(self, x: np.ndarray) -> np.ndarray:
        """Logits of the unmodified model in one session: the reference (``x`` as many rows
        as the file's batch axis takes)."""
        return self._full.run([self.output_name], {self.input_name: np.ascontiguousarray(x, np.float32)})[0]

    def run(self, x: np.ndarray, fmt: Optional[RoundingFormat], mode: str = "extrinsic",
            trace: Optional[_Trace] = None) -> np.ndarray:
        """Logits of ``x`` with the rounding of ``mode`` to ``fmt`` (None: no rounding, node by node)."""
        extrinsic = check_mode(mode) == "extrinsic"
        values: Dict[str, np.ndarray] = dict(self.constants)
        if fmt is not None and extrinsic:
            for name in self.float_constants:
                values[name] = fmt.round(self.constants[name])
        x = np.ascontiguousarray(x, np.float32)
        values[self.input_name] = fmt.round(x) if fmt is not None and extrinsic else x
        if trace is not None:
            trace.look("the rounded input", values[self.input_name])
        for (node, session, fed), dead in zip(self.nodes, self._drop_after):
            feeds = {name: values[name] for name in fed}
            if fmt is not None and not extrinsic:
                for position in MULTIPLYING_INPUTS.get(node.op_type, ()):
                    if position < len(node.input) and node.input[position] in feeds:
                        name = node.input[position]
                        if feeds[name].dtype == np.float32:
                            feeds[name] = fmt.round(feeds[name])
            outputs = session.run(None, feeds)
            for name, value in zip([o for o in node.output if o], outputs):  # "" marks an unused optional output
                if fmt is not None and extrinsic and value.dtype == np.float32 and node.op_type not in VALUE_PRESERVING:
                    value = fmt.round(value)
                if trace is not None:
                    trace.look(f"{node.name or name} ({node.op_type})", value)
                values[name] = value
            for name in dead:
                del values[name]
        return values[self.output_name]

    def _count(self, x: np.ndarray, y: np.ndarray, fmt: Optional[RoundingFormat], mode: str,
               trace: _Trace) -> Tuple[int, int]:
        def logits_of(part: np.ndarray) -> np.ndarray:
            return self.run_float(part) if fmt is None else self.run(part, fmt, mode, trace)

        correct = nan_images = 0
        for batch, logits in run_in_chunks(logits_of, x, EVAL_BATCH, self.fixed_batch):
            nan_rows = np.isnan(logits).any(axis=1)
            nan_images += int(nan_rows.sum())
            correct += int((logits.argmax(1)[~nan_rows] == y[batch][~nan_rows]).sum())
        return correct, nan_images

    def evaluate(self, x: np.ndarray, y: np.ndarray, fmt: Optional[RoundingFormat], mode: str = "extrinsic",
                 name: Optional[str] = None) -> EmulationResult:
        """Top-1 accuracy on ``x``/``y`` under ``fmt``; NaN logits give accuracy NaN and a reason."""
        label = name or (fmt.name if fmt is not None else "float")
        trace = _Trace()
        with np.errstate(all="ignore"):  # overflow to inf and NaN are the findings, not warnings
            correct, nan_images = self._count(x, y, fmt, mode, trace)
        count = len(y)
        if nan_images:
            return EmulationResult(label, mode, float("nan"), correct, count,
                                   _nan_reason(label, fmt, nan_images, count, trace), trace.first_inf, trace.first_nan)
        return EmulationResult(label, mode, correct / count if count else float("nan"), correct, count)


def _nan_reason(label: str, fmt: Optional[RoundingFormat], nan_images: int, count: int, trace: _Trace) -> str:
    parts = [f"{label}: the logits are NaN for {nan_images} of {count} images"]
    if trace.first_inf:
        limit = f" (largest finite value {fmt.max_finite:g})" if fmt is not None else ""
        parts.append(f"values overflowed to infinity first at {trace.first_inf}{limit}")
    if trace.first_nan:
        parts.append(f"NaN appeared first at {trace.first_nan}")
    return "; ".join(parts)


def _elem_types(model: Any) -> Dict[str, int]:
    """Element type of every tensor name (graph inputs, initializers, inferred intermediates)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # onnx raises InferenceError and plain RuntimeErrors
        raise UserError(f"{model.graph.name or 'model'}: ONNX type inference failed ({exc})") from None
    g = inferred.graph
    types = {t.name: t.data_type for t in g.initializer}
    for value in list(g.input) + list(g.value_info) + list(g.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
    return types


def _single_node_model(model: Any, node: Any, index: int, types: Dict[str, int], constants: Dict[str, np.ndarray]):
    """A model holding only ``node``: float constants and all computed tensors become inputs
    (so rounded copies can be fed), other constants (shapes, pads, axes) stay initializers."""
    from onnx import TensorProto, helper, numpy_helper

    inputs, initializers, fed = [], [], []
    for name in dict.fromkeys(n for n in node.input if n):
        if name in constants and constants[name].dtype != np.float32:
            initializers.append(numpy_helper.from_array(constants[name], name))
            continue
        elem = types.get(name)
        if elem is None:
            raise UserError(f"node {node.name or node.output[0]!r} ({node.op_type}): the type of input {name!r} "
                            f"is unknown; run onnx shape inference on the model")
        inputs.append(helper.make_tensor_value_info(name, elem, None))
        fed.append(name)
    outputs = [helper.make_tensor_value_info(o, types.get(o, TensorProto.FLOAT), None) for o in node.output if o]
    graph = helper.make_graph([node], f"node{index}", inputs, outputs, initializer=initializers)
    single = helper.make_model(graph, opset_imports=list(model.opset_import))
    single.ir_version = model.ir_version
    return single, fed


def _round_tensor(value: Any, fmt: RoundingFormat) -> Any:
    import torch

    if not isinstance(value, torch.Tensor) or value.dtype != torch.float32:
        return value
    return torch.from_numpy(fmt.round(value.detach().cpu().contiguous().numpy()))


def emulate_module(module: Any, x: Any, fmt: Optional[RoundingFormat], mode: str = "extrinsic") -> Any:
    """Output of torch ``module`` on the tensor ``x`` it consumes, computed with ``mode``'s
    rounding to ``fmt`` (None: the float module). The module itself is left untouched.

    For an ArchSpec ``SpecNet`` pass ``hostside.arch.export.fold_batchnorms(net)`` to emulate
    what is deployed (the exported graph folds batchnorms into their convs) and the normalised
    input, which the exported ONNX file computes itself.
    """
    import torch
    from torch import nn

    check_mode(mode)
    module = copy.deepcopy(module).eval()
    if fmt is None:
        with torch.no_grad():
            return module(x)
    multiplying = (nn.Conv2d, nn.Conv1d, nn.ConvTranspose2d, nn.Linear)
    with torch.no_grad():
        for sub in module.modules():
            for name, tensor in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
                wanted = mode == "extrinsic" or (isinstance(sub, multiplying) and name == "weight")
                if wanted and tensor.dtype == torch.float32:
                    tensor.copy_(_round_tensor(tensor, fmt))
        for sub in module.modules():
            if mode == "extrinsic" and not list(sub.children()):
                sub.register_forward_hook(lambda _m, _inputs, output: _round_tensor(output, fmt))
            elif mode == "multiplication" and isinstance(sub, multiplying):
                sub.register_forward_pre_hook(lambda _m, inputs: tuple(_round_tensor(v, fmt) for v in inputs))
        return module(_round_tensor(x, fmt) if mode == "extrinsic" else x)
