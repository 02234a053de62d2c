"""Latency features and predictions for ONNX files from any exporter.

Each hand-written variant spells one network the way some exporter does (weights behind
Identity nodes or Constant nodes, a bias tensor shared by two convs, a Reshape whose shape is
a Constant or is computed from Shape, a MatMul + Add head instead of Gemm) and must give the
features of the plain spelling. torch's TorchScript and dynamo exporters, on untrained and
trained networks, must give a prediction whose features agree with the graph's read-back
cost. What the model cannot judge is one error line naming the node.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hostside.arch.onnx_stats import onnx_stats
from hostside.calibration import load_calibration
from hostside.calibration.features import FEATURE_NAMES, NCHWC_BLOCKS, onnx_features
from hostside.errors import UserError

C, H = 16, 8  # conv channels, input side


def _hostside(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostside.cli", *args], capture_output=True, text=True, timeout=120)


def _array(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _save(nodes, initializers, path: Path) -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, H, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _body(w1: str, b1: str, w2: str, b2: str) -> list:
    """conv-relu-conv-relu-global pool on (x) -> "pooled" (1, C, 1, 1)."""
    return [
        helper.make_node("Conv", ["x", w1, b1], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", w2, b2], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["pooled"]),
    ]


def _weights() -> dict:
    return {"w1": _array(C, 3, 3, 3, seed=1), "w2": _array(C, C, 3, 3, seed=2), "b": np.zeros(C, np.float32),
            "fc_w": _array(10, C, seed=3), "fc_b": _array(10, seed=4)}


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def reference(path: Path) -> Path:
    w = _weights()
    nodes = _body("w1", "b1", "w2", "b2") + [
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    inits = [_init("w1", w["w1"]), _init("b1", w["b"]), _init("w2", w["w2"]), _init("b2", w["b"].copy()),
             _init("fc_w", w["fc_w"]), _init("fc_b", w["fc_b"])]
    return _save(nodes, inits, path)


def identity_shared_bias(path: Path) -> Path:
    """TorchScript on an untrained net: equal folded biases merged into one initializer and
    handed to each conv through its own Identity node."""
    w = _weights()
    nodes = [helper.make_node("Identity", ["b"], ["b1"]), helper.make_node("Identity", ["b"], ["b2"]),
             helper.make_node("Identity", ["w2_init"], ["w2"])]
    nodes += _body("w1", "b1", "w2", "b2") + [
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    inits = [_init("w1", w["w1"]), _init("b", w["b"]), _init("w2_init", w["w2"]), _init("fc_w", w["fc_w"]),
             _init("fc_b", w["fc_b"])]
    return _save(nodes, inits, path)


def constant_nodes_and_reshape(path: Path) -> Path:
    """Weights as Constant nodes, the head flattened by a Reshape whose shape is a Constant,
    and a Gemm that reads its weight untransposed."""
    w = _weights()
    nodes = [helper.make_node("Constant", [], [name], value=_init(name, value))
             for name, value in (("w1", w["w1"]), ("b1", w["b"]), ("w2", w["w2"]), ("b2", w["b"]),
                                 ("fc_wt", np.ascontiguousarray(w["fc_w"].T)), ("fc_b", w["fc_b"]),
                                 ("shape", np.array([-1, C], np.int64)))]
    nodes += _body("w1", "b1", "w2", "b2") + [
        helper.make_node("Reshape", ["pooled", "shape"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_wt", "fc_b"], ["y"]),
    ]
    return _save(nodes, [], path)


def shape_arithmetic_and_matmul_head(path: Path) -> Path:
    """``x.view(x.size(0), -1)`` as the TorchScript exporter writes it (Shape, Gather,
    Unsqueeze, Concat, Reshape) and a linear layer as MatMul + bias Add."""
    w = _weights()
    nodes = _body("w1", "b1", "w2", "b2") + [
        helper.make_node("Shape", ["pooled"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["pooled", "target"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc_wt"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["y"]),
    ]
    inits = [_init("w1", w["w1"]), _init("b1", w["b"]), _init("w2", w["w2"]), _init("b2", w["b"].copy()),
             _init("fc_wt", np.ascontiguousarray(w["fc_w"].T)), _init("fc_b", w["fc_b"]),
             _init("zero", np.array(0, np.int64)), _init("axes", np.array([0], np.int64)),
             _init("minus_one", np.array([-1], np.int64))]
    return _save(nodes, inits, path)


VARIANTS = {"identity_shared_bias": identity_shared_bias, "constant_nodes_and_reshape": constant_nodes_and_reshape,
            "shape_arithmetic_and_matmul_head": shape_arithmetic_and_matmul_head}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_exporter_spellings_give_the_features_of_the_plain_graph(variant, tmp_path):
    plain = reference(tmp_path / "plain.onnx")
    other = VARIANTS[variant](tmp_path / f"{variant}.onnx")
    assert onnx_stats(other)["macs"] == onnx_stats(plain)["macs"]
    for block in NCHWC_BLOCKS:
        want, got = onnx_features(plain, block), onnx_features(other, block)
        differ = {n: (a, b) for n, a, b in zip(FEATURE_NAMES, want, got) if a != b}
        assert not differ, f"{variant}, block {block}: {differ}"
    assert want[FEATURE_NAMES.index("macs")] == onnx_stats(plain)["macs"]


def _zoo():
    spec = importlib.util.spec_from_file_location("classic_torch_nets",
                                                  Path(__file__).parents[1] / "arch" / "classic_torch_nets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _torch_export(name: str, trained: bool, dynamo: bool, path: Path) -> Path:
    import torch

    zoo = _zoo()
    factory, shape = zoo.ZOO[name]
    torch.manual_seed(0)
    net = zoo.make(name) if trained else factory().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (torch.rand(2, *shape),), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(net, (torch.rand(1, *shape),), str(path), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _check_torch_file(path: Path, tiny_calibration_dir: Path) -> float:
    stats = onnx_stats(path)
    features = onnx_features(path, 16)
    assert features[FEATURE_NAMES.index("macs")] == stats["macs"]
    assert features[FEATURE_NAMES.index("conv_count")] == stats["layers"].get("Conv", 0)
    prediction = load_calibration(tiny_calibration_dir / "calibration.json").predict(path)
    assert 0 < prediction.interval_ms[0] <= prediction.latency_ms <= prediction.interval_ms[1]
    return prediction.latency_ms


@pytest.mark.parametrize("name", ["inception", "vgg_head_bn", "resnet20"])
def test_torchscript_exports_of_untrained_and_trained_nets_are_predicted(name, tmp_path, tiny_calibration_dir):
    untrained = _torch_export(name, False, False, tmp_path / "untrained.onnx")
    if name != "resnet20":  # its convs have no bias: nothing for the exporter to share
        assert "Identity" in {n.op_type for n in onnx.load(str(untrained)).graph.node}
    a = _check_torch_file(untrained, tiny_calibration_dir)
    b = _check_torch_file(_torch_export(name, True, False, tmp_path / "trained.onnx"), tiny_calibration_dir)
    assert a == pytest.approx(b, rel=0.01)  # the weights' values do not change the work
    result = _hostside("predict", "--calibration", str(tiny_calibration_dir / "calibration.json"), str(untrained))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet20", "vgg_head_bn"])
def test_dynamo_exports_of_untrained_and_trained_nets_are_predicted(name, tmp_path, tiny_calibration_dir):
    script = _check_torch_file(_torch_export(name, True, False, tmp_path / "ts.onnx"), tiny_calibration_dir)
    for trained in (False, True):
        dynamo = _check_torch_file(_torch_export(name, trained, True, tmp_path / f"dyn{trained}.onnx"),
                                   tiny_calibration_dir)
        # the dynamo exporter also folds a head batchnorm and drops a final ReLU: a few operators less
        assert dynamo == pytest.approx(script, rel=0.15)


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _conv_transpose_model(path: Path) -> Path:
    nodes = [helper.make_node("ConvTranspose", ["x", "w"], ["up"], name="decoder_up", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["up"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, H, H])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [_init("w", _array(3, 10, 2, 2))])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_operator_the_model_never_measured_is_refused_naming_the_node(tmp_path, tiny_calibration_dir):
    path = _conv_transpose_model(tmp_path / "decoder.onnx")
    with pytest.raises(UserError, match="decoder_up.*ConvTranspose"):
        onnx_features(path)
    result = _hostside("predict", "--calibration", str(tiny_calibration_dir / "calibration.json"), str(path))
    _one_line_error(result, "decoder_up", "ConvTranspose")


@pytest.mark.parametrize("content", [b"", numpy_helper.from_array(np.ones(3, np.float32), "t").SerializeToString()],
                         ids=["empty", "tensor_protobuf"])
def test_predict_on_a_file_that_is_no_model_is_one_error_line(content, tmp_path, tiny_calibration_dir):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    result = _hostside("predict", "--calibration", str(tiny_calibration_dir / "calibration.json"), str(path))
    _one_line_error(result, str(path))
    assert "ms" not in result.stdout
