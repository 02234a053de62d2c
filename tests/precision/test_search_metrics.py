"""mult_energy / weight_bytes in the search's registries, and emulated-format metrics."""

import pytest

from hostside.arch.examples import digits_small_cnn
from hostside.arch.spec import ArchSpec
from hostside.precision.energy import mult_energy_mj
from hostside.precision.formats import FX16, parse_format
from hostside.precision.search import mult_energy_of, precision_metrics, weight_bytes_of


@pytest.fixture
def registries():
    """The search's registries, restored afterwards so other tests see them unchanged."""
    from hostside.search import objectives

    tables = (objectives._OBJECTIVES, objectives.OBJECTIVES, objectives._BUDGETS, objectives.BUDGETS)
    saved = [dict(t) for t in tables]
    loaded = objectives._EXTENSIONS_LOADED
    objectives._EXTENSIONS_LOADED = False  # so the test's load_extensions registers them again
    yield
    objectives._EXTENSIONS_LOADED = loaded
    for table, copy in zip(tables, saved):
        table.clear()
        table.update(copy)


def test_registered_objective_and_budgets_read_analytic_rows(registries):
    from hostside.search.objectives import budget, load_extensions, objective, objective_value

    load_extensions()
    cost = ArchSpec.from_dict(digits_small_cnn()).cost.to_dict(per_layer=False)
    row = {"macs": cost["macs"], "params": cost["params"], "cost": cost}
    assert objective_value(row, "mult_energy_mj") == pytest.approx(mult_energy_mj(cost["macs"], parse_format("float")))
    fx_row = dict(row, precision="fx16")
    ratio = objective("mult_energy_mj").value(row) / objective("mult_energy_mj").value(fx_row)
    assert ratio == pytest.approx(2.4)  # EA4CNN's c1
    assert budget("weight_bytes").value(row) == cost["weight_bytes"]["fp32"]
    assert budget("weight_bytes").value(fx_row) == 2 * cost["deployed_params"]
    assert budget("weight_bytes").value(dict(row, precision="int8")) == cost["weight_bytes"]["int8"]
    assert budget("mult_energy_mj").value(fx_row) == objective("mult_energy_mj").value(fx_row)
    assert mult_energy_of({"params": 3}) is None and weight_bytes_of({}) is None


def test_precision_metrics_of_a_trained_candidate(trained_digits):
    m = precision_metrics(trained_digits.onnx, trained_digits.dataset, trained_digits.split, "fx16")
    assert m["precision"] == "fx16" and m["precision_mode"] == "multiplication"
    assert m["float_test_accuracy"] == pytest.approx(trained_digits.metrics["onnx_accuracy"])
    assert abs(m["test_accuracy"] - m["float_test_accuracy"]) <= 0.02
    assert m["weight_bytes"] == 2 * trained_digits.metrics["deployed_params"]
    assert m["mult_energy_mj"] == pytest.approx(mult_energy_mj(trained_digits.metrics["macs"], FX16))
    coarse = precision_metrics(trained_digits.onnx, trained_digits.dataset, trained_digits.split, "q2.1")
    assert coarse["val_accuracy"] < m["val_accuracy"] and coarse["test_accuracy"] < m["test_accuracy"]


def test_a_search_reads_no_test_split_under_a_precision(trained_digits):
    m = precision_metrics(trained_digits.onnx, trained_digits.dataset, trained_digits.split, "fx16",
                          evaluate_test=False)
    assert m["test_accuracy"] is None and m["accuracy"] is None and "float_test_accuracy" not in m
    assert m["val_accuracy"] is not None
