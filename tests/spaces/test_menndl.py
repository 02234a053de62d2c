"""MENNDL's 32-position switchable layer space: allowed kinds, shapes as the cost model gives
them, invalid shape sequences repaired, unrepairable genotypes refused (the search over it is
tested in tests/search/strategies/test_menndl_search.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hostside.arch.spec import SpecError
from hostside.spaces import make_space
from hostside.spaces.menndl import CLASSIFIER_KINDS, FEATURE_KINDS, POSITIONS


def _only(space, features=(), classifier=()):
    g = space.sample(np.random.default_rng(0))
    for layer in g["features"] + g["classifier"]:
        layer["on"] = False
    for i, layer in enumerate(features):
        g["features"][i] = {"on": True, "uid": 100 + i, **layer}
    for i, layer in enumerate(classifier):
        g["classifier"][i] = {"on": True, "uid": 200 + i, **layer}
    return g


def test_genotype_has_16_feature_and_16_classifier_positions_of_the_allowed_kinds():
    space = make_space("menndl", (1, 28, 28), 10)
    rng = np.random.default_rng(3)
    for _ in range(50):
        g = space.sample(rng)
        assert len(g["features"]) == POSITIONS == len(g["classifier"]) == 16
        assert {layer["kind"] for layer in g["features"]} <= set(FEATURE_KINDS)
        assert {layer["kind"] for layer in g["classifier"]} <= set(CLASSIFIER_KINDS)
        child, op = space.mutate(g, rng)
        assert op in space.mutation_operators
        space.decode(space.crossover(g, child, rng))  # every child decodes (repaired if needed)


def test_non_square_kernels_and_inception_decode_to_the_shapes_the_cost_model_gives():
    space = make_space("menndl", (1, 28, 28), 10)
    g = _only(space, [{"kind": "conv", "filters": 8, "kernel": [20, 3], "stride": 1},
                      {"kind": "inception", "branch1": 4, "branch3": 8, "branch5": 4, "pool_proj": 4},
                      {"kind": "pool", "mode": "max", "kernel": 2}], [{"kind": "fc", "units": 32}])
    spec = space.decode(g)
    nodes = {n.id: n for n in spec.nodes}
    assert list(nodes["conv100"].attrs["kernel"]) == [20, 3]
    assert len(nodes["inc101"].inputs) == 4  # 1x1, 3x3, 5x5 and pool-projection branches concatenated
    assert "pool102" in nodes and "fc200" in nodes and nodes["classifier"].attrs["out_features"] == 10


def test_invalid_shape_sequences_are_repaired_before_training():
    space = make_space("menndl", (1, 8, 8), 10)
    pools = [{"kind": "pool", "mode": "max", "kernel": 3}] * 4  # 8 -> 3 -> 1: the last two cannot apply
    g = _only(space, [{"kind": "conv", "filters": 4, "kernel": [20, 3], "stride": 1}, *pools])
    spec = space.decode(g)
    nodes = {n.id: n for n in spec.nodes}
    assert list(nodes["conv100"].attrs["kernel"]) == [8, 3]  # clipped to the 8x8 map
    assert [i for i in nodes if i.startswith("pool")] == ["pool101", "pool102"]


def test_an_unrepairable_genotype_is_rejected_with_a_spec_error():
    space = make_space("menndl", (1, 8, 8), 10)
    g = _only(space, [{"kind": "act", "fn": "no-such-activation"}])
    with pytest.raises(SpecError):
        space.decode(g)
