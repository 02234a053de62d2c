"""The ONNX read-back against independent oracles on files torch's own exporters write.

MACs and output shapes come from forward hooks on nn.Conv2d / nn.Linear during a torch
forward pass; parameters from torch's count, adjusted only for the batchnorm folds each
exporter is known to do (and the tests check the folds really happened by counting the
BatchNormalization nodes left in the file):

- TorchScript exporter (``dynamo=False``) with constant folding, in eval mode, merges a
  BatchNorm into the Conv that feeds it (the conv gains a bias, the BN's 2C params vanish);
  a BatchNorm after anything else stays, with 2C params (running mean/var are not params).
- dynamo exporter: its onnxscript optimiser also merges a BatchNorm into a Linear (Gemm).
- TorchScript without constant folding keeps every BatchNorm.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from hostside.arch.onnx_stats import onnx_stats
from hostside.errors import UserError
from tests.arch import classic_torch_nets as zoo


TORCHSCRIPT_FOLDS_AFTER = (nn.Conv2d,)
DYNAMO_FOLDS_AFTER = (nn.Conv2d, nn.Linear)


def export(net: nn.Module, input_shape, path: Path, dynamo: bool = False, fold: bool = True) -> Path:
    """Export with a dynamic batch axis, as deployment files usually have (torch.export
    needs an example batch of 2 to keep the axis symbolic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(
                net, (torch.rand(2, *input_shape),), str(path), dynamo=True, verbose=False,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
            )
        else:
            torch.onnx.export(
                net, (torch.rand(1, *input_shape),), str(path), dynamo=False, do_constant_folding=fold,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )
    return path


def hooked_layers(net: nn.Module, input_shape) -> List[Tuple[nn.Module, int, List[int], int]]:
    """(module, MACs, output shape without batch, input elements) of every conv and linear
    layer, in the order a batch-1 forward pass runs them."""
    seen: List[Tuple[nn.Module, int, List[int], int]] = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs = output.numel() * module.in_features
        seen.append((module, macs, list(output.shape[1:]), inputs[0].numel()))

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net(torch.rand(1, *input_shape))
    for handle in handles:
        handle.remove()
    return seen


def folded_batchnorms(net: nn.Module, folds_after: tuple) -> Dict[nn.Module, nn.Module]:
    """BatchNorm -> the layer it folds into: a BN whose input is the output of a layer of
    one of the ``folds_after`` types that nothing else reads (found on the fx graph)."""
    traced = torch.fx.symbolic_trace(net)
    modules = dict(traced.named_modules())
    folds = {}
    for node in traced.graph.nodes:
        if node.op == "call_module" and isinstance(modules[node.target], nn.modules.batchnorm._BatchNorm):
            source = node.args[0]
            if (
                source.op == "call_module" and isinstance(modules[source.target], folds_after)
                and len(source.users) == 1
            ):
                folds[modules[node.target]] = modules[source.target]
    return folds


def expected_params(net: nn.Module, folds: Dict[nn.Module, nn.Module]) -> Tuple[int, Dict[nn.Module, int]]:
    """Total deployed params and the params each conv/linear layer has after the folds."""
    total = sum(p.numel() for p in net.parameters())
    layer_params = {
        m: sum(p.numel() for p in m.parameters())
        for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    for bn, layer in folds.items():
        total -= 2 * bn.num_features
        if layer.bias is None:  # the layer gains the BN's shift as its bias
            total += bn.num_features
            layer_params[layer] += bn.num_features
    return total, layer_params


def check_against_torch(stats: dict, net: nn.Module, input_shape, folds_after: tuple) -> None:
    layers = hooked_layers(net, input_shape)
    folds = folded_batchnorms(net, folds_after)
    total_params, layer_params = expected_params(net, folds)
    batchnorms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    assert stats["params"] == total_params
    assert stats["macs"] == sum(macs for _, macs, _, _ in layers)
    assert stats["input_shape"] == list(input_shape)
    assert stats["layers"]["Conv"] == sum(isinstance(m, nn.Conv2d) for m, _, _, _ in layers)
    assert stats["layers"]["Gemm"] == sum(isinstance(m, nn.Linear) for m, _, _, _ in layers)
    assert stats["layers"].get("BatchNormalization", 0) == len(batchnorms) - len(folds)
    compute = [
        (e["params"], e["macs"], e["output_shape"]) for e in stats["per_layer"] if e["op_type"] != "BatchNormalization"
    ]
    assert compute == [(layer_params[m], macs, shape) for m, macs, shape, _ in layers]
    # A layer's input and output are alive together, so the peak is at least the largest pair.
    assert stats["activation_bytes"] >= max(4 * (inputs + int(np.prod(shape))) for _, _, shape, inputs in layers)


@pytest.mark.parametrize("name", sorted(zoo.ZOO))
def test_torchscript_export_of_classic_cnn_matches_torch(name, tmp_path):
    net = zoo.make(name)
    _, input_shape = zoo.ZOO[name]
    path = export(net, input_shape, tmp_path / f"{name}.onnx")
    check_against_torch(onnx_stats(path), net, input_shape, TORCHSCRIPT_FOLDS_AFTER)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ds_cnn", "vgg_head_bn"])
def test_dynamo_export_of_classic_cnn_matches_torch(name, tmp_path):
    net = zoo.make(name)
    _, input_shape = zoo.ZOO[name]
    path = export(net, input_shape, tmp_path / f"{name}.onnx", dynamo=True)
    check_against_torch(onnx_stats(path), net, input_shape, DYNAMO_FOLDS_AFTER)


def test_unfolded_batchnorms_keep_scale_and_shift_only(tmp_path):
    net = zoo.make("resnet20")
    path = export(net, zoo.CifarResNet.input_shape, tmp_path / "resnet20.onnx", fold=False)
    check_against_torch(onnx_stats(path), net, zoo.CifarResNet.input_shape, ())


def test_initializers_the_exporter_merged_still_count_once_per_layer(tmp_path):
    """Fresh batchnorms all hold ones and zeros; TorchScript's exporter keeps one copy and
    aliases the rest, yet every layer still has its parameters."""
    torch.manual_seed(0)
    net = zoo.CifarResNet(n=1).eval()
    path = export(net, zoo.CifarResNet.input_shape, tmp_path / "fresh.onnx", fold=False)
    stored = sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
    assert stored < sum(p.numel() for p in net.parameters())  # fewer stored than the net has
    check_against_torch(onnx_stats(path), net, zoo.CifarResNet.input_shape, ())


def test_fixed_batch_one_reads_like_dynamic_batch(tmp_path):
    net = zoo.make("lenet5")
    dynamic = onnx_stats(export(net, zoo.LeNet5.input_shape, tmp_path / "dynamic.onnx"))
    fixed_path = tmp_path / "fixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.rand(1, *zoo.LeNet5.input_shape),), str(fixed_path), dynamo=False)
    fixed = onnx_stats(fixed_path)
    for key in ("params", "macs", "activation_bytes", "input_shape", "output_shape", "per_layer"):
        assert fixed[key] == dynamic[key], key


# Hand-built graphs: every number below follows from the graph by hand.

def _model(nodes, inputs, outputs, initializers=(), opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _floats(name: str, *shape: int, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.arange(np.prod(shape), dtype=dtype).reshape(shape) / 7, name)


def _value(name: str, shape, dtype=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_weights_seen_through_wrappers_and_elementwise_constants_ignored(tmp_path):
    """Normalisation Sub/Mul, Pad values and Reshape shapes are not params; a Constant
    weight behind Transpose, an fp16 weight behind Cast, and a MatMul's bias Add are."""
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "inv_std"], ["scaled"]),
        helper.make_node("Pad", ["scaled", "pads", "pad_value"], ["padded"]),
        helper.make_node("Cast", ["w16"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("Identity", ["w32"], ["w"]),
        helper.make_node("Conv", ["padded", "w", "b"], ["conv"], kernel_shape=[3, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("Reshape", ["relu", "shape"], ["flat"]),
        helper.make_node("Constant", [], ["fc_t"], value=_floats("fc_t", 10, 4 * 6 * 5)),
        helper.make_node("Transpose", ["fc_t"], ["fc_w"], perm=[1, 0]),
        helper.make_node("MatMul", ["flat", "fc_w"], ["mm"]),
        helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
    ]
    inits = [
        _floats("mean", 2, 1, 1), _floats("inv_std", 2, 1, 1),
        numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 1, 0], np.int64), "pads"),
        numpy_helper.from_array(np.array(0.0, np.float32), "pad_value"),
        _floats("w16", 4, 2, 3, 1, dtype=np.float16), _floats("b", 4),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"), _floats("fc_b", 10),
    ]
    model = _model(nodes, [_value("x", ["N", 2, 6, 5])], [_value("logits", ["N", 10])], inits)
    stats = onnx_stats(_save(model, tmp_path / "m.onnx"))
    conv_params, fc_params = 4 * 2 * 3 + 4, 120 * 10 + 10
    assert stats["params"] == conv_params + fc_params
    # Conv: padded 8x5 input, 3x1 kernel -> 6x5 output.
    assert stats["macs"] == 4 * 6 * 5 * 2 * 3 + 120 * 10
    assert [(e["op_type"], e["params"], e["output_shape"]) for e in stats["per_layer"]] == [
        ("Conv", conv_params, [4, 6, 5]), ("MatMul", 120 * 10, [10]), ("Add", 10, [10])]
    assert stats["input_shape"] == [2, 6, 5] and stats["output_shape"] == [10]
    assert stats["layers"]["Constant"] == 1 and stats["layers"]["Transpose"] == 1


def test_activation_bytes_is_the_peak_of_live_tensors_in_graph_order(tmp_path):
    """x (1x4x4x4 float32 = 256 B) feeds a 1x1 conv (a, 512 B) and a Relu -> MaxPool ->
    Resize branch; x dies after its last reader, each branch tensor after the next node;
    the int64 Shape output (a graph output, so never freed) counts 8 bytes an element."""
    nodes = [
        helper.make_node("Conv", ["x", "wa"], ["a"]),
        helper.make_node("Relu", ["x"], ["b_full"]),
        helper.make_node("MaxPool", ["b_full"], ["b"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Resize", ["b", "", "scales"], ["b_up"], mode="nearest"),
        helper.make_node("Shape", ["b_up"], ["up_shape"]),
        helper.make_node("Concat", ["a", "b_up"], ["cat"], axis=1),
    ]
    inits = [_floats("wa", 8, 4, 1, 1), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    model = _model(nodes, [_value("x", [1, 4, 4, 4])],
                   [_value("cat", [1, 12, 4, 4]), _value("up_shape", [4], TensorProto.INT64)], inits)
    stats = onnx_stats(_save(model, tmp_path / "m.onnx"))
    x, a, b_full, b, b_up, shape, cat = 256, 512, 256, 64, 256, 32, 768
    live_after_each_node = [
        x + a, x + a + b_full, a + b_full + b, a + b + b_up, a + b_up + shape, a + b_up + shape + cat,
    ]
    assert stats["activation_bytes"] == max(live_after_each_node) == 1568
    assert stats["params"] == 8 * 4 and stats["macs"] == 8 * 4 * 16


def test_conv_transpose_and_gemm_macs(tmp_path):
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["up"], strides=[2, 2], kernel_shape=[2, 2]),
        helper.make_node("Flatten", ["up"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc"], ["y"], transB=1),
    ]
    inits = [_floats("w", 3, 5, 2, 2), _floats("b", 5), _floats("fc", 7, 5 * 8 * 8)]
    model = _model(nodes, [_value("x", ["batch", 3, 4, 4])], [_value("y", ["batch", 7])], inits)
    stats = onnx_stats(_save(model, tmp_path / "m.onnx"))
    assert stats["params"] == 3 * 5 * 4 + 5 + 7 * 320
    # Each of the 48 input values is scattered to 5 channels x 4 taps; Gemm is 1 x 7 x 320.
    assert stats["macs"] == 48 * 5 * 4 + 7 * 320
    assert stats["per_layer"][0]["output_shape"] == [5, 8, 8]


# Bad input: one clear line naming the file.

@pytest.fixture
def lenet_file(tmp_path) -> Path:
    return export(zoo.make("lenet5"), zoo.LeNet5.input_shape, tmp_path / "lenet.onnx")


def _error(path) -> str:
    with pytest.raises(UserError) as info:
        onnx_stats(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "no such file" in _error(tmp_path / "nope.onnx")


def test_directory_instead_of_file(tmp_path):
    assert "is a directory" in _error(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file(lenet_file):
    lenet_file.chmod(0)
    assert "cannot read" in _error(lenet_file)


def test_path_through_a_file(lenet_file):
    assert "cannot read the file (Not a directory)" in _error(lenet_file / "model.onnx")


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_file(lenet_file, cut):
    data = lenet_file.read_bytes()
    lenet_file.write_bytes(data[: int(len(data) * cut)])
    assert "re-export" in _error(lenet_file)


@pytest.mark.parametrize("content", [b"", b"\x00" * 64, b"this is not a model\n", b'{"format": "hostside.archspec"}',
                                     bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))])
def test_not_onnx(tmp_path, content):
    path = tmp_path / "model.onnx"
    path.write_bytes(content)
    assert "ONNX" in _error(path)


def test_graph_without_inputs(tmp_path):
    nodes = [helper.make_node("Constant", [], ["y"], value=_floats("c", 3))]
    path = _save(_model(nodes, [], [_value("y", [3])]), tmp_path / "m.onnx")
    assert "no inputs" in _error(path)


@pytest.mark.parametrize("shape, fragment", [
    (None, "has no shape"), (["N", 1, "H", 8], "'H' dimension at position 2"),
    ([4, 1, 8, 8], "fixed batch size of 4"), ([], "scalar"),
])
def test_input_shape_not_usable(tmp_path, shape, fragment):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    model = _model(nodes, [_value("x", shape)], [_value("y", None)], [_floats("w", 2, 1, 3, 3)])
    assert fragment in _error(_save(model, tmp_path / "m.onnx"))


def test_node_reading_an_undefined_tensor(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "ghost"], ["y"])]
    model = _model(nodes, [_value("x", [1, 4])], [_value("y", [1, 4])])
    assert "'ghost'" in _error(_save(model, tmp_path / "m.onnx"))


def test_conv_weight_that_does_not_fit_its_input(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"])]
    model = _model(nodes, [_value("x", [1, 3, 8, 8])], [_value("y", None)], [_floats("w", 2, 5, 3, 3)])
    assert "input channels" in _error(_save(model, tmp_path / "m.onnx"))


def test_shapes_that_contradict_each_other(tmp_path):
    nodes = [helper.make_node("Add", ["x", "c"], ["y"])]
    model = _model(nodes, [_value("x", [1, 4])], [_value("y", [1, 4])], [_floats("c", 5)])
    assert "inconsistent" in _error(_save(model, tmp_path / "m.onnx"))


def test_damaged_graph_structure(tmp_path):
    no_outputs = _model([helper.make_node("Relu", ["x"], [])], [_value("x", [1, 4])], [])
    assert "no outputs" in _error(_save(no_outputs, tmp_path / "a.onnx"))
    nameless = _model([helper.make_node("", ["x"], ["y"])], [_value("x", [1, 4])], [_value("y", [1, 4])])
    assert "no op type" in _error(_save(nameless, tmp_path / "b.onnx"))


# Operators whose cost is unknown: refused naming the node, never costed as zero.

def _lstm_model() -> onnx.ModelProto:
    nodes = [helper.make_node("LSTM", ["x", "w", "r"], ["y"], name="encoder_lstm", hidden_size=8)]
    return _model(nodes, [_value("x", [5, 1, 4])], [_value("y", None)],
                  [_floats("w", 1, 32, 4), _floats("r", 1, 32, 8)])


def test_recurrent_layer_is_refused_naming_the_node(tmp_path):
    message = _error(_save(_lstm_model(), tmp_path / "m.onnx"))
    assert "'encoder_lstm'" in message and "LSTM" in message


def test_custom_domain_operator_is_refused_naming_the_node(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["h"]),
             helper.make_node("FancyAttention", ["h"], ["y"], name="attn", domain="com.example")]
    model = helper.make_model(helper.make_graph(nodes, "g", [_value("x", [1, 4])], [_value("y", None)]),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    message = _error(_save(model, tmp_path / "m.onnx"))
    assert "'attn'" in message and "com.example" in message


def test_a_conv_inside_a_subgraph_is_refused(tmp_path):
    body = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["z"], name="inner_conv")], "then", [],
                             [_value("z", None)])
    nodes = [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
             helper.make_node("Greater", ["m", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=body)]
    model = _model(nodes, [_value("x", [1, 3, 8, 8])], [_value("y", None)],
                   [_floats("w", 2, 3, 3, 3), numpy_helper.from_array(np.array(0.0, np.float32), "zero")])
    assert "'inner_conv'" in _error(_save(model, tmp_path / "m.onnx"))


def test_arch_stats_cli_refuses_an_lstm_in_one_line(tmp_path):
    import subprocess
    import sys

    path = _save(_lstm_model(), tmp_path / "m.onnx")
    result = subprocess.run([sys.executable, "-m", "hostside.cli", "arch", "stats", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "encoder_lstm" in lines[0], result.stderr
    assert "MACs" not in result.stdout
