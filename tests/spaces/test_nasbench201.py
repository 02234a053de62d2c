"""NAS-Bench-201: arch strings, the deployed network (cost, torch, ONNX, features), the
``nasbench201`` space and ``hostside arch nb201``.

The network is checked three ways: its parameter count against a count written out from
NB201's layer list (and NB201's published 1.5313 M for the all-3x3 cell), its ONNX export
against torch and the ONNX read-back, and its calibration features against those read from
the exported file.
"""

import csv
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hostside.arch.build import build_module, count_params
from hostside.arch.export import export_onnx
from hostside.arch.nb201 import (EDGES, NB201_OPS, format_arch_str, is_connected, kept_edges, nb201_spec,
                                 parse_arch_str, zero_inputs_kept)
from hostside.arch.onnx_stats import onnx_stats
from hostside.arch.ops import get_op
from hostside.arch.ops.base import SpecError
from hostside.arch.spec import ArchSpec, Node
from hostside.calibration.features import onnx_features, spec_features
from hostside.errors import UserError
from hostside.spaces import make_space

ROOT = Path(__file__).resolve().parents[2]
CSV = ROOT / "data" / "nb201" / "nb201_hw.csv"


def _arch(op: str) -> str:
    return format_arch_str([op] * len(EDGES))


ALL_3X3 = _arch("nor_conv_3x3")
ALL_SKIP = _arch("skip_connect")
MIXED = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|"
CELL_NODE = re.compile(r"s\dc\d+_")  # nodes inside a cell (s2c4_...), not the stem or reductions
UNCONNECTED = "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture(scope="module")
def csv_archs():
    with CSV.open(newline="") as f:
        return [row["arch_str"] for row in csv.DictReader(f)]


# ---- arch strings -----------------------------------------------------------------------

def test_every_benchmark_arch_string_round_trips_and_341_are_unconnected(csv_archs):
    assert len(csv_archs) == 15625
    parsed = [parse_arch_str(s) for s in csv_archs]
    assert [format_arch_str(ops) for ops in parsed] == csv_archs
    assert set(parsed) == set(itertools.product(NB201_OPS, repeat=len(EDGES)))  # every cell once
    assert sum(not is_connected(ops) for ops in parsed) == 341


def test_connectivity_follows_the_edges():
    assert is_connected(parse_arch_str(ALL_SKIP))
    assert not is_connected(parse_arch_str(UNCONNECTED))
    # 0 -> 1 -> 2 -> 3 through the chain only.
    chain = ["skip_connect", "none", "nor_conv_1x1", "none", "none", "avg_pool_3x3"]
    assert is_connected(chain)
    for edge in (0, 2, 5):
        broken = list(chain)
        broken[edge] = "none"
        assert not is_connected(broken)


@pytest.mark.parametrize("bad", [
    "", "foo", "|nor_conv_3x3~0|+|none~0|none~1|",
    "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|",
    "|nor_conv_3x3~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",
    "|nor_conv_3x3|+|none~0|none~1|+|none~0|none~1|none~2|",
])
def test_a_malformed_arch_string_is_one_line(bad):
    with pytest.raises(UserError) as caught:
        parse_arch_str(bad)
    assert "\n" not in str(caught.value) and "malformed" in str(caught.value)


def test_format_refuses_what_is_not_six_ops():
    for bad in (["none"] * 5, ["none"] * 5 + ["conv"]):
        with pytest.raises(UserError, match="6 edge ops"):
            format_arch_str(bad)


# ---- the network ------------------------------------------------------------------------

