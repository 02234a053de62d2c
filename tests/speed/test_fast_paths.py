"""The speed paths of the analytic side give exactly what the plain computations give.

The cost model, the latency features and the narrow spaces keep caches and fast paths (kernel
size shares looked up once per size, conv attributes interned per configuration, a two-input
merge shortcut, layers as tuples); these tests hold each to the computation it replaces, on
random specs.
"""

from __future__ import annotations

import bisect
import copy
import math

import numpy as np
import pytest

from hostside.arch.cost import LayerCost
from hostside.arch.ops.merge import merge_shape
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec
from hostside.calibration import features
from hostside.calibration.features import SIZE_CLASSES_LOG10_MACS, SIZED_FEATURES, spec_features
from hostside.laws.law import Law
from hostside.spaces.narrow import FAMILY_NAMES, make_narrow


def _plain_size_classes(kernels):
    """The size-class block computed from scratch for every kernel (no shares table)."""
    n = len(SIZE_CLASSES_LOG10_MACS)
    out = [0.0] * (len(SIZED_FEATURES) * n)
    first, last = SIZE_CLASSES_LOG10_MACS[0], SIZE_CLASSES_LOG10_MACS[-1]
    for index, amount in kernels:
        if amount <= 0:
            continue
        position = min(max(math.log10(amount), first), last)
        j = min(bisect.bisect_right(SIZE_CLASSES_LOG10_MACS, position) - 1, n - 2)
        t = (position - SIZE_CLASSES_LOG10_MACS[j]) / (SIZE_CLASSES_LOG10_MACS[j + 1] - SIZE_CLASSES_LOG10_MACS[j])
        row = features._SIZED_INDEX[index] * n
        out[row + j] += amount * (1.0 - t)
        out[row + j + 1] += amount * t
    return out


def test_size_class_shares_table_equals_the_formula():
    rng = np.random.default_rng(0)
    indices = list(features._SIZED_INDEX)
    kernels = [(indices[int(rng.integers(len(indices)))], float(v))
               for v in np.concatenate([10 ** rng.uniform(2, 9, 300), [0, 1, 3162, 10 ** 7.5, 10 ** 8]])]
    kernels += kernels[:50]  # repeated sizes hit the table
    features._SHARES.clear()
    cold = features._size_classes(kernels)
    warm = features._size_classes(kernels)
    assert cold == warm == _plain_size_classes(kernels)


@pytest.mark.parametrize("block", [0, 8, 16])
def test_features_of_random_specs_do_not_depend_on_the_tables(block):
    specs = [ArchSpec.from_dict(random_spec(seed, 5, 15, input_shape=(3, 32, 32)).to_dict()) for seed in range(40)]
    features._SHARES.clear()
    cold = [spec_features(s, block) for s in specs]
    warm = [spec_features(s, block) for s in specs]
    assert cold == warm


def test_two_input_merge_shortcut_equals_the_general_rule():
    rng = np.random.default_rng(1)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 9, 2))
        a, b = (int(rng.integers(1, 64)), h, w), (int(rng.integers(1, 64)), h, w)
        # A third input of the same shape as one of them sends the call down the general path.
        assert merge_shape("m", "concat", [a, b]) == (a[0] + b[0], h, w)
        assert merge_shape("m", "add", [a, b]) == merge_shape("m", "add", [a, b, a if a[0] >= b[0] else b])
        assert merge_shape("m", "concat", [a, b])[1:] == merge_shape("m", "concat", [a, b, b])[1:]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_narrow_fast_builder_equals_the_parser(family):
    """Nodes built with interned attributes equal the same networks parsed from their JSON."""
    space = make_narrow(family, (3, 32, 32), 10)
    for config in Law.uniform(space).sample(space, 8, np.random.default_rng(2)):
        fast = space.spec(config)
        parsed = ArchSpec.from_dict(fast.to_dict())
        assert fast.content_hash() == parsed.content_hash()
        assert fast.cost.to_dict() == parsed.cost.to_dict()
        assert spec_features(fast, 16) == spec_features(parsed, 16)


def test_layer_cost_tuple_keeps_its_fields_and_copies():
    layer = LayerCost("c1", "conv2d", (8, 4, 4), 216, 224, 3456)
    assert (layer.id, layer.op, layer.output_shape, layer.params, layer.deployed_params, layer.macs) == (
        "c1", "conv2d", (8, 4, 4), 216, 224, 3456)
    assert layer.output_bytes == 8 * 4 * 4 * 4
    assert copy.deepcopy(layer) == layer and type(copy.deepcopy(layer)) is LayerCost
    assert layer.to_dict()["output_shape"] == [8, 4, 4]
