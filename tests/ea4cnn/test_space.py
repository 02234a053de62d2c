"""The EA4CNN chromosome: every operator does what the paper says and nothing else, node ids
follow the layer genes, and weights are inherited tensor by tensor across insertion and removal."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hostside.arch.build import build_module
from hostside.arch.weights import inherit, load_state, state_of
from hostside.spaces.ea4cnn import OPERATORS, Ea4cnnSpace


@pytest.fixture
def space():
    return Ea4cnnSpace((1, 8, 8), 10)


def a_network(space, layers):
    return {"id": "p", "age": 2, "lr": 0.003, "head": {"uid": "h", "units": 50},
            "layers": [dict(layer, uid=f"u{i}") for i, layer in enumerate(layers)]}


CONV = {"type": "conv", "kernel": 3, "filters": 8, "stride": 1, "padding": 1}
POOL = {"type": "pool", "kind": "max", "size": 2, "stride": 2}


def test_samples_are_valid_and_follow_table_1(space):
    rng = np.random.default_rng(1)
    for _ in range(200):
        g = space.sample(rng)
        assert space.is_valid(g) and 1 <= len(g["layers"]) <= 8 and g["head"]["units"] == 50
        assert all(layer["filters"] <= 12 for layer in g["layers"] if layer["type"] == "conv")
        assert all(2 <= layer["size"] <= 4 for layer in g["layers"] if layer["type"] == "pool")
        spec = space.decode(g)
        assert spec.num_classes == 10 and [n.op for n in spec.nodes][-4:] == ["flatten", "linear", "relu", "linear"]


def test_conv_genes_decode_to_conv_bn_relu_named_after_the_gene(space):
    spec = space.decode(a_network(space, [CONV, POOL, CONV]))
    assert [(n.id, n.op) for n in spec.nodes] == [
        ("convu0", "conv2d"), ("bnu0", "batchnorm"), ("reluu0", "relu"), ("poolu1", "maxpool"),
        ("convu2", "conv2d"), ("bnu2", "batchnorm"), ("reluu2", "relu"),
        ("flatten", "flatten"), ("fch", "linear"), ("fch_relu", "relu"), ("classifier", "linear")]
    assert space.training_overrides(a_network(space, [CONV])) == {"lr": 0.003, "cosine": False, "batch_size": 32}


def _layer_diff(before, after):
    return [(a, b) for a, b in zip(before["layers"], after["layers"]) if a != b]


def test_each_mutation_option_changes_only_its_part(space):
    rng = np.random.default_rng(3)
    parent = a_network(space, [CONV, POOL, CONV, CONV])
    for _ in range(30):
        child, op = space.mutate(parent, rng, operator="MO1")
        renamed = [(a, b) for a, b in zip(parent["layers"] + [parent["head"]], child["layers"] + [child["head"]]) if a != b]
        assert op == "MO1" and len(renamed) == 1
        (old, new), = renamed
        assert old["uid"] != new["uid"] and {**old, "uid": 0} == {**new, "uid": 0} and old.get("type") != "pool"

        child, _ = space.mutate(parent, rng, operator="MO2")
        assert len(child["layers"]) == 5
        assert [layer for layer in child["layers"] if layer["uid"].startswith("u")] == parent["layers"]

        child, _ = space.mutate(parent, rng, operator="MO3")
        assert len(child["layers"]) == 3 and all(layer in parent["layers"] for layer in child["layers"])

        child, _ = space.mutate(parent, rng, operator="MO4")
        (old, new), = _layer_diff(parent, child)
        assert old["uid"] == new["uid"] and old["type"] == new["type"] and child["head"] == parent["head"]

        child, _ = space.mutate(parent, rng, operator="MO5")
        assert child["layers"] == parent["layers"] and child["head"]["units"] != 50 and child["lr"] == parent["lr"]
        assert 25 <= child["head"]["units"] <= 75

        child, _ = space.mutate(parent, rng, operator="MO6")
        assert child["layers"] == parent["layers"] and child["head"] == parent["head"]
        assert child["lr"] != parent["lr"] and 0.0015 <= child["lr"] <= 0.006


def test_operators_that_cannot_apply_are_reported(space):
    single = a_network(space, [CONV])
    assert not space.applicable(single, "MO3") and space.applicable(single, "MO2")
    full = a_network(space, [CONV] * 12)
    assert not space.applicable(full, "MO2")
    assert set(space.mutation_operators) == set(OPERATORS)


def test_one_point_crossover_gives_both_children_with_unique_ids(space):
    rng = np.random.default_rng(0)
    a = a_network(space, [CONV, CONV, POOL])
    b = copy.deepcopy(a_network(space, [CONV, POOL, CONV, CONV]))
    for i, layer in enumerate(b["layers"]):
        layer["uid"] = f"v{i}"
        layer["filters"] = 4 if layer["type"] == "conv" else None
    b["layers"] = [{k: v for k, v in layer.items() if v is not None} for layer in b["layers"]]
    b["head"] = {"uid": "hb", "units": 30}
    for _ in range(20):
        first, second = space.crossover_pair(a, b, rng)
        cut_a = next(i for i in range(len(first["layers"]) + 1)
                     if i == len(first["layers"]) or not first["layers"][i]["uid"].startswith("u"))
        assert first["layers"][:cut_a] == a["layers"][:cut_a]
        back = first["layers"][cut_a:]
        assert back == b["layers"][len(b["layers"]) - len(back):]
        assert second["layers"] == b["layers"][:len(b["layers"]) - len(back)] + a["layers"][cut_a:]
        assert first["head"] == a["head"] and second["head"] == b["head"]
        for child in (first, second):
            uids = [layer["uid"] for layer in child["layers"]]
            assert len(set(uids)) == len(uids) and space.is_valid(child)


def _state(space, genotype, seed):
    torch.manual_seed(seed)
    return state_of(build_module(space.decode(genotype)))


def test_inheritance_maps_layer_by_layer_across_insertion_and_removal(space):
    """Tensor by tensor: a layer that survives an insertion before it is copied whole; after a
    removal the next layer's weights that still fit are copied, the rest freshly initialised."""
    rng = np.random.default_rng(5)
    parent = a_network(space, [CONV, dict(CONV, filters=6), POOL, dict(CONV, filters=5)])
    parent_state = _state(space, parent, 0)

    inserted = copy.deepcopy(parent)
    inserted["layers"].insert(0, dict(CONV, uid="new", filters=8))
    fresh = _state(space, inserted, 1)
    state, fraction, account = inherit(fresh, [parent_state])
    for key, tensor in state.items():
        if key.startswith(("convnew", "bnnew")):
            assert account[key]["from"] is None and np.array_equal(tensor, fresh[key])
        elif key == "convu0/weight":
            # u0 now reads 8 channels instead of 1: channel 0 is the parent's, the rest fresh.
            assert np.array_equal(tensor[:, :1], parent_state[key]) and np.array_equal(tensor[:, 1:], fresh[key][:, 1:])
        else:
            assert np.array_equal(tensor, parent_state[key]), key
    assert 0 < fraction < 1
    load_state(build_module(space.decode(inserted)), state)

    removed = copy.deepcopy(parent)
    del removed["layers"][1]  # u2 (pool) now follows u0 (8 channels) instead of u1 (6)
    state, _, account = inherit(_state(space, removed, 2), [parent_state])
    assert np.array_equal(state["convu3/weight"][:, :6], parent_state["convu3/weight"])
    assert account["convu3/weight"]["copied"] == 5 * 6 * 9
    assert np.array_equal(state["convu0/weight"], parent_state["convu0/weight"])
    assert not any(key.startswith(("convu1", "bnu1")) for key in state)

    reset, _ = space.mutate(parent, rng, operator="MO1")
    state, _, account = inherit(_state(space, reset, 3), [parent_state])
    fresh_keys = {k for k, v in account.items() if v["from"] is None and not k.endswith("num_batches_tracked")}
    assert fresh_keys and all(k.startswith(("conv", "bn", "fc")) for k in fresh_keys)
    assert len({k.split("/")[0][2:] if k.startswith("bn") else k.split("/")[0][4:] if k.startswith("conv")
                else k.split("/")[0] for k in fresh_keys}) == 1  # exactly one layer was reset


