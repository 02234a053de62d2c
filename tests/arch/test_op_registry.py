"""Every registered op, exported to ONNX, is known to every ONNX reader: the operator table
declares each type the export writes, the latency features of the ArchSpec equal those of
the file, ``arch stats`` of the file equals the analytic cost, ``arch import`` gives the
network back wherever every exported type has an ArchSpec equivalent (and refuses the file
in one line elsewhere), and the precision emulator runs it node by node. An op module whose
export some reader does not know fails here, without a test of its own."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from hostside.arch.build import build_module
from hostside.arch.commands import arch_stats
from hostside.arch.export import OPSET, export_onnx
from hostside.arch.onnx_import import import_onnx, max_abs_diff
from hostside.arch.ops import REGISTRY, get_op, register
from hostside.arch.ops.base import Op, SpecError
from hostside.calibration.features import FEATURE_NAMES, NCHWC_BLOCKS, onnx_features, spec_features
from hostside.errors import UserError
from hostside.onnx.optypes import OPS, OpType, declare, op_type
from hostside.precision.emulate import OnnxEmulator
from hostside.precision.formats import HALF
from tests.arch import op_examples


CASES = {case: (name, attrs) for case, name, attrs in op_examples.example_cases()}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """case id -> (example spec, its exported ONNX file, the file's model), each exported once."""
    folder = tmp_path_factory.mktemp("ops")
    cache = {}

    def get(case):
        if case not in cache:
            name, attrs = CASES[case]
            spec = op_examples.example_spec(REGISTRY[name], attrs)
            torch.manual_seed(0)
            path = folder / f"{case}.onnx"
            export_onnx(build_module(spec), path, check=False)
            cache[case] = (spec, path, onnx.load(str(path)))
        return cache[case]
    return get


def _types(model) -> set:
    return {node.op_type for node in model.graph.node}


def _own_types(spec, model) -> set:
    """The types of the ONNX nodes the example's op node ``x`` emitted (the exporter names
    them after the op's output, ``n<index>_<op>``, helpers with a ``.`` suffix)."""
    prefix = f"n{[n.id for n in spec.nodes].index('x')}_{spec.node('x').op}"
    return {n.op_type for n in model.graph.node if n.name == prefix or n.name.startswith(prefix + ".")}


@pytest.mark.parametrize("case", CASES)
def test_every_type_an_op_exports_is_declared_and_exists_at_the_opset(case, exported):
    _, _, model = exported(case)
    undeclared = sorted(node.op_type for node in model.graph.node if op_type(node) is None)
    assert not undeclared, (f"{case} exports {undeclared}, which hostside.onnx.optypes does not declare: "
                            f"declare the rows in the op module's onnx_types")
    for node in model.graph.node:
        onnx.defs.get_schema(node.op_type, OPSET, node.domain)  # raises for a type newer than the opset


@pytest.mark.parametrize("case", CASES)
def test_latency_features_of_the_spec_equal_those_of_its_file(case, exported):
    spec, path, _ = exported(case)
    for block in NCHWC_BLOCKS:
        from_spec, from_onnx = spec_features(spec, block), onnx_features(path, block)
        differ = {f: (a, b) for f, a, b in zip(FEATURE_NAMES, from_spec, from_onnx) if a != b}
        assert not differ, f"{case}, block {block}: (spec, onnx) {differ}"


@pytest.mark.parametrize("case", CASES)
def test_arch_stats_of_the_file_equal_the_analytic_cost(case, exported):
    spec, path, _ = exported(case)
    stats = arch_stats(path)
    assert (stats["params"], stats["macs"], stats["n_mult"]) == (
        spec.cost.deployed_params, spec.cost.macs, spec.cost.n_mult)
    assert stats["input_shape"] == list(spec.input_shape) and stats["output_shape"] == [spec.num_classes]


@pytest.mark.parametrize("case", CASES)
def test_arch_import_gives_the_network_back_where_every_exported_type_has_an_equivalent(case, exported):
    spec, path, model = exported(case)
    without = sorted(t for t in _types(model) if t not in OPS or not OPS[t].arch)
    if without:
        with pytest.raises(UserError, match=f"op '({'|'.join(without)})' has no ArchSpec equivalent"):
            import_onnx(path)
        return
    imported = import_onnx(path)
    assert max_abs_diff(path, imported) < 1e-4
    assert (imported.spec.cost.deployed_params, imported.spec.cost.macs) == (
        spec.cost.deployed_params, spec.cost.macs)
    ours = spec.node("x")
    if any(OPS[t].arch == ours.op for t in _own_types(spec, model)):  # what the op writes maps back onto it
        back = [n.attrs for n in imported.spec.nodes if n.op == ours.op]
        assert ours.attrs in back, f"{case}: {ours.attrs} imported as {back}"


@pytest.mark.parametrize("case", CASES)
def test_precision_emulation_runs_every_node_of_the_file(case, exported):
    spec, path, _ = exported(case)
    emulator = OnnxEmulator(path)
    x = np.random.default_rng(0).uniform(0, 1, size=(3, *spec.input_shape)).astype(np.float32)
    reference = emulator.run_float(x)
    np.testing.assert_allclose(emulator.run(x, None), reference, rtol=1e-5, atol=1e-5)
    for mode in ("extrinsic", "multiplication"):
        rounded = emulator.run(x, HALF, mode)
        assert rounded.shape == reference.shape and np.isfinite(rounded).all()


def test_every_row_of_the_table_is_known_to_every_reader():
    """Each reader builds its operator sets from the table when imported: the rows the op
    modules declare must be in them as much as the table's own."""
    from hostside.arch import onnx_import, onnx_stats
    from hostside.precision import emulate

    neutral_kinds = {"conv", "linear", "bn", "pool", "global_reduce", "reshape", "concat", "act", "eltwise", "skip",
                     None}
    for row in OPS.values():
        assert (row.name in onnx_stats._MAC_OPS | onnx_stats._ZERO_MAC_OPS) == bool(row.cost), row
        assert row.neutral in neutral_kinds and (row.neutral != "act" or row.activation), row
        assert (row.name in onnx_import.SUPPORTED_OPS) == bool(row.arch), row
        if row.arch:  # an ArchSpec op the importer builds through the op, or a role it has a handler for
            assert (row.arch in REGISTRY or hasattr(onnx_import._Importer, f"op_{row.name}")
                    or row.name == "Constant"), row
        assert (row.name in emulate.VALUE_PRESERVING) == row.keeps_values, row
        assert emulate.MULTIPLYING_INPUTS.get(row.name, ()) == row.multiplies, row


def test_rows_declared_by_op_modules_are_in_the_table():
    declared = {row.name: op.name for op in REGISTRY.values() for row in op.onnx_types}
    assert declared.get("LeakyRelu") == "leaky_relu"
    for type_name, op_name in declared.items():
        assert OPS[type_name] in REGISTRY[op_name].onnx_types


def test_a_type_declared_twice_is_refused_and_the_op_not_registered():
    class Twice(Op):
        name = "twice_test_only"
        shape_preserving = True
        onnx_types = (OpType("Relu"),)

    with pytest.raises(ValueError, match="Relu is declared twice"):
        register(Twice())
    assert "twice_test_only" not in REGISTRY and OPS["Relu"].arch == "relu"
    with pytest.raises(ValueError, match="LeakyRelu is declared twice"):
        declare(OpType("LeakyRelu"))


def test_an_imported_attribute_without_equivalent_is_refused():
    with pytest.raises(SpecError, match="attribute.s. beta have no equivalent in ArchSpec's relu"):
        get_op("relu").from_onnx("Relu", {"beta": 1.0})
    assert get_op("leaky_relu").from_onnx("LeakyRelu", {}) == {"alpha": 0.01}  # ONNX's default, as torch's


def test_a_foreign_leaky_relu_file_imports_with_its_slope(tmp_path):
    rng = np.random.default_rng(1)
    weights = {"w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
               "fc": rng.standard_normal((10, 4 * 36)).astype(np.float32)}
    graph = helper.make_graph([
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("LeakyRelu", ["c"], ["r"], name="leaky", alpha=0.3),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "fc"], ["y"], transB=1),
    ], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(tmp_path / "leaky.onnx"))
    imported = import_onnx(tmp_path / "leaky.onnx")
    assert [(n.op, n.attrs) for n in imported.spec.nodes if n.op == "leaky_relu"] == [("leaky_relu", {"alpha": 0.3})]
    assert max_abs_diff(tmp_path / "leaky.onnx", imported) < 1e-4