def _conv_bn(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + 2 * c_out


def _nb201_params(convs_per_cell, in_channels: int = 3, classes: int = 10, c: int = 16, cells: int = 5) -> int:
    """NB201's trainable parameters written out layer by layer: stem conv3x3 + BN; per cell the
    given (kernel) convs, each with its BN; two reductions (conv3x3 s2 + BN, conv3x3 + BN, 1x1
    projection without BN); head BN and linear."""
    total = _conv_bn(in_channels, c, 3)
    for stage in range(3):
        width = c * 2 ** stage
        if stage:
            total += _conv_bn(width // 2, width, 3) + _conv_bn(width, width, 3) + width // 2 * width
        total += cells * sum(_conv_bn(width, width, k) for k in convs_per_cell)
    return total + 2 * c * 4 + c * 4 * classes + classes


def test_params_match_the_layer_list_and_nb201s_published_count():
    dense = nb201_spec(ALL_3X3).cost.params
    assert dense == _nb201_params([3] * 6)
    assert abs(dense / 1e6 - 1.5313) < 0.005  # NB201 reports 1.5313 MB (params incl. BN) for this cell
    skip = nb201_spec(ALL_SKIP).cost.params
    assert skip == _nb201_params([])
    assert 70_000 <= skip <= 90_000
    assert nb201_spec(MIXED).cost.params == _nb201_params([3, 1, 3])


def test_dead_edges_are_left_out_and_skips_are_wiring():
    # Nodes 1 and 2 never reach the output: the cell is the identity, its convs are not exported.
    dead = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    assert kept_edges(parse_arch_str(dead)) == (False, False, False, True, False, False)
    spec = nb201_spec(dead)
    assert not [n.id for n in spec.nodes if CELL_NODE.match(n.id)]  # no cell node at all
    assert spec.cost.params == nb201_spec(ALL_SKIP).cost.params
    # Node 1 receives nothing, so edge 2<-1 is dead; node 2 has one input, so no add.
    starved = "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    ids = {n.id for n in nb201_spec(starved).nodes}
    assert "s1c1_e0to2_conv3x3" in ids and "s1c1_e1to2_conv1x1" not in ids
    assert not any(i.endswith("_add") and CELL_NODE.match(i) for i in ids)
    # A ReLU and a pooling of one tensor are computed once, whichever edges read them.
    ids = [n.id for n in nb201_spec(ALL_3X3).nodes if n.id.startswith("s2c4_")]
    assert ids.count("s2c4_n0_relu") == 1 and sum(i.endswith("_relu") for i in ids) == 3
    assert sum(n.op == "avgpool" for n in nb201_spec(_arch("avg_pool_3x3")).nodes) == 3 * 15 + 2


def test_an_unconnected_cell_is_refused_in_one_line():
    with pytest.raises(SpecError) as caught:
        nb201_spec(UNCONNECTED)
    message = str(caught.value)
    assert "\n" not in message and "has no path from the cell input to its output" in message


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 64), (3, 88, 88), (3, 30, 30), (3, 7, 9), (1, 1, 1)])
def test_any_input_size_gives_a_valid_network(shape):
    spec = nb201_spec(MIXED, shape, 7)
    assert spec.input_shape == shape and spec.num_classes == 7
    assert spec.cost.params == _nb201_params([3, 1, 3], in_channels=shape[0], classes=7)


