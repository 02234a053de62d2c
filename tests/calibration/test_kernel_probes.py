"""Kernel probes: seeded, within their caps, every kind present, and each probe really
dominated by its kind's kernels (that is what makes a kernel cost identifiable in the fit)."""

from collections import Counter

import pytest

from hostside.calibration.features import FEATURE_NAMES, spec_features
from hostside.calibration.kernel_probes import (MAX_PROBE_MACS, MAX_PROBE_PARAMS, MAX_PROBES, PROBE_KINDS,
                                                kernel_probes, probe_count)
from hostside.calibration.suite import DEFAULT_INPUT_SHAPES


def _kind(spec) -> str:
    return spec.name.split("-")[1]


def test_the_same_arguments_give_the_same_probes_and_another_seed_others() -> None:
    first = [s.content_hash() for s in kernel_probes(30, 7, DEFAULT_INPUT_SHAPES)]
    assert first == [s.content_hash() for s in kernel_probes(30, 7, DEFAULT_INPUT_SHAPES)]
    assert set(first).isdisjoint(s.content_hash() for s in kernel_probes(30, 8, DEFAULT_INPUT_SHAPES))


@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32), (3, 224, 224)])
def test_probes_stay_within_their_caps(shape) -> None:
    probes = kernel_probes(60, 2024, [shape])
    assert len(probes) == 60
    assert all(s.input_shape == shape for s in probes)
    assert all(s.cost.macs <= MAX_PROBE_MACS and s.cost.deployed_params <= MAX_PROBE_PARAMS for s in probes)


def test_probes_over_the_suite_shapes_cover_every_kind() -> None:
    assert set(Counter(_kind(s) for s in kernel_probes(60, 2024, DEFAULT_INPUT_SHAPES))) == set(PROBE_KINDS)


def test_each_probe_is_dominated_by_its_own_kernel_kind() -> None:
    index = {name: FEATURE_NAMES.index(name) for name in FEATURE_NAMES}
    by_kind = {}
    for spec in kernel_probes(100, 2024, DEFAULT_INPUT_SHAPES):
        by_kind.setdefault(_kind(spec), []).append(spec_features(spec, 16))
    depthwise = [v[index["nchwc_depthwise_macs"]] / max(v[index["nchwc_conv_macs"]], 1) for v in by_kind["depthwise"]]
    assert sorted(depthwise)[len(depthwise) // 2] > 1.0  # the median depthwise probe: more depthwise MACs than dense
    assert all(v[index["conv_count"]] == 0 and v[index["linear_macs"]] > 0 for v in by_kind["mlp"])
    assert all(v[index["concat_bytes"]] > 0 for v in by_kind["concats"])
    assert all(v[index["transcendental_elems"]] + v[index["scalar_exp_elems"]] + v[index["cheap_eltwise_bytes"]] > 0
               for v in by_kind["activations"])


def test_a_suite_gets_as_many_probes_as_models_up_to_the_cap() -> None:
    assert probe_count(16) == 16
    assert probe_count(60) == 60
    assert probe_count(240) == MAX_PROBES
