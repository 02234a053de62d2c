"""ArchSpec parsing and validation: every error names the offending node."""

import json

import pytest

from hostside.arch.spec import ArchSpec, SpecError


def _spec(nodes, input_shape=(1, 8, 8), num_classes=10, **extra):
    return {"input_shape": list(input_shape), "num_classes": num_classes, "nodes": nodes, **extra}


LENET_LIKE = [
    {"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 6, "kernel": 3, "padding": 1},
    {"id": "a1", "op": "relu", "inputs": ["c1"]},
    {"id": "p1", "op": "maxpool", "inputs": ["a1"], "kernel": 2},
    {"id": "f", "op": "flatten", "inputs": ["p1"]},
    {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
]


def test_round_trip_through_json_keeps_the_spec_and_its_hash():
    spec = ArchSpec.from_dict(_spec(LENET_LIKE, name="lenet"))
    again = ArchSpec.from_json(spec.to_json())
    assert again == spec
    assert again.content_hash() == spec.content_hash()
    assert spec.node("c1").attrs["kernel"] == (3, 3)
    assert spec.node("p1").attrs["stride"] == (2, 2)  # pooling stride defaults to its kernel


def test_content_hash_ignores_the_name_but_not_the_structure():
    a = ArchSpec.from_dict(_spec(LENET_LIKE, name="a"))
    b = ArchSpec.from_dict(_spec(LENET_LIKE, name="b"))
    wider = [dict(n, out_channels=8) if n["id"] == "c1" else n for n in LENET_LIKE]
    assert a.content_hash() == b.content_hash()
    assert ArchSpec.from_dict(_spec(wider)).content_hash() != a.content_hash()


def test_nodes_given_out_of_order_are_put_in_execution_order():
    spec = ArchSpec.from_dict(_spec(list(reversed(LENET_LIKE)), output="fc"))
    assert [n.id for n in spec.nodes] == ["c1", "a1", "p1", "f", "fc"]


def test_swish_is_an_alias_of_silu():
    nodes = [dict(n, op="swish") if n["id"] == "a1" else n for n in LENET_LIKE]
    assert ArchSpec.from_dict(_spec(nodes)).node("a1").op == "silu"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda n: n[1].update(op="gelu"), "node 'a1': unknown op 'gelu'"),
        (lambda n: n[0].update(kernel=0), "node 'c1': kernel must be an integer >= 1"),
        (lambda n: n[0].update(groups=4), "node 'c1': groups=4 must divide in_channels=1"),
        (lambda n: n[0].update(colour="red"), "node 'c1': unknown attribute(s) colour"),
        (lambda n: n[0].pop("out_channels"), "node 'c1': conv2d needs attribute 'out_channels'"),
        (lambda n: n[2].update(inputs=["nowhere"]), "node 'p1': input 'nowhere' is not a node id"),
        (lambda n: n[0].update(inputs=["fc"]), "part of a cycle"),
        (lambda n: n[3].update(op="relu"), "node 'fc': linear needs a feature vector"),
        (lambda n: n[0].update(kernel=11), "node 'c1': conv2d kernel 11x11"),
        (lambda n: n[4].update(out_features=7), "node 'fc': output shape [7] must be [10]"),
        (lambda n: n.append({"id": "x", "op": "relu", "inputs": ["a1"]}), "node 'x': does not reach the output"),
        (lambda n: n[3].update(id="c1"), "node 'c1': duplicate id"),
        (lambda n: n[2].update(padding=2), "node 'p1': maxpool padding 2x2 must be at most half the kernel"),
        (lambda n: n[1].update(op="add"), "node 'a1': add needs at least two inputs"),
    ],
)
def test_validation_names_the_offending_node(change, message):
    nodes = json.loads(json.dumps(LENET_LIKE))
    change(nodes)
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(_spec(nodes, output="fc"))
    assert message in str(err.value)


def test_merges_of_unalignable_maps_are_rejected():
    nodes = [
        {"id": "a", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 3},  # 8x8 -> 6x6
        {"id": "b", "op": "conv2d", "inputs": ["input"], "out_channels": 4, "kernel": 5},  # 8x8 -> 4x4
        {"id": "m", "op": "add", "inputs": ["a", "b"]},
        {"id": "f", "op": "flatten", "inputs": ["m"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10},
    ]
    with pytest.raises(SpecError, match="node 'm': add inputs of 6x6 and 4x4 cannot be aligned"):
        ArchSpec.from_dict(_spec(nodes))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_classes": 10, "nodes": []}, "missing key(s) input_shape"),
        (_spec(LENET_LIKE, input_shape=(1, 8)), "input_shape must be [C, H, W]"),
        (_spec(LENET_LIKE, num_classes=0), "num_classes must be a positive integer"),
        (_spec(LENET_LIKE, version=99), "version 99 is not supported"),
        (_spec([]), "the spec has no nodes"),
        ([1, 2], "an ArchSpec is a JSON object"),
    ],
)
def test_bad_top_level_is_explained(data, message):
    with pytest.raises(SpecError) as err:
        ArchSpec.from_dict(data)
    assert message in str(err.value)


def test_load_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(SpecError, match="broken.json: not valid JSON"):
        ArchSpec.load(path)