def test_encode_state_seeds_a_folded_torch_export_exactly(space, tmp_path):
    """A torch export (batchnorm folded into a conv with bias) becomes a genotype whose
    conv -> batchnorm -> ReLU reproduces the file's outputs in eval mode."""
    import onnxruntime as ort

    from hostside.arch.onnx_import import import_onnx, network_state

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16, 20), torch.nn.ReLU(),
        torch.nn.Linear(20, 10)).eval()
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    path = tmp_path / "seed.onnx"
    torch.onnx.export(net, (torch.rand(1, 1, 8, 8),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "n"}})
    imported = import_onnx(path)
    genotype, state = space.encode_state(imported.spec, imported.weights)
    assert [layer["type"] for layer in genotype["layers"]] == ["conv", "pool", "conv"]
    assert genotype["head"]["units"] == 20
    module = build_module(space.decode(genotype)).eval()
    load_state(module, network_state(state))
    x = np.random.default_rng(0).uniform(0, 16, (5, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert np.abs(got - session.run(None, {"x": x})[0]).max() < 1e-4


def test_a_seed_that_does_not_fit_names_the_node(space, tmp_path):
    from hostside.arch.spec import ArchSpec, SpecError

    spec = ArchSpec((1, 8, 8), 10, [
        {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3},
        {"id": "t", "op": "tanh", "inputs": ["c"]},
        {"id": "f", "op": "flatten", "inputs": ["t"]},
        {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 10}])
    with pytest.raises(SpecError, match=r"node 't' \(tanh\) does not fit EA4CNN's genotype"):
        space.encode(spec)
