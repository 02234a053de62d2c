"""The feature vector of an ArchSpec equals that of the ONNX file exported from it."""

from __future__ import annotations

import pytest

from hostside.arch.build import build_module
from hostside.arch.export import export_onnx
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec
from hostside.calibration.features import FEATURE_NAMES, NCHWC_BLOCKS, onnx_features, spec_features
from hostside.calibration.suite import calibration_suite
from hostside.errors import UserError


def _specs():
    specs = [random_spec(seed, 3, 12, shape) for seed, shape in
             enumerate([(1, 8, 8), (3, 16, 16), (1, 28, 28), (3, 32, 32)] * 5)]
    return specs + calibration_suite(18, seed=11, input_shapes=[(3, 16, 16), (1, 12, 12)])


@pytest.mark.parametrize("block", NCHWC_BLOCKS)
def test_spec_and_exported_onnx_give_the_same_features(tmp_path, block):
    for i, spec in enumerate(_specs()):
        path = tmp_path / f"m{i}.onnx"
        export_onnx(build_module(spec), path, check=False)
        from_spec = spec_features(spec, block)
        from_onnx = onnx_features(path, block)
        differ = {n: (a, b) for n, a, b in zip(FEATURE_NAMES, from_spec, from_onnx) if a != b}
        assert not differ, f"{spec.name}: {differ}"
        assert from_spec[FEATURE_NAMES.index("macs")] == spec.cost.macs
        assert from_spec[FEATURE_NAMES.index("params")] == spec.cost.deployed_params


def _net(act: str) -> ArchSpec:
    return ArchSpec.from_dict({"input_shape": [16, 8, 8], "num_classes": 4, "nodes": [
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 16, "kernel": 3, "padding": 1},
        {"id": "a", "op": act, "inputs": ["c"]},
        {"id": "g", "op": "global_avgpool", "inputs": ["a"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 4},
    ]})


def test_relu_after_a_conv_is_fused_and_elu_is_not():
    ops = FEATURE_NAMES.index("ops")
    transcendental = FEATURE_NAMES.index("transcendental_elems")
    relu, elu = spec_features(_net("relu")), spec_features(_net("elu"))
    assert elu[ops] == relu[ops] + 1
    assert relu[transcendental] == 0 and elu[transcendental] == 16 * 8 * 8


def test_blocked_layout_pads_channels_to_the_block():
    spec = ArchSpec.from_dict({"input_shape": [20, 8, 8], "num_classes": 4, "nodes": [
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 20, "kernel": 1},
        {"id": "f", "op": "flatten", "inputs": ["c"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 4},
    ]})
    blocked = spec_features(spec, 16)
    plain = spec_features(spec, 0)
    assert blocked[FEATURE_NAMES.index("nchwc_conv_macs")] == 32 * 32 * 64
    assert plain[FEATURE_NAMES.index("gemm_pointwise_macs")] == 20 * 20 * 64
    assert plain[FEATURE_NAMES.index("nchwc_conv_macs")] == 0


def test_a_file_that_is_not_onnx_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"certainly not protobuf")
    with pytest.raises(UserError, match="not a readable ONNX model"):
        onnx_features(path)
