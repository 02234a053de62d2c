"""The op registry: every registered op, built into a small network around its ``example``,
keeps analytic cost == torch == ONNX read-back and onnxruntime == torch; the JSON format and
content hashes of existing specs do not move."""

import json
from pathlib import Path

import numpy as np
import pytest

from hostside.arch.build import build_module
from hostside.arch.export import export_onnx
from hostside.arch.ops import REGISTRY, get_op
from hostside.arch.ops.base import SpecError, pos_int
from hostside.arch.ops.neutral import spec_neutral_ops
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec
from tests.arch import op_examples

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_op_keeps_analytic_torch_and_onnx_costs_equal(name, tmp_path):
    op = REGISTRY[name]
    spec = op_examples.example_spec(op)
    assert spec.num_classes == 10 and tuple(spec.input_shape) == (3, 12, 12)
    op_examples.assert_costs_agree(spec, (3, 12, 12), tmp_path / "m.onnx")
    conv_macs = sum(layer.macs for layer in spec.cost.layers if REGISTRY[layer.op].conv_multiplications)
    assert spec.cost.n_mult == conv_macs
    assert op.shape_rule and op.cost_rule and op.family


def test_every_op_documents_itself_in_docs_ops_md():
    from hostside.arch.ops.__main__ import table

    lines = set((ROOT / "docs" / "ops.md").read_text().splitlines())
    stale = [row for row in table().splitlines() if row not in lines]
    assert not stale, f"docs/ops.md lacks or has an outdated row (python -m hostside.arch.ops prints them): {stale}"


def test_n_mult_counts_only_convolution_multiplications():
    spec = random_spec(3)
    convs = [layer.macs for layer in spec.cost.layers if layer.op == "conv2d"]
    linears = [layer.macs for layer in spec.cost.layers if layer.op == "linear"]
    assert spec.cost.n_mult == sum(convs) and spec.cost.macs == sum(convs) + sum(linears)
    assert spec.cost.to_dict()["n_mult"] == spec.cost.n_mult


def test_existing_specs_load_and_hash_as_their_file_names():
    files = sorted(ROOT.glob("hostside/calibration_data/*/specs/*.json"))
    assert files
    for path in files:
        assert ArchSpec.load(path).content_hash() == path.stem, path
        data = json.loads(path.read_text())
        assert ArchSpec.from_dict(data).to_dict()["nodes"] == data["nodes"]


def test_random_specs_of_a_seed_do_not_change():
    # Hashes recorded before the op registry existed: the generator and the JSON are stable.
    assert [random_spec(seed).content_hash()[:16] for seed in range(3)] == [
        "32110bbd6c4fb26f", "61eec44c296b88f0", "d229c801c14efaac"]


def test_an_attribute_added_later_with_omit_default_leaves_old_json_alone():
    class Wider(type(get_op("linear"))):
        name = "linear_test_only"
        schema = {**type(get_op("linear")).schema, "groups": pos_int(1, omit_default=True)}

    op = Wider()
    attrs = op.parse_attrs("l", {"id": "l", "op": op.name, "inputs": ["x"], "out_features": 3})
    assert attrs["groups"] == 1 and op.json_attrs(attrs) == {"out_features": 3, "bias": True}
    attrs = op.parse_attrs("l", {"id": "l", "op": op.name, "inputs": ["x"], "out_features": 3, "groups": 2})
    assert op.json_attrs(attrs)["groups"] == 2


def test_unknown_ops_are_listed_from_the_registry():
    with pytest.raises(SpecError, match="unknown op 'gelu'; known ops: conv2d, batchnorm"):
        get_op("gelu")


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_neutral_operators_give_the_calibration_features(seed):
    from hostside.calibration import features

    spec = random_spec(seed, input_shape=[(1, 8, 8), (3, 32, 32)][seed % 2])
    ops, shapes = spec_neutral_ops(spec)
    for block in (0, 8, 16):
        assert features._features(ops, dict(shapes), block) == features.spec_features(spec, block)
    assert np.isfinite(features.spec_features(spec)).all()


def test_arch_stats_json_gives_n_mult_for_a_spec_and_its_onnx_file(tmp_path):
    import subprocess
    import sys

    spec = random_spec(11, input_shape=(1, 8, 8))
    spec.save(tmp_path / "s.json")
    export_onnx(build_module(spec), tmp_path / "s.onnx", check=False)
    figures = []
    for name in ("s.json", "s.onnx"):
        out = subprocess.run([sys.executable, "-m", "hostside.cli", "arch", "stats", "--json", str(tmp_path / name)],
                             capture_output=True, text=True, check=True).stdout
        figures.append(json.loads(out)["n_mult"])
    assert figures == [spec.cost.n_mult] * 2 and spec.cost.n_mult > 0
