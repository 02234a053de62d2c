"""The CGP space: decoding of active nodes, L-back, stable ids, costs = torch = ONNX, bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from hostside.arch.build import build_module, count_params
from hostside.arch.export import export_onnx
from hostside.arch.onnx_stats import onnx_stats
from hostside.arch.ops.base import SpecError
from hostside.errors import UserError
from hostside.spaces import make_space


def space(**options):
    return make_space("cgp", (1, 8, 8), 10, **options)


def hand_genotype():
    """2 rows x 3 cols, L = 1: node k in column k // 2; node 5 (FC) is the output."""
    conv = {"f": "CONV", "p": {"filters": 8, "kernel": 3}}
    return {"rows": 2, "cols": 3, "levels_back": 1, "multiplier": 0, "output": 5, "nodes": [
        {**conv, "in": [0, 0]},                                  # 0: active (read by 3)
        {**conv, "in": [0, 0]},                                  # 1: inactive
        {"f": "MAX", "p": {}, "in": [2, 2]},                     # 2: inactive (reads 1)
        {"f": "SUM", "p": {}, "in": [1, 1]},                     # 3: active, reads node 0 twice
        {"f": "FC", "p": {"units": 32}, "in": [3, 3]},           # 4: inactive FC
        {"f": "FC", "p": {"units": 32}, "in": [4, 4]},           # 5: output, reads node 3
    ]}


def test_only_active_nodes_are_decoded_with_grid_position_ids():
    s = space(rows=2, cols=3, levels_back=1)
    g = hand_genotype()
    assert s.active(g) == {0, 3, 5}
    spec = s.decode(g)
    prefixes = {n.id.split("_")[0] for n in spec.nodes if n.id != "classifier"}
    assert prefixes == {"n0", "n5"}  # n3 (SUM of one tensor with itself) passes its input
    assert [n.op for n in spec.nodes if n.id.startswith("n0_")] == ["approx_conv2d", "batchnorm", "relu"]
    assert all(n.attrs["multiplier"] == s.multipliers[0] for n in spec.nodes if n.op == "approx_conv2d")
    g["nodes"][1]["f"] = "AVG"  # an inactive node: same network
    assert s.decode(g).content_hash() == spec.content_hash()
    g["nodes"][3]["in"] = [1, 2]  # now SUM reads nodes 0 and 1: node 1 becomes active
    assert s.active(g) == {0, 1, 3, 5}
    assert any(n.id.startswith("n1_") for n in s.decode(g).nodes)


