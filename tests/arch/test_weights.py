"""Weights as .npz artifacts and EA4CNN's inheritance rule, checked tensor by tensor on real
layer-list networks whose node ids survive the insertion and removal of layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hostside.arch.build import build_module
from hostside.arch.weights import (inherit, load_state, load_weights, normalisation, save_state, sha256_of,
                                   state_bytes, state_from_bytes, state_of, with_normalisation)
from hostside.errors import UserError
from hostside.spaces import make_space

CONV = {"type": "conv", "kernel": 3, "filters": 8, "stride": 1, "padding": 1}


@pytest.fixture
def space():
    return make_space("layer_list", (1, 8, 8), 10)


def _genotype():
    return {"layers": [{**CONV, "uid": 1001}, {"type": "pool", "kind": "max", "size": 2, "stride": 2, "uid": 1002},
                       {**CONV, "filters": 16, "uid": 1003}], "head": 32, "lr": 0.003}


def _state(space, genotype, seed):
    torch.manual_seed(seed)
    return state_of(build_module(space.decode(genotype)))


def test_node_ids_survive_insertion_and_removal_of_layers(space):
    rng = np.random.default_rng(0)
    parent = _genotype()
    ids = {n.id for n in space.decode(parent).nodes}
    for _ in range(30):
        child, op = space.mutate(parent, rng, operator="add_layer")
        child_ids = {n.id for n in space.decode(child).nodes}
        assert op == "add_layer" and ids <= child_ids and len(child_ids) > len(ids)
        shrunk, _ = space.mutate(parent, rng, operator="remove_layer")
        assert {n.id for n in space.decode(shrunk).nodes} < ids
    legacy = copy.deepcopy(parent)
    for layer in legacy["layers"]:
        del layer["uid"]
    assert [n.id for n in space.decode(legacy).nodes][:3] == ["conv0", "bn0", "relu0"]  # pre-uid genotypes
    grown, _ = space.mutate(legacy, rng, operator="add_layer")
    assert {"conv0", "pool1", "conv2"} <= {n.id for n in space.decode(grown).nodes}


def test_inheritance_copies_slices_cuts_off_extra_and_initialises_missing(space):
    parent = _genotype()
    child = copy.deepcopy(parent)
    child["layers"][0]["filters"] = 12                       # wider: 8 channels copied, 4 fresh
    child["layers"][2]["filters"] = 4                        # narrower: 12 of the parent's 16 cut off
    child["layers"].insert(0, {**CONV, "filters": 4, "uid": 2000})  # a new first layer: all fresh
    child["layers"][1]["kernel"] = 3
    parent_state = _state(space, parent, seed=1)
    fresh = _state(space, child, seed=2)
    state, fraction, account = inherit(fresh, [parent_state])

    assert np.array_equal(state["conv2000/weight"], fresh["conv2000/weight"])            # missing: fresh
    assert account["conv2000/weight"]["from"] is None
    # conv1001 now reads 4 input channels from the new layer instead of 1: the overlap is copied
    np.testing.assert_array_equal(state["conv1001/weight"][:8, :1], parent_state["conv1001/weight"][:8, :1])
    np.testing.assert_array_equal(state["conv1001/weight"][8:], fresh["conv1001/weight"][8:])
    np.testing.assert_array_equal(state["conv1001/weight"][:8, 1:], fresh["conv1001/weight"][:8, 1:])
    np.testing.assert_array_equal(state["bn1001/weight"][:8], parent_state["bn1001/weight"])
    np.testing.assert_array_equal(state["bn1001/running_var"][:8], parent_state["bn1001/running_var"])
    # conv1003: 12 of the parent's 16 filters cut off; it now reads 12 channels, the parent read 8
    np.testing.assert_array_equal(state["conv1003/weight"][:, :8], parent_state["conv1003/weight"][:4])
    np.testing.assert_array_equal(state["conv1003/weight"][:, 8:], fresh["conv1003/weight"][:, 8:])
    assert state["conv1003/weight"].shape == fresh["conv1003/weight"].shape == (4, 12, 3, 3)
    # the head's input width changed (4 channels x 4 x 4): leading slice copied
    np.testing.assert_array_equal(state["hidden/weight"][:, :64], parent_state["hidden/weight"][:, :64])
    np.testing.assert_array_equal(state["classifier/weight"], parent_state["classifier/weight"])

    params = {k: v for k, v in fresh.items() if k.rsplit("/", 1)[1] in ("weight", "bias")}
    copied = sum(account[k]["copied"] for k in params)
    assert fraction == pytest.approx(copied / sum(v.size for v in params.values())) and 0 < fraction < 1
    assert inherit(parent_state, [parent_state])[1] == 1.0 and inherit(fresh, [])[1] == 0.0
    module = build_module(space.decode(child))
    load_state(module, state)  # the inherited state fits the child exactly
    assert torch.equal(module.layers[0].weight, torch.from_numpy(state["conv2000/weight"]))


def test_the_second_parent_fills_what_the_first_lacks(space):
    first, second = _genotype(), _genotype()
    second["layers"].append({**CONV, "uid": 3000})
    child = copy.deepcopy(second)
    a, b = _state(space, first, 1), _state(space, second, 2)
    state, _, account = inherit(_state(space, child, 3), [a, b])
    assert account["conv1001/weight"]["from"] == 0 and account["conv3000/weight"]["from"] == 1
    np.testing.assert_array_equal(state["conv3000/weight"], b["conv3000/weight"])


def test_npz_round_trip_with_hash_normalisation_and_no_pickle(space, tmp_path):
    state = with_normalisation(_state(space, _genotype(), 4), [0.5], [0.25])
    sha = save_state(state, tmp_path / "w.npz")
    assert sha == sha256_of(tmp_path / "w.npz") and len(sha) == 64
    back = load_weights(tmp_path / "w.npz")
    assert back.keys() == state.keys() and all(np.array_equal(back[k], state[k]) for k in state)
    assert normalisation(back) == ([0.5], [0.25])
    assert state_from_bytes(state_bytes(state)).keys() == state.keys()
    np.savez(tmp_path / "pickled.npz", __hostside_weights__=np.array(1), bad=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UserError, match="pickled.npz: not a readable .npz weights file"):
        load_weights(tmp_path / "pickled.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(UserError, match="not a hostside weights file"):
        load_weights(tmp_path / "other.npz")


def test_weights_of_another_network_name_the_first_tensor_that_differs(space):
    other = _genotype()
    other["layers"][0]["filters"] = 16
    module = build_module(space.decode(_genotype()))
    with pytest.raises(UserError, match=r"tensor 'conv1001/weight' has shape \[16, 1, 3, 3\], the network needs \[8, 1, 3, 3\]"):
        load_state(module, _state(space, other, 0))
    state = _state(space, _genotype(), 0)
    del state["bn1003/running_mean"]
    with pytest.raises(UserError, match="tensor 'bn1003/running_mean' is missing"):
        load_state(module, state)
