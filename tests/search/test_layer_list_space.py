"""The layer-list space: every operator yields a valid, decodable network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.spaces import LayerListSpace, make_space, space_options


@pytest.fixture
def space():
    return make_space("layer_list", (1, 8, 8), 10)


def test_samples_mutations_and_crossovers_all_decode_to_valid_specs(space):
    rng = np.random.default_rng(0)
    population = [space.sample(rng) for _ in range(60)]
    operators = set()
    for i in range(300):
        child, op = space.mutate(population[i % 60], rng)
        operators.add(op)
        assert space.is_valid(child) and child != population[i % 60]
        space.decode(child)
        crossed = space.crossover(population[i % 60], population[(i * 7 + 1) % 60], rng)
        assert space.is_valid(crossed)
        space.decode(crossed)
    assert operators == {"add_layer", "remove_layer", "modify_layer", "modify_head", "modify_lr"}
    json.dumps(population)  # genotypes are plain JSON for the journal


def test_decoded_network_has_conv_bn_relu_blocks_pooling_and_a_linear_head(space):
    genotype = {"layers": [{"type": "conv", "kernel": 3, "filters": 8, "stride": 1, "padding": 1},
                           {"type": "pool", "kind": "avg", "size": 2, "stride": 2}], "head": 32, "lr": 0.003}
    spec = space.decode(genotype)
    assert [n.op for n in spec.nodes] == ["conv2d", "batchnorm", "relu", "avgpool", "flatten", "linear", "relu", "linear"]
    assert spec.cost.params == 8 * 9 + 16 + 8 * 4 * 4 * 32 + 32 + 32 * 10 + 10
    assert space.training_overrides(genotype) == {"lr": 0.003}


def test_a_layer_list_that_shrinks_the_map_below_one_pixel_is_invalid(space):
    too_deep = {"layers": [{"type": "conv", "kernel": 3, "filters": 8, "stride": 2, "padding": 0}] * 3,
                "head": 0, "lr": 0.003}
    assert not space.is_valid(too_deep)


def test_same_seed_same_samples_and_options_round_trip():
    a = LayerListSpace((1, 8, 8), 10, max_layers=3)
    assert [a.sample(np.random.default_rng(5)) for _ in range(3)] == [a.sample(np.random.default_rng(5)) for _ in range(3)]
    assert space_options(a) == {"min_layers": 1, "max_layers": 3}
    assert make_space("layer_list", (1, 8, 8), 10, **space_options(a)).describe() == a.describe()


def test_unknown_space_or_option_is_one_clear_error():
    with pytest.raises(UserError, match="space .grid. is unknown; choose one of: .*layer_list"):
        make_space("grid", (1, 8, 8), 10)
    with pytest.raises(UserError, match="max_depth"):
        make_space("layer_list", (1, 8, 8), 10, max_depth=3)
