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
    scalar_exp = FEATURE_NAMES.index("scalar_exp_elems")
    relu, elu = spec_features(_net("relu")), spec_features(_net("elu"))
    assert elu[ops] == relu[ops] + 1
    assert relu[scalar_exp] == 0 and elu[scalar_exp] == 16 * 8 * 8


def test_elu_and_sigmoid_are_counted_as_different_kernels():
    """ELU computes exp element by element, sigmoid runs a vectorised kernel: two features."""
    transcendental, scalar_exp = FEATURE_NAMES.index("transcendental_elems"), FEATURE_NAMES.index("scalar_exp_elems")
    sigmoid, elu = spec_features(_net("sigmoid")), spec_features(_net("elu"))
    assert (sigmoid[transcendental], sigmoid[scalar_exp]) == (16 * 8 * 8, 0)
    assert (elu[transcendental], elu[scalar_exp]) == (0, 16 * 8 * 8)


def test_only_relu_is_free_inside_a_conv():
    """ReLU runs inside the conv kernel; ReLU6 (Clip) is fused too, but passes over the output again."""
    fused = FEATURE_NAMES.index("fused_activation_bytes")
    relu, relu6 = spec_features(_net("relu"), 16), spec_features(_net("relu6"), 16)
    assert relu[fused] == 0 and relu6[fused] == 16 * 8 * 8 * 4
    assert relu6[FEATURE_NAMES.index("ops")] == relu[FEATURE_NAMES.index("ops")]


def _blocked_then_narrow() -> ArchSpec:
    """A 16-channel conv feeding two 8-channel 1x1 convs and a residual add of 16 channels."""
    return ArchSpec.from_dict({"input_shape": [16, 8, 8], "num_classes": 4, "nodes": [
        {"id": "a", "op": "conv2d", "inputs": ["input"], "out_channels": 8, "kernel": 1},
        {"id": "b", "op": "conv2d", "inputs": ["a"], "out_channels": 16, "kernel": 1},
        {"id": "c", "op": "conv2d", "inputs": ["a"], "out_channels": 16, "kernel": 3, "padding": 1},
        {"id": "s", "op": "add", "inputs": ["b", "c"]},
        {"id": "g", "op": "global_avgpool", "inputs": ["s"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 4},
    ]})


def test_a_narrow_conv_reads_a_plain_copy_made_once_per_tensor():
    """Convs with fewer input channels than the block read the plain layout: the blocked
    output of ``a`` is reordered once for both of its consumers, and 1x1 and larger kernels
    of that kind are separate features."""
    f = dict(zip(FEATURE_NAMES, spec_features(_blocked_then_narrow(), 16)))
    reorder_input_bytes = 16 * 64 * 4  # the network input, into the blocked layout for conv a
    reorder_a_bytes = 8 * 64 * 4  # a's output back to plain, once
    reorder_pool_bytes = 16 * 4  # the pooled vector, back to plain for the linear layer
    assert f["reorder_input_bytes"] == reorder_input_bytes
    assert f["reorder_output_bytes"] == reorder_a_bytes + reorder_pool_bytes
    assert f["nchwc_plain_input_pointwise_macs"] == 16 * 8 * 64
    assert f["nchwc_plain_input_macs"] == 16 * 8 * 9 * 64
    # The add of two blocked conv outputs is fused into the conv: no operator of its own.
    # input normalisation (2) + ReorderInput + 3 convs + ReorderOutput(a) + pool + ReorderOutput
    # + flatten + linear
    assert f["ops"] == 2 + 1 + 3 + 1 + 1 + 1 + 1 + 1


def test_a_windowed_pool_over_a_plain_aligned_tensor_runs_blocked():
    spec = ArchSpec.from_dict({"input_shape": [16, 8, 8], "num_classes": 4, "nodes": [
        {"id": "p", "op": "maxpool", "inputs": ["input"], "kernel": 2},
        {"id": "a", "op": "conv2d", "inputs": ["p"], "out_channels": 16, "kernel": 1},
        {"id": "b", "op": "conv2d", "inputs": ["p"], "out_channels": 16, "kernel": 1},
        {"id": "s", "op": "concat", "inputs": ["a", "b"]},
        {"id": "g", "op": "global_avgpool", "inputs": ["s"]},
        {"id": "f", "op": "flatten", "inputs": ["g"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 4},
    ]})
    f = dict(zip(FEATURE_NAMES, spec_features(spec, 16)))
    # one ReorderInput before the pool (shared by both convs), one ReorderOutput after the
    # global pool; the aligned concat stays blocked
    assert (f["reorder_input_bytes"], f["reorder_output_bytes"]) == (16 * 64 * 4, 32 * 4)


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


def test_size_classes_split_each_mac_total_by_kernel_size():
    from hostside.calibration.features import SIZE_CLASSES_LOG10_MACS, SIZED_FEATURES

    for spec in _specs()[:12]:
        features = dict(zip(FEATURE_NAMES, spec_features(spec, 16)))
        for name in SIZED_FEATURES:
            parts = [features[f"{name}_size{c:g}"] for c in SIZE_CLASSES_LOG10_MACS]
            assert min(parts) >= 0 and sum(parts) == pytest.approx(features[name], rel=1e-9), (spec.name, name)


def test_a_small_and_a_large_conv_land_in_different_size_classes():
    def conv(side: int, width: int) -> ArchSpec:
        return ArchSpec.from_dict({"input_shape": [16, side, side], "num_classes": 10, "nodes": [
            {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": width, "kernel": 3, "padding": 1},
            {"id": "f", "op": "flatten", "inputs": ["c"]}, {"id": "fc", "op": "linear", "inputs": ["f"],
                                                          "out_features": 10}]})
    small, large = (dict(zip(FEATURE_NAMES, spec_features(conv(s, w), 16))) for s, w in ((4, 16), (64, 64)))
    assert small["nchwc_conv_macs_size4.5"] > 0 and small["nchwc_conv_macs_size7.5"] == 0
    assert large["nchwc_conv_macs_size7.5"] > 0 and large["nchwc_conv_macs_size4.5"] == 0