def _randomise_batchnorms(net: torch.nn.Module) -> None:
    """Fresh batchnorms fold to the identity; random statistics make the folding count."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)


@pytest.mark.parametrize("arch, shape", [(MIXED, (3, 32, 32)), (ALL_SKIP, (1, 28, 28)),
                                         ("|avg_pool_3x3~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|"
                                          "skip_connect~2|", (3, 15, 17))])
def test_the_network_builds_exports_and_costs_as_its_onnx_file(arch, shape, tmp_path):
    spec = nb201_spec(arch, shape, 10)
    assert ArchSpec.from_json(spec.to_json()) == spec
    net = build_module(spec)
    assert count_params(net) == spec.cost.params
    _randomise_batchnorms(net)
    report = export_onnx(net, tmp_path / "m.onnx", check=True)
    stats = onnx_stats(report.path)
    assert (stats["params"], stats["macs"], stats["activation_bytes"]) == (
        spec.cost.deployed_params, spec.cost.macs, spec.cost.activation_bytes)
    assert np.allclose(spec_features(spec), onnx_features(report.path))


def test_torch_and_onnxruntime_agree(tmp_path):
    spec = nb201_spec(MIXED, (3, 32, 32), 10)
    net = build_module(spec).eval()
    _randomise_batchnorms(net)
    path = export_onnx(net, tmp_path / "m.onnx", check=False).path
    x = np.random.default_rng(1).uniform(0, 1, size=(2, 3, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == (2, 10)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_avgpool_can_leave_the_padding_out_of_the_mean():
    op = get_op("avgpool")
    raw = {"id": "p", "op": "avgpool", "inputs": ["x"], "kernel": 3, "stride": 1, "padding": 1}
    default = op.parse_attrs("p", raw)
    assert "count_include_pad" not in op.json_attrs(default)  # specs written before it keep their hash
    excluded = op.parse_attrs("p", {**raw, "count_include_pad": False})
    assert op.json_attrs(excluded)["count_include_pad"] is False
    ones = torch.ones(1, 1, 4, 4)
    for attrs, corner in ((default, 4 / 9), (excluded, 1.0)):
        module = op.torch_module(Node("p", "avgpool", ("x",), attrs), [(1, 4, 4)], (1, 4, 4))
        assert module(ones)[0, 0, 0, 0].item() == pytest.approx(corner)
    with pytest.raises(SpecError, match="count_include_pad"):
        get_op("maxpool").parse_attrs("p", {**raw, "op": "maxpool", "count_include_pad": False})


# ---- the space --------------------------------------------------------------------------

@pytest.fixture
def space():
    return make_space("nasbench201", (3, 32, 32), 10)


def test_sample_mutate_and_crossover_keep_the_cell_connected(space):
    rng = np.random.default_rng(0)
    parents = [space.sample(rng) for _ in range(300)]
    assert all(is_connected(g["ops"]) for g in parents)
    assert {op for g in parents for op in g["ops"]} == set(NB201_OPS)
    for g in parents:
        child, operator = space.mutate(g, rng)
        assert operator == "edge" and is_connected(child["ops"])
        assert sum(a != b for a, b in zip(g["ops"], child["ops"])) == 1
    for g, h in zip(parents, parents[1:]):
        child = space.crossover(g, h, rng)
        assert is_connected(child["ops"])
        assert all(c in (a, b) for a, b, c in zip(g["ops"], h["ops"], child["ops"]))
    json.dumps(parents)  # genotypes are plain JSON


def test_a_near_unconnected_cell_mutates_only_into_connected_ones(space):
    lone = {"ops": ["none", "none", "none", "skip_connect", "none", "none"]}  # only edge 3<-0 connects
    rng = np.random.default_rng(1)
    children = [space.mutate(lone, rng)[0]["ops"] for _ in range(200)]
    assert all(is_connected(c) for c in children)
    assert any(c[3] != "skip_connect" for c in children)  # edge 3<-0 may change to another op


def test_a_child_keeps_the_node_ids_of_what_it_shares_with_its_parent(space):
    parent = {"ops": list(parse_arch_str(ALL_3X3))}
    child = {"ops": list(parent["ops"])}
    child["ops"][EDGES.index((3, 1))] = "nor_conv_1x1"
    ours = {n.id for n in space.decode(parent).nodes}
    theirs = {n.id for n in space.decode(child).nodes}
    assert ours - theirs == {f"s{s}c{c}_e1to3_conv3x3{bn}" for s in (1, 2, 3) for c in range(1, 6) for bn in ("", "_bn")}
    assert "s3c5_e1to3_conv1x1" in theirs  # a new kernel starts fresh rather than from a cropped one


def test_decode_uses_the_space_input_and_options():
    space = make_space("nasbench201", (1, 28, 28), 5, channels=8, cells_per_stage=2)
    genotype = {"ops": list(parse_arch_str(MIXED))}
    spec = space.decode(genotype)
    assert spec == nb201_spec(MIXED, (1, 28, 28), 5, channels=8, cells_per_stage=2)
    assert spec.cost.params == _nb201_params([3, 1, 3], in_channels=1, classes=5, c=8, cells=2)
    assert space.genotype_summary(genotype) == {"arch_str": MIXED}
    assert space.describe()["channels"] == 8
    with pytest.raises(UserError, match="cells_per_stage"):
        make_space("nasbench201", (1, 28, 28), 5, cells_per_stage=0)
    with pytest.raises(SpecError, match="genotype"):
        space.decode({"ops": ["nor_conv_3x3"] * 5})


def test_genes_round_trip_and_an_unconnected_gene_vector_is_refused_at_decode(space):
    genes = space.categorical_genes()
    assert list(genes) == ["edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2"]
    assert all(choices == NB201_OPS for choices in genes.values())
    rng = np.random.default_rng(3)
    for _ in range(50):
        g = space.sample(rng)
        assert space.from_genes(space.to_genes(g)) == g
    unconnected = space.from_genes(dict(zip(genes, parse_arch_str(UNCONNECTED))))
    assert unconnected == {"ops": list(parse_arch_str(UNCONNECTED))}
    with pytest.raises(SpecError, match="has no path"):
        space.decode(unconnected)
    with pytest.raises(UserError, match="missing"):
        space.from_genes({"edge_1_0": "none"})


def test_spaces_without_a_flat_encoding_say_so():
    layers = make_space("layer_list", (1, 8, 8), 10)
    assert layers.categorical_genes() is None and layers.genotype_summary(layers.sample(np.random.default_rng(0))) == {}
    with pytest.raises(UserError, match="no fixed-length categorical encoding"):
        layers.from_genes({})


# ---- the command ------------------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hostside.cli", "arch", "nb201", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_writes_the_spec(tmp_path):
    out = tmp_path / "spec.json"
    done = _cli(MIXED, "--input-shape", "1,28,28", "--classes", "5", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert ArchSpec.load(out) == nb201_spec(MIXED, (1, 28, 28), 5)
    assert _cli(MIXED, "--out", str(out)).returncode == 0
    assert ArchSpec.load(out) == nb201_spec(MIXED)  # defaults: CIFAR-10


def test_zero_input_edges_are_built_as_hw_nas_bench_measured_them(tmp_path):
    """Node 1 receives only `none`: the conv leaving it runs (on zeros) in HW-NAS-Bench's graph,
    so the deployed-alike network has it, wired to the cell input, and costs more."""
    starved = "|none~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    kept = zero_inputs_kept(starved)
    assert kept == "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    assert zero_inputs_kept(MIXED) == MIXED  # every node receives something: unchanged
    ids = {n.id for n in nb201_spec(kept).nodes}
    assert "s1c1_e1to2_conv1x1" in ids
    assert nb201_spec(kept).cost.macs > nb201_spec(starved).cost.macs
    out = tmp_path / "spec.json"
    done = _cli(starved, "--zero-inputs-kept", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert ArchSpec.load(out) == nb201_spec(kept)


@pytest.mark.parametrize("args, words", [
    (("|nor_conv_3x3~0|",), "malformed"),
    ((UNCONNECTED,), "has no path from the cell input to its output"),
    ((MIXED, "--input-shape", "3,32"), "--input-shape"),
    ((MIXED, "--classes", "0"), "--classes"),
])
def test_the_command_errors_are_one_line(args, words, tmp_path):
    done = _cli(*args, "--out", str(tmp_path / "spec.json"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "spec.json").exists()
