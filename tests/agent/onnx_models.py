"""Small ONNX models built with onnx.helper for the agent and board tests.

The ArchSpec exporter is written in parallel, so these tests build their own nets: a real
Conv/Relu/Gemm classifier, a model whose intermediate tensor needs gigabytes (to hit a memory
limit), and a slow one (to be cut mid-measurement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _save(graph: onnx.GraphProto, path: Path, opset: int = 13) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tests")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def conv_net(path: Path, channels: int = 8, size: int = 8, seed: int = 0) -> Path:
    """Conv(3x3) -> Relu -> Flatten -> Gemm(10): a digits-sized classifier with a batch axis 'N'."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), "conv_w")
    bias = numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), "conv_b")
    fc_w = numpy_helper.from_array(rng.standard_normal((channels * size * size, 10)).astype(np.float32) * 0.1, "fc_w")
    fc_b = numpy_helper.from_array(np.zeros(10, np.float32), "fc_b")
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [weight, bias, fc_w, fc_b],
    )
    return _save(graph, path)


def huge_intermediate(path: Path, elements: int = 1_500_000_000) -> Path:
    """A tiny file whose Expand output needs elements*4 bytes: exceeds any sane memory limit."""
    shape = numpy_helper.from_array(np.array([elements], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Expand", ["x", "shape"], ["big"]),
        helper.make_node("ReduceSum", ["big"], ["y"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        [shape],
    )
    return _save(graph, path)


def slow_net(path: Path, size: int = 512) -> Path:
    """MatMul chain on a size x size matrix: a few ms per run, for runs long enough to interrupt."""
    rng = np.random.default_rng(1)
    weights = [numpy_helper.from_array(rng.standard_normal((size, size)).astype(np.float32) / size, f"w{i}") for i in range(4)]
    nodes, previous = [], "x"
    for i in range(4):
        nodes.append(helper.make_node("MatMul", [previous, f"w{i}"], [f"h{i}"]))
        previous = f"h{i}"
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info(previous, TensorProto.FLOAT, [size, size])],
        weights,
    )
    return _save(graph, path)


def not_onnx(path: Path) -> Path:
    path.write_bytes(b"this is not an onnx model\x00\x01\x02")
    return path
