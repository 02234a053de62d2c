"""The speed paths of the cost model give exactly what the plain computations give: the
two-input merge shortcut equals the general shape rule, and layers kept as tuples keep their
fields and copy."""

from __future__ import annotations

import copy

import numpy as np

from hostside.arch.cost import LayerCost
from hostside.arch.ops.merge import merge_shape


def test_two_input_merge_shortcut_equals_the_general_rule():
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        a, b = (int(rng.integers(1, 64)), h, w), (int(rng.integers(1, 64)), h, w)
        # A third input of the same shape as one of them sends the call down the general path.
        assert merge_shape("m", "concat", [a, b]) == (a[0] + b[0], h, w)
        assert merge_shape("m", "add", [a, b]) == merge_shape("m", "add", [a, b, a if a[0] >= b[0] else b])
        assert merge_shape("m", "concat", [a, b])[1:] == merge_shape("m", "concat", [a, b, b])[1:]


def test_layer_cost_tuple_keeps_its_fields_and_copies():
    layer = LayerCost("c1", "conv2d", (8, 4, 4), 216, 224, 3456)
    assert (layer.id, layer.op, layer.output_shape, layer.params, layer.deployed_params, layer.macs) == (
        "c1", "conv2d", (8, 4, 4), 216, 224, 3456)
    assert layer.output_bytes == 8 * 4 * 4 * 4
    assert copy.deepcopy(layer) == layer and type(copy.deepcopy(layer)) is LayerCost
    assert layer.to_dict()["output_shape"] == [8, 4, 4]
