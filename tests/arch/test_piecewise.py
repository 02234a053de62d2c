"""The piecewise activation: left half below zero, right half from zero up, in torch and in
onnxruntime alike, with no parameters or MACs in the cost model or the ONNX read-back."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from hostside.arch.build import build_module, count_params
from hostside.arch.export import export_onnx
from hostside.arch.onnx_stats import onnx_stats
from hostside.arch.ops.base import SpecError
from hostside.arch.ops.piecewise import HALVES
from hostside.arch.ops.neutral import spec_neutral_ops
from hostside.arch.spec import ArchSpec

REFERENCE = {"relu": F.relu, "elu": F.elu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "swish": F.silu,
             "selu": F.selu, "linear": lambda x: x}


def _spec(left, right):
    return ArchSpec.from_dict({"input_shape": [1, 6, 6], "num_classes": 3, "nodes": [
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3, "padding": 1},
        {"id": "a", "op": "piecewise", "inputs": ["c"], "left": left, "right": right},
        {"id": "f", "op": "flatten", "inputs": ["a"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 3}]})


@pytest.mark.parametrize("left,right", [("elu", "relu"), ("swish", "linear"), ("linear", "tanh"), ("selu", "sigmoid")])
def test_each_half_applies_on_its_side_of_zero(left, right):
    module = _spec(left, right).nodes[1]
    from hostside.arch.ops import get_op

    act = get_op("piecewise").torch_module(module, [(4, 6, 6)], (4, 6, 6))
    x = torch.linspace(-3, 3, 61)
    y = act(x)
    assert torch.allclose(y[x < 0], REFERENCE[left](x[x < 0]))
    assert torch.allclose(y[x >= 0], REFERENCE[right](x[x >= 0]))


def test_every_pair_exports_to_onnx_that_onnxruntime_runs_as_torch(tmp_path):
    for left, right in itertools.product(HALVES, HALVES):
        spec = _spec(left, right)
        net = build_module(spec)
        report = export_onnx(net, tmp_path / f"{left}_{right}.onnx", check=True)
        assert report.max_abs_diff < 1e-5, (left, right)
        stats = onnx_stats(report.path)
        assert stats["params"] == spec.cost.deployed_params == count_params(net), (left, right)
        assert stats["macs"] == spec.cost.macs, (left, right)
        spec_neutral_ops(spec)  # the latency features can read it


def test_an_activation_outside_the_list_is_one_line():
    with pytest.raises(SpecError, match=r"node 'a': left must be one of .*'relu'.*got 'gelu'"):
        _spec("gelu", "relu")
