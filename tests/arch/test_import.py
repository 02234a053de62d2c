"""``hostside arch import``: ONNX files torch's exporters write come back as ArchSpec + weights
that compute what onnxruntime computes on the file; anything else is one line naming the node."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from hostside import cli
from hostside.arch.onnx_import import MEAN_KEY, STD_KEY, import_onnx, max_abs_diff
from hostside.errors import UserError
from tests.arch import classic_torch_nets as zoo


def torch_export(net: torch.nn.Module, input_shape, path: Path, fold: bool = True, dynamo: bool = False) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(net, (torch.rand(2, *input_shape),), str(path), dynamo=True, verbose=False,
                              dynamic_shapes=({0: torch.export.Dim("batch")},))
        else:
            torch.onnx.export(net, (torch.rand(1, *input_shape),), str(path), dynamo=False, do_constant_folding=fold,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def ops(spec) -> dict:
    counts: dict = {}
    for node in spec.nodes:
        counts[node.op] = counts.get(node.op, 0) + 1
    return counts


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenet_v1_025"])
def test_torch_exports_import_exactly(name, tmp_path):
    net = zoo.make(name)
    shape = zoo.ZOO[name][1]
    path = torch_export(net, shape, tmp_path / f"{name}.onnx")
    imported = import_onnx(path)
    spec = imported.spec
    assert tuple(spec.input_shape) == shape and spec.num_classes == 10
    assert max_abs_diff(path, imported, batch=3) < 1e-4
    # Constant folding merged every conv's batchnorm: the convs come back with biases, no batchnorm.
    convs = [n for n in spec.nodes if n.op == "conv2d"]
    assert convs and all(n.attrs["bias"] for n in convs) and "batchnorm" not in ops(spec)
    torch_params = sum(p.numel() for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
                       for p in m.parameters())
    folded_biases = sum(m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is None
                        and name != "lenet5")
    assert spec.cost.params == torch_params + folded_biases
    assert imported.weights[MEAN_KEY].tolist() == [0.0] * shape[0] and imported.weights[STD_KEY].tolist() == [1.0] * shape[0]


def test_depthwise_groups_and_residual_adds_survive(tmp_path):
    mobilenet = import_onnx(torch_export(zoo.make("mobilenet_v1_025"), (3, 32, 32), tmp_path / "m.onnx")).spec
    depthwise = [n for n in mobilenet.nodes if n.op == "conv2d" and n.attrs["groups"] > 1]
    assert len(depthwise) == 13 and all(n.attrs["groups"] == n.attrs["out_channels"] for n in depthwise)
    resnet = import_onnx(torch_export(zoo.make("resnet20"), (3, 32, 32), tmp_path / "r.onnx")).spec
    assert ops(resnet)["add"] == 9 and ops(resnet)["global_avgpool"] == 1


def test_unfolded_batchnorms_come_back_as_batchnorms(tmp_path):
    path = torch_export(zoo.make("vgg_head_bn"), (3, 32, 32), tmp_path / "vgg.onnx", fold=False)
    imported = import_onnx(path)
    assert ops(imported.spec)["batchnorm"] == 7  # five after convs, two in the head (BatchNorm1d)
    assert max_abs_diff(path, imported) < 1e-4


@pytest.mark.slow
def test_dynamo_export_imports(tmp_path):
    path = torch_export(zoo.make("lenet5"), (1, 32, 32), tmp_path / "lenet.onnx", dynamo=True)
    assert max_abs_diff(path, import_onnx(path)) < 1e-4


def test_our_own_export_round_trips_with_its_normalisation(tmp_path):
    from hostside.arch.build import build_module
    from hostside.arch.examples import digits_small_cnn
    from hostside.arch.export import export_onnx
    from hostside.arch.spec import ArchSpec

    torch.manual_seed(0)
    net = build_module(ArchSpec.from_dict(digits_small_cnn()))
    export_onnx(net, tmp_path / "model.onnx", mean=[4.9], std=[6.0])
    imported = import_onnx(tmp_path / "model.onnx")
    assert np.allclose(imported.weights[MEAN_KEY], [4.9]) and np.allclose(imported.weights[STD_KEY], [6.0])
    assert ops(imported.spec)["conv2d"] == 2 and "batchnorm" not in ops(imported.spec)
    assert max_abs_diff(tmp_path / "model.onnx", imported) < 1e-4


def _model(tmp_path: Path, nodes, initializers, name="bad.onnx") -> Path:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(tmp_path / name))
    return tmp_path / name


def _weights():
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
            "fc": rng.standard_normal((10, 4 * 36)).astype(np.float32)}


def test_unsupported_op_names_the_node(tmp_path):
    path = _model(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], name="stem_conv"),
        helper.make_node("Softplus", ["c"], ["r"], name="the_soft_one"),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ], _weights())
    with pytest.raises(UserError, match=r"node 'the_soft_one' \(Softplus\): op 'Softplus' has no ArchSpec"):
        import_onnx(path)


def test_asymmetric_padding_and_broadcasting_add_are_refused(tmp_path):
    pads = _model(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], name="lopsided", pads=[1, 1, 0, 0]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ], {"w": _weights()["w"], "fc": np.zeros((10, 4 * 49), np.float32)}, "pads.onnx")
    with pytest.raises(UserError, match=r"node 'lopsided' \(Conv\): pads \[1, 1, 0, 0\] are not symmetric"):
        import_onnx(pads)
    add = _model(tmp_path, [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["g"]),
        helper.make_node("Add", ["c", "g"], ["s"], name="broadcast_add"),
        helper.make_node("Flatten", ["s"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ], _weights(), "add.onnx")
    with pytest.raises(UserError, match=r"node 'broadcast_add' \(Add\): input shapes .* differ"):
        import_onnx(add)


@pytest.fixture
def hostside(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("hostside.arch.commands",))

    def run(*args):
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_writes_spec_and_weights(hostside, tmp_path):
    from hostside.arch.spec import ArchSpec
    from hostside.arch.weights import load_weights

    path = torch_export(zoo.make("lenet5"), (1, 32, 32), tmp_path / "lenet.onnx")
    code, out, err = hostside("arch", "import", path, "--out", tmp_path / "imported")
    assert code == 0, err
    assert "max abs diff" in out and "61,706 params" in out
    spec = ArchSpec.load(tmp_path / "imported" / "spec.json")
    weights = load_weights(tmp_path / "imported" / "weights.npz")
    assert {f"{n.id}/weight" for n in spec.nodes if n.op in ("conv2d", "linear")} <= set(weights)


def test_cli_bad_file_is_one_line(hostside, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    code, _, err = hostside("arch", "import", tmp_path / "junk.onnx", "--out", tmp_path / "o")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "junk.onnx: not a readable ONNX model" in lines[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_imported_model_evaluates_to_the_onnx_files_accuracy(tmp_path, monkeypatch, capsys, trained_digits_cnn):
    """arch import, then train --init-weights --epochs 0 on a split: the same test accuracy as
    onnxruntime on the original file, on exactly those images."""
    from hostside.train.datasets import load_dataset
    from hostside.train.onnx_eval import evaluate_onnx
    from hostside.train.splits import make_split

    digits = load_dataset("digits")
    path = torch_export(trained_digits_cnn, (1, 8, 8), tmp_path / "digits.onnx")
    split = make_split(digits, seed=3)
    split.save(tmp_path / "split.json")
    want = evaluate_onnx(path, digits, split.test)
    assert want > 0.8
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("hostside.arch.commands", "hostside.train.commands"))
    assert cli.main(["arch", "import", str(path), "--out", str(tmp_path / "imp")]) == 0
    code = cli.main(["train", str(tmp_path / "imp" / "spec.json"), "--init-weights", str(tmp_path / "imp" / "weights.npz"),
                     "--epochs", "0", "--dataset", "digits", "--split", str(tmp_path / "split.json"),
                     "--out", str(tmp_path / "eval")])
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(want) and metrics["onnx_accuracy"] == pytest.approx(want)
