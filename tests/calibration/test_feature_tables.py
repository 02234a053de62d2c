"""The latency features' size-class shares table (kernel size shares looked up once per size)
gives exactly what the formula gives, and features of random specs do not depend on it."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest

from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec
from hostside.calibration import features
from hostside.calibration.features import SIZE_CLASSES_LOG10_MACS, SIZED_FEATURES, spec_features


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
