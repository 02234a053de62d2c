"""Emulation checked against independent constructions: the same ONNX graph with Cast pairs
(float -> float16/bfloat16 -> float) inserted where the method rounds, run by onnxruntime as
one session, must give bit-identical logits; the torch route must agree with the ONNX route."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from hostside.errors import UserError
from hostside.precision.emulate import MULTIPLYING_INPUTS, VALUE_PRESERVING, OnnxEmulator, emulate_module
from hostside.precision.formats import FX16, FloatFormat, parse_format

CASTS = {"half": TensorProto.FLOAT16, "bfloat16": TensorProto.BFLOAT16}


def _cast_pair(nodes, name, to, tag):
    low, back = f"{name}.{tag}.low", f"{name}.{tag}.back"
    nodes.append(helper.make_node("Cast", [name], [low], to=to))
    nodes.append(helper.make_node("Cast", [low], [back], to=TensorProto.FLOAT))
    return back


def _with_casts(path, to, mode):
    """The model with a Cast round trip on every tensor the given method rounds."""
    model = onnx.load(str(path))
    g = model.graph
    floats = {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}
    renamed, nodes = {}, []
    if mode == "extrinsic":
        for name in sorted(floats) + [g.input[0].name]:
            renamed[name] = _cast_pair(nodes, name, to, "in")
    for node in g.node:
        inputs = [renamed.get(i, i) for i in node.input]
        if mode == "multiplication":
            for position in MULTIPLYING_INPUTS.get(node.op_type, ()):
                inputs[position] = _cast_pair(nodes, node.input[position], to, f"mul{len(nodes)}")
        outputs = [f"{o}.raw" if mode == "extrinsic" else o for o in node.output]
        nodes.append(helper.make_node(node.op_type, inputs, outputs, name=node.name, **{
            a.name: helper.get_attribute_value(a) for a in node.attribute}))
        if mode == "extrinsic":
            for o in node.output:
                nodes.append(helper.make_node("Identity", [_cast_pair(nodes, f"{o}.raw", to, "out")], [o]))
    graph = helper.make_graph(nodes, "casts", list(g.input), list(g.output), list(g.initializer))
    cast_model = helper.make_model(graph, opset_imports=list(model.opset_import))
    cast_model.ir_version = model.ir_version
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    return ort.InferenceSession(cast_model.SerializeToString(), options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def emulator(trained_digits):
    return OnnxEmulator(trained_digits.onnx)


def _val(trained_digits):
    d, s = trained_digits.dataset, trained_digits.split
    return d.x[s.val], d.y[s.val]


def test_node_by_node_reproduces_the_float_model(emulator, trained_digits):
    x, y = _val(trained_digits)
    assert np.abs(emulator.run(x, None) - emulator.run_float(x)).max() < 1e-5
    float32 = emulator.run(x, FloatFormat(8, 23))  # rounding to float32 changes nothing
    assert np.array_equal(float32, emulator.run(x, None))


@pytest.mark.parametrize("name", sorted(CASTS))
@pytest.mark.parametrize("mode", ["extrinsic", "multiplication"])
def test_bit_identical_to_onnxruntime_casts(emulator, trained_digits, name, mode):
    x, _ = _val(trained_digits)
    reference = _with_casts(trained_digits.onnx, CASTS[name], mode)
    want = reference.run(None, {"input": x})[0]
    got = emulator.run(x, parse_format(name), mode)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, emulator.run(x, None))  # the rounding did change something


def test_value_preserving_ops_need_no_second_rounding(emulator, trained_digits):
    """The skip is only sound if those ops' outputs are representable: check on real maps."""
    x, _ = _val(trained_digits)
    fmt = FloatFormat(3, 2)
    ops = {node.op_type for node, _, _ in emulator.nodes}
    assert {"Relu", "MaxPool", "Flatten"} <= ops and ops & VALUE_PRESERVING
    values = {emulator.input_name: fmt.round(x)}
    values.update({k: fmt.round(v) if v.dtype == np.float32 else v for k, v in emulator.constants.items()})
    for node, session, fed in emulator.nodes:
        out = session.run(None, {n: values[n] for n in fed})[0]
        if node.op_type in VALUE_PRESERVING:
            assert np.array_equal(fmt.round(out), out, equal_nan=True), node.op_type
        values[node.output[0]] = fmt.round(out)


def test_nan_format_reports_nan_with_reason(emulator, trained_digits):
    x, y = _val(trained_digits)
    result = emulator.evaluate(x, y, FloatFormat(2, 2))  # largest value 3.5: raw digits reach 16
    assert np.isnan(result.accuracy) and result.to_dict()["accuracy"] is None
    assert "NaN" in result.reason and "largest finite value 3.5" in result.reason
    assert result.first_inf_node == "the rounded input"


def test_fx16_multiplication_only_close_to_float(emulator, trained_digits):
    x, y = _val(trained_digits)
    ref = emulator.evaluate(x, y, None)
    fx = emulator.evaluate(x, y, FX16, "multiplication")
    assert abs(fx.accuracy - ref.accuracy) <= 0.02


@pytest.mark.parametrize("mode", ["extrinsic", "multiplication"])
def test_torch_route_agrees_with_onnx_route(emulator, trained_digits, mode):
    import torch

    from hostside.arch.export import fold_batchnorms

    d, s, r = trained_digits.dataset, trained_digits.split, trained_digits.result
    x = d.x[s.val]
    mean = np.array(r.mean, np.float32).reshape(-1, 1, 1)
    std = np.array(r.std, np.float32).reshape(-1, 1, 1)
    normalised = torch.from_numpy((x - mean) * (1 / std))
    folded = fold_batchnorms(r.module)
    fmt = parse_format("half")
    torch_logits = emulate_module(folded, normalised, fmt, mode).numpy()
    onnx_logits = emulator.run(x, fmt, mode)
    # Same rounding points; the routes differ only in float32 conv algorithms and, for
    # extrinsic, in where the normalisation's own roundings fall (ONNX rounds its Sub and Mul).
    assert np.mean(torch_logits.argmax(1) == onnx_logits.argmax(1)) >= 0.98
    assert np.abs(torch_logits - onnx_logits).max() < 0.1 * np.abs(onnx_logits).max()
    untouched = folded.layers[0].weight.detach().numpy().copy()
    emulate_module(folded, normalised, fmt, mode)
    assert np.array_equal(untouched, folded.layers[0].weight.detach().numpy())


@pytest.mark.parametrize("mode", ["extrinsic", "multiplication"])
def test_foreign_onnx_model(conv_model, trained_digits, mode):
    """A hand-written graph (input 'x', Gemm without transB): same bit-exact agreement."""
    x, _ = _val(trained_digits)
    emulator = OnnxEmulator(conv_model)
    want = _with_casts(conv_model, TensorProto.FLOAT16, mode).run(None, {"x": x})[0]
    assert np.array_equal(emulator.run(x, parse_format("half"), mode), want)


def test_input_shape_mismatch_is_one_clear_error(conv_model):
    emulator = OnnxEmulator(conv_model)
    with pytest.raises(UserError, match=r"model input \[1, 8, 8\] does not fit dataset 'cifar' \[3, 32, 32\]"):
        emulator.check_input((3, 32, 32), "cifar")


def test_not_onnx_is_one_clear_error(not_onnx_file):
    with pytest.raises(UserError, match="not a readable ONNX model"):
        OnnxEmulator(not_onnx_file)
