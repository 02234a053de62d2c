"""The calibration suite: deterministic, spread over four decades, covering the op families."""

from __future__ import annotations

import collections

import numpy as np

from hostside.calibration.suite import DEFAULT_INPUT_SHAPES, calibration_suite


def test_same_seed_same_suite_other_seed_other_suite():
    a = [s.content_hash() for s in calibration_suite(40, seed=3)]
    assert a == [s.content_hash() for s in calibration_suite(40, seed=3)]
    assert a != [s.content_hash() for s in calibration_suite(40, seed=4)]
    assert len(set(a)) == 40


def test_macs_and_params_each_span_four_decades_evenly():
    suite = calibration_suite(200)
    for values in ([s.cost.macs for s in suite], [s.cost.deployed_params for s in suite]):
        logs = np.log10(values)
        assert logs.max() - logs.min() >= 4.0
        low = np.floor(logs.min())
        counts, _ = np.histogram(logs, bins=4, range=(logs.min(), logs.min() + 4.0))
        # Evenly: every decade of the four holds at least half its fair share.
        assert counts.min() >= 0.5 * len(suite) / 4.4, (low, counts)


def test_suite_covers_the_operator_families_and_input_shapes():
    suite = calibration_suite(200)
    ops = collections.Counter(n.op for s in suite for n in s.nodes)
    for op in ("conv2d", "add", "concat", "maxpool", "avgpool", "global_avgpool", "linear", "batchnorm"):
        assert ops[op] > 0, op
    depthwise = sum(1 for s in suite for n in s.nodes
                    if n.op == "conv2d" and n.attrs["groups"] > 1)
    assert depthwise >= 20
    fc_heavy = sum(1 for s in suite if s.name.startswith("fc_heavy"))
    assert fc_heavy >= 10
    # weights beyond a desktop last-level cache (32 MiB), so the fit sees DRAM-bound models,
    # without crowding out the conv families
    assert sum(1 for s in suite if s.cost.deployed_params * 4 > 32 * 2**20) >= 5
    assert fc_heavy <= 0.4 * len(suite)
    shapes = {tuple(s.input_shape) for s in suite}
    assert (1, 8, 8) in shapes and (3, 96, 96) in shapes and len(shapes) == len(DEFAULT_INPUT_SHAPES)


def test_input_shape_narrows_the_suite():
    suite = calibration_suite(30, input_shapes=[(1, 28, 28)])
    assert {tuple(s.input_shape) for s in suite} == {(1, 28, 28)}
