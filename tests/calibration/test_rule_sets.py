"""The runtime rule sets: the x86 ones reproduce the frozen feature vectors exactly, the
others differ where their runtime does, and a board's information picks its rule set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostside.arch.random_specs import random_spec
from hostside.arch.spec import INPUT, ArchSpec
from hostside.calibration.features import FEATURE_NAMES, FEATURE_SET, spec_features
from hostside.calibration.rules import RULE_SETS, board_runtime_isa, candidates_for, rule_set
from hostside.calibration.suite import calibration_suite
from hostside.errors import UserError

#: Feature vectors of 30 specs computed before the rules became data (blocks 0, 8, 16).
EXPECTED = json.loads((Path(__file__).parent / "data" / "expected_features_v5.json").read_text())
_BLOCK_RULES = {"0": "onnxruntime-x86_64-gemm", "8": "onnxruntime-x86_64-avx2", "16": "onnxruntime-x86_64-avx512"}


def _frozen_specs():
    suite = calibration_suite(12, 2024)
    for entry in EXPECTED["specs"]:
        spec = random_spec(entry["index"]) if entry["source"] == "random_spec" else suite[entry["index"]]
        assert spec.content_hash() == entry["spec_sha256"], "the frozen corpus no longer generates the same specs"
        yield spec, entry


def test_x86_rule_sets_reproduce_the_frozen_features_exactly() -> None:
    assert EXPECTED["feature_set"] == FEATURE_SET and EXPECTED["feature_names"] == list(FEATURE_NAMES)
    checked = 0
    for spec, entry in _frozen_specs():
        for block, name in _BLOCK_RULES.items():
            assert spec_features(spec, RULE_SETS[name]) == entry["features"][block], (spec.name, name)
            assert spec_features(spec, int(block)) == entry["features"][block]
            checked += 1
    assert checked == 90


def _conv_act(act: str) -> ArchSpec:
    return ArchSpec.from_dict({"name": f"conv-{act}", "input_shape": [8, 16, 16], "num_classes": 10, "nodes": [
        {"id": "c", "op": "conv2d", "inputs": [INPUT], "out_channels": 16, "kernel": [3, 3], "padding": [1, 1]},
        {"id": "a", "op": act, "inputs": ["c"]},
        {"id": "p", "op": "global_avgpool", "inputs": ["a"]},
        {"id": "f", "op": "flatten", "inputs": ["p"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10}]})


def test_tflite_fuses_only_relu_and_relu6() -> None:
    ops = FEATURE_NAMES.index("ops")
    for act, tflite_extra in (("relu6", 0), ("sigmoid", 1), ("tanh", 1)):
        ort = spec_features(_conv_act(act), "onnxruntime-arm64")
        tfl = spec_features(_conv_act(act), "tflite-arm64")
        assert tfl[ops] - ort[ops] == tflite_extra, act
    # ReLU6 runs inside TFLite's conv kernel but is a second pass in onnxruntime's
    fused = FEATURE_NAMES.index("fused_activation_bytes")
    assert spec_features(_conv_act("relu6"), "tflite-arm64")[fused] == 0
    assert spec_features(_conv_act("relu6"), "onnxruntime-arm64")[fused] > 0


def test_arm_rule_sets_have_no_blocked_layout() -> None:
    spec = random_spec(3)
    for name in ("onnxruntime-arm64", "onnxruntime-armv7", "tflite-arm64"):
        f = dict(zip(FEATURE_NAMES, spec_features(spec, name)))
        assert all(v == 0 for k, v in f.items() if k.startswith(("nchwc_", "reorder_"))), name
        assert f["gemm_conv_macs"] + f["gemm_pointwise_macs"] > 0


def test_board_information_picks_the_rule_sets() -> None:
    pi = {"architecture": "aarch64", "onnxruntime": {"version": "1.17.0"}}
    assert candidates_for(*board_runtime_isa(pi)) == ("onnxruntime-arm64",)
    x86 = {"info": {"architecture": "x86_64", "onnxruntime": {"version": "1.31.1"}}}
    assert set(candidates_for(*board_runtime_isa(x86))) == {
        "onnxruntime-x86_64-gemm", "onnxruntime-x86_64-avx2", "onnxruntime-x86_64-avx512"}
    assert candidates_for("tflite", "arm64") == ("tflite-arm64",)
    with pytest.raises(UserError, match="no runtime rule set"):
        candidates_for("tvm", "riscv64")
    with pytest.raises(UserError, match="unknown runtime rule set"):
        rule_set("onnxruntime-sparc")
