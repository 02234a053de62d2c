"""The run report names the split of every accuracy it shows: validation for what the search
chose on, "test accuracy (not used in any choice)" for the re-trained front; pareto.json carries
the space's genotype summary and says which models trained with a truncated multiplier table."""

from __future__ import annotations

from hostside.search.report import TEST_LABEL, _LABELS, _model_entry, genotype_fields, markdown, plot_pairs


class _SummarisingSpace:
    def genotype_summary(self, genotype):
        return {"arch_str": "|" + genotype["op"] + "~0|", "params": -1}  # "params" must not overwrite the figure


class _BrokenSpace:
    def genotype_summary(self, genotype):
        raise KeyError("op")


def _row(**values):
    row = {"id": 3, "params": 1200, "macs": 5000, "activation_bytes": 256, "predicted_latency_ms": 0.1,
           "latency_ms": 0.12, "val_accuracy": 0.81, "accuracy": None, "arch_hash": "abc", "genotype": {"op": "nor"},
           "operator": "sample", "parents": [], "train_metrics": {}}
    row.update(values)
    return row


def _final(**values):
    final = {"onnx_path": "final/00003/model.onnx", "onnx_sha256": "0" * 64, "test_accuracy": 0.79, "val_accuracy": 0.8,
             "latency_ms": 0.11, "energy_mj": None}
    final.update(values)
    return final


def test_a_front_model_carries_its_test_accuracy_the_search_figure_and_the_genotype_summary():
    entry = _model_entry(_final(), _row(), {"val_accuracy": 0.9}, _SummarisingSpace())
    assert entry["test_accuracy"] == 0.79 and entry["search_val_accuracy"] == 0.81 and entry["val_accuracy"] == 0.8
    assert entry["arch_str"] == "|nor~0|" and entry["params"] == 1200
    assert entry["meets_budgets"] is False  # the accuracy budget reads validation (0.8 < 0.9), not test
    assert "arch_str" not in _model_entry(_final(), _row(), {}, _BrokenSpace())
    assert genotype_fields(object(), {"op": "nor"}) == {} and genotype_fields(None, {}) == {}


def test_circuits_above_rank_16_are_marked_as_trained_with_a_truncated_table():
    approx = {"multiplier": "mul8u_QKX", "n_mult": 10, "energy_per_mult_pj": 0.005, "mult_energy_mj": 5e-11}
    qkx = _model_entry(_final(), _row(train_metrics=approx), {}, None)
    exact = _model_entry(_final(), _row(train_metrics={**approx, "multiplier": "mul8u_1JFF"}), {}, None)
    assert qkx["trained_with_truncated_table"] is True and exact["trained_with_truncated_table"] is False
    assert "trained_with_truncated_table" not in _model_entry(_final(), _row(), {}, None)


def _report(models):
    return {"run": "/tmp/run-x", "config": {"strategy": "cgp-nsga2", "space": "cgp", "dataset": "digits",
                                            "board": "local", "objectives": ["accuracy", "mult_energy_mj"],
                                            "budgets": {}, "final_epochs": 4},
            "counts": {"measured": 1}, "onnx_warning": None, "nothing_meets_budgets": False, "nearest_misses": [],
            "models": models, "screened": [], "best_tradeoff": None, "failed": [], "plots": [],
            "filter": {"rejected": 0, "trained": 1, "train_seconds_saved_estimate": 0.0, "saved_fraction": 0.0,
                       "false_rejects": [], "spot_checked": 0, "false_reject_rate": None}}


def test_report_md_names_the_split_of_each_accuracy_and_the_truncated_tables():
    approx = {"multiplier": "mul8u_QKX", "n_mult": 10, "energy_per_mult_pj": 0.005, "mult_energy_mj": 5e-11}
    model = _model_entry(_final(), _row(train_metrics=approx), {}, None)
    text = markdown(_report([{**model, "onnx_problem": None}]))
    header = next(line for line in text.splitlines() if line.startswith("| id | ONNX"))
    assert TEST_LABEL in header and "val. accuracy (search)" in header
    assert "| 0.810 | 0.790 |" in text  # the search's validation figure, then the front's test figure
    assert "mul8u_QKX: an error rank above 16" in text
    assert "error rank above 16" not in markdown(_report([{**_model_entry(_final(), _row(), {}, None),
                                                           "onnx_problem": None}]))


def test_search_axes_say_validation():
    assert _LABELS["val_accuracy"] == "validation accuracy"
    assert plot_pairs(["latency_ms", "val_accuracy"]) == [("latency_ms", "val_accuracy")]
    assert TEST_LABEL == "test accuracy (not used in any choice)"