def test_every_mutation_respects_l_back_and_changes_an_active_node():
    s = space(rows=3, cols=6, levels_back=2)
    rng = np.random.default_rng(3)
    g = s.sample(rng)
    for _ in range(60):
        child, op = s.mutate(g, rng)
        assert op == "mutate_node"
        for k, node in enumerate(child["nodes"]):
            col = k // 3
            for a in node["in"]:
                assert a == 0 and col < 2 or (a > 0 and col - 2 <= (a - 1) // 3 < col), (k, node)
        assert child["output"] in s.fc_positions()
        active = s.active(g)
        assert any(child["nodes"][k] != g["nodes"][k] for k in active) or child["output"] != g["output"] \
            or child["multiplier"] != g["multiplier"]
        s.decode(child)
        g = child


def test_a_mutation_rewires_inputs_only_and_always_changes_an_active_node():
    s = space(rows=3, cols=6, levels_back=2, fixed_multiplier="mul8u_1JFF")
    rng = np.random.default_rng(11)
    g = s.sample(rng)
    for _ in range(40):
        child, _ = s.mutate(g, rng)
        assert [(n["f"], n["p"]) for n in child["nodes"]] == [(n["f"], n["p"]) for n in g["nodes"]]
        rewired = [k for k in s.active(g) if child["nodes"][k]["in"][:s.arity(g["nodes"][k])]
                   != g["nodes"][k]["in"][:s.arity(g["nodes"][k])]]
        assert rewired or child["output"] != g["output"]
        g = child


def test_the_multiplier_gene_is_redrawn_at_every_mutation_by_default():
    s = space(rows=3, cols=6, levels_back=2)
    assert s.p_mult == 1.0
    rng = np.random.default_rng(2)
    g = s.sample(rng)
    drawn = {s.mutate(g, rng)[0]["multiplier"] for _ in range(30)}
    assert len(drawn) > 3  # 14 circuits, one fresh draw per mutation
    still = space(rows=3, cols=6, levels_back=2, p_mult=0.0)
    assert {still.mutate(g, rng)[0]["multiplier"] for _ in range(10)} == {g["multiplier"]}


@pytest.mark.parametrize("function", ["RES", "RES-B"])
def test_residual_modules_take_their_stride_on_the_first_conv_and_the_shortcut(function):
    s = space(rows=2, cols=3, levels_back=2)
    g = hand_genotype()
    g["levels_back"] = 2
    params = {"filters": 16, "kernel": 3, "stride": 2, **({"kernel2": 3} if function == "RES" else {})}
    g["nodes"][2] = {"f": function, "p": params, "in": [1, 1]}
    g["nodes"][4] = {"f": "FC", "p": {"units": 32}, "in": [3, 3]}
    g["nodes"][3] = {"f": "CONV", "p": {"filters": 8, "kernel": 1}, "in": [3, 3]}
    g["output"] = 4
    spec = s.decode(g)
    convs = [n for n in spec.nodes if n.id.startswith("n2_") and n.op == "approx_conv2d"]
    strides = [tuple(np.broadcast_to(n.attrs["stride"], 2)) for n in convs]
    assert strides.count((2, 2)) == 2 and len(convs) == (3 if function == "RES" else 4)
    assert strides[0] == (2, 2) and strides[-1] == (2, 2)  # the first conv and the parallel 1x1 shortcut
    relus = [n for n in spec.nodes if n.id.startswith("n2_") and n.op == "relu"]
    assert len(relus) == 3  # RES: after both convs and the sum; RES-B: after the first two convs and the sum
    out = s.decode(g).cost
    g["nodes"][2]["p"]["stride"] = 1
    assert s.decode(g).cost.macs > out.macs  # stride 2 quarters the module's maps


def test_nodes_that_stay_active_keep_their_ids():
    s = space(rows=3, cols=6, levels_back=2)
    rng = np.random.default_rng(5)
    g = s.sample(rng)
    kept = 0
    for _ in range(20):
        child, _ = s.mutate(g, rng)
        parent_ids = {n.id: n for n in s.decode(g).nodes}
        for node in s.decode(child).nodes:
            k = node.id.split("_")[0][1:]
            if node.id in parent_ids and k.isdigit() and int(k) in s.active(g) and \
                    child["nodes"][int(k)] == g["nodes"][int(k)]:
                assert parent_ids[node.id].op == node.op
                kept += 1
        g = child
    assert kept > 0


@pytest.mark.parametrize("function", ["CONV", "SUM", "MAX", "AVG", "INC", "RES", "RES-B"])
def test_module_shapes_and_costs_equal_torch_and_onnx_read_back(function, tmp_path):
    s = space(rows=2, cols=3, levels_back=2)
    g = hand_genotype()
    g["levels_back"] = 2
    params = {"CONV": {"filters": 8, "kernel": 5}, "INC": {"filters": 16}, "RES": {"filters": 8, "kernel": 3,
              "kernel2": 1}, "RES-B": {"filters": 16}}.get(function, {})
    g["nodes"][2] = {"f": function, "p": params, "in": [1, 0]}    # reads node 0 (and the input for SUM)
    g["nodes"][4] = {"f": "FC", "p": {"units": 32}, "in": [3, 3]}
    g["nodes"][3] = {"f": "CONV", "p": {"filters": 8, "kernel": 1}, "in": [3, 3]}  # reads node 2
    g["output"] = 4
    spec = s.decode(g)
    assert any(n.id.startswith("n2_") for n in spec.nodes) or function == "SUM"
    net = build_module(spec)
    assert count_params(net) == spec.cost.params
    with torch.no_grad():
        assert tuple(net.eval()(torch.rand(2, 1, 8, 8)).shape) == (2, 10)
    report = export_onnx(net, tmp_path / "m.onnx")
    assert report.max_abs_diff < 1e-4  # the file is the float network (ordinary Conv nodes)
    stats = onnx_stats(report.path)
    assert stats["params"] == spec.cost.deployed_params
    assert stats["macs"] == spec.cost.macs
    conv_macs = sum(e["macs"] for e in stats["per_layer"] if e["op_type"] == "Conv")
    assert conv_macs == spec.cost.n_mult > 0


def test_bad_settings_are_one_line():
    with pytest.raises(UserError, match="too small to reach the output"):
        space(rows=3, cols=1)
    with pytest.raises(UserError, match="levels_back"):
        space(levels_back=0)
    with pytest.raises(UserError, match="'mul8u_NOPE' is unknown"):
        space(multipliers=["mul8u_NOPE", "mul8u_1JFF"])
    with pytest.raises(UserError, match="lacks the exact circuit"):
        space(multipliers=["mul8u_QKX", "mul8u_DM1"])
    with pytest.raises(UserError, match="not in multipliers"):
        space(multipliers=["mul8u_1JFF"], fixed_multiplier="mul8u_QKX")
    s = space(rows=2, cols=3, levels_back=1)
    g = hand_genotype()
    g["nodes"][5]["in"] = [1, 1]  # column 2 reading column 0 with L = 1
    with pytest.raises(SpecError, match="L-back"):
        s.decode(g)


def test_cli_refuses_a_bad_grid_in_one_line(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[strategy]\nname = "cgp-nsga2"\n\n[space_options]\nrows = 2\ncols = 1\n')
    proc = subprocess.run([sys.executable, "-m", "hostside.cli", "search", "--config", str(config), "--out",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "too small to reach the output" in lines[0], proc.stderr
