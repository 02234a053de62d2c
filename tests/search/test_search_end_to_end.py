"""The whole path on digits with real training, real ONNX export and real local measurements."""

from __future__ import annotations

import json
import sqlite3

import pytest

from hostside.cli import main
from hostside.journal import JOURNAL_FILE

pytestmark = pytest.mark.slow

TINY = ["--budget", "6", "--population", "3", "--epochs", "2", "--final-epochs", "3", "--seed", "1"]


def _journal_rows(run_dir):
    db = sqlite3.connect(run_dir / JOURNAL_FILE)
    db.row_factory = sqlite3.Row
    return [dict(r) for r in db.execute("SELECT * FROM candidates ORDER BY id")]


def test_search_writes_a_measured_front_split_plots_and_runs_show(in_tmp_cwd, digits_calibration, capsys):
    run_dir = in_tmp_cwd / "run"
    code = main(["search", *TINY, "--latency-budget-ms", "0.5", "--calibration", str(digits_calibration),
                 "--out", str(run_dir)])
    assert code == 0
    rows = _journal_rows(run_dir)
    trained = [r for r in rows if r["status"] in ("measured", "failed")]
    assert len(trained) == 6 and all(r["status"] == "measured" for r in trained)
    assert len({r["key"] for r in rows}) == len(rows)
    assert all(r["latency_ms"] > 0 and 0 <= r["val_accuracy"] <= 1 and r["predicted_latency_ms"] > 0 for r in trained)
    assert {r["generation"] for r in trained} == {0, 1}

    pareto = json.loads((run_dir / "pareto.json").read_text())
    assert pareto and sum(m["best_tradeoff"] for m in pareto) == 1
    for model in pareto:
        assert (run_dir / model["onnx"]).is_file() and model["onnx"].startswith("final/")
        assert model["latency_ms"] > 0 and model["predicted_latency_ms"] > 0 and model["params"] > 0
        assert 0 < model["test_accuracy"] <= 1 and 0 < model["search_val_accuracy"] <= 1
    assert max(m["test_accuracy"] for m in pareto) > 0.8  # real training on digits, not a constant
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 1797
    plots = list(run_dir.glob("pareto_*.png"))
    assert plots and plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pareto front" in (run_dir / "report.md").read_text()

    capsys.readouterr()
    assert main(["runs", "show", str(run_dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [c["id"] for c in shown["candidates"]] == [r["id"] for r in rows]
    assert {c["status"] for c in shown["candidates"]} <= {"pending", "rejected", "training", "trained", "measured", "failed"}
    assert shown["candidates"][0]["val_accuracy"] == rows[0]["val_accuracy"]
    assert all("accuracy" not in c for c in shown["candidates"])  # a candidate has no test figure to show
    report_md = (run_dir / "report.md").read_text()
    assert "test accuracy (not used in any choice)" in report_md


def test_nothing_meets_the_budget_report_lists_the_nearest_misses(in_tmp_cwd, digits_calibration, capsys):
    config = in_tmp_cwd / "strict.toml"
    config.write_text(f'budget = 3\npopulation = 3\nepochs = 1\nseed = 2\ncalibration = "{digits_calibration}"\n'
                      '[budgets]\naccuracy = 0.999\n')
    assert main(["search", "--config", str(config)]) == 0  # the default run directory: ./runs/<timestamp>
    (run_dir,) = (in_tmp_cwd / "runs").iterdir()
    assert "no candidate meets the budgets" in capsys.readouterr().err
    assert main(["runs", "list"]) == 0
    listing = capsys.readouterr().out
    assert run_dir.name in listing and "finished" in listing and "3 measured" in listing
    report = json.loads((run_dir / "report.json").read_text())
    assert report["nothing_meets_budgets"] and report["models"] == []
    assert len(report["nearest_misses"]) == 3
    violations = [m["violation"] for m in report["nearest_misses"]]
    assert violations == sorted(violations) and all("val_accuracy" in m["missed"] for m in report["nearest_misses"])
    assert "No candidate meets the budgets" in (run_dir / "report.md").read_text()
    assert json.loads((run_dir / "pareto.json").read_text()) == []


def test_a_failing_candidate_is_journaled_and_the_search_goes_on(in_tmp_cwd, digits_calibration):
    """Candidate 2's output directory is taken by a file, so its export really fails."""
    run_dir = in_tmp_cwd / "run"
    (run_dir / "candidates").mkdir(parents=True)
    (run_dir / "candidates" / "00002").write_text("in the way")
    assert main(["search", *TINY, "--calibration", str(digits_calibration), "--out", str(run_dir)]) == 0
    rows = {r["id"]: r for r in _journal_rows(run_dir)}
    assert rows[2]["status"] == "failed" and "training failed" in rows[2]["error"]
    assert sum(r["status"] == "measured" for r in rows.values()) == 5
    report = json.loads((run_dir / "report.json").read_text())
    assert report["failed"] == [{"id": 2, "error": rows[2]["error"]}] and report["models"]


def test_search_minutes_stops_asking_once_passed_and_the_front_is_still_re_trained(
        in_tmp_cwd, digits_calibration, capsys, monkeypatch):
    """The clock jumps past the limit when the first training finishes: the rest of that
    generation still finishes and counts, no later generation is asked."""
    from hostside.search import engine as engine_module
    from hostside.search import terminations

    now = [1000.0]
    monkeypatch.setattr(terminations, "monotonic", lambda: now[0])  # the time limit's clock only
    finish = engine_module.SearchEngine.finish_training

    def finish_then_jump(self, candidate_id, future):
        now[0] += 3600
        return finish(self, candidate_id, future)

    monkeypatch.setattr(engine_module.SearchEngine, "finish_training", finish_then_jump)
    config = in_tmp_cwd / "timed.toml"
    config.write_text(f'budget = 30\npopulation = 3\nepochs = 1\nfinal_epochs = 1\nseed = 1\nsearch_minutes = 20\n'
                      f'calibration = "{digits_calibration}"\n')
    run_dir = in_tmp_cwd / "run"
    assert main(["search", "--config", str(config), "--out", str(run_dir)]) == 0
    trained = [r for r in _journal_rows(run_dir) if r["status"] == "measured"]
    assert len(trained) == 3 and {r["generation"] for r in trained} == {0}
    assert "search ends: search time limit of 20 min reached after 3 of 30 exercises; no new candidates" in \
        capsys.readouterr().err
    assert json.loads((run_dir / "pareto.json").read_text())


def test_the_front_re_trained_on_train_and_val_learns_from_both_and_is_reported_at_its_test_accuracy(
        in_tmp_cwd, digits_calibration, capsys):
    config = in_tmp_cwd / "train_val.toml"
    config.write_text('objectives = ["val_accuracy", "latency_ms"]\nbudget = 4\npopulation = 2\nepochs = 1\n'
                      f'final_epochs = 1\nfinal_models = 2\nseed = 1\ncalibration = "{digits_calibration}"\n')
    run_dir = in_tmp_cwd / "run"
    assert main(["search", "--config", str(config), "--final-data", "train+val", "--out", str(run_dir)]) == 0
    assert "epochs on the train and validation parts" in capsys.readouterr().err
    split = json.loads((run_dir / "split.json").read_text())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["config"]["final_data"] == "train+val" and report["models"]
    for model in report["models"]:
        metrics = json.loads((run_dir / model["onnx"]).with_name("metrics.json").read_text())
        assert metrics["split_sizes"] == {"train": len(split["train"]) + len(split["val"]), "val": 0,
                                          "test": len(split["test"])}
        assert model["val_accuracy"] is None and 0 < model["test_accuracy"] <= 1
    assert sum(m["best_tradeoff"] for m in report["models"]) == 1  # chosen on the search's validation figures
    assert "re-trained for 1 epochs on train+val" in (run_dir / "report.md").read_text()


def test_screening_trains_the_most_accurate_longer_and_the_front_is_chosen_on_its_figures(
        in_tmp_cwd, digits_calibration, capsys):
    from hostside.journal import Journal
    from hostside.search.config import SearchConfig
    from hostside.search.screening import screen_best
    from hostside.spaces import make_space

    config = in_tmp_cwd / "screened.toml"
    config.write_text('objectives = ["val_accuracy", "latency_ms"]\nbudget = 6\npopulation = 3\nepochs = 1\n'
                      'final_epochs = 1\nfinal_models = 1\nscreen_models = 2\nscreen_epochs = 4\nseed = 1\n'
                      f'calibration = "{digits_calibration}"\n')
    run_dir = in_tmp_cwd / "run"
    assert main(["search", "--config", str(config), "--out", str(run_dir)]) == 0
    assert "screening the 2 most accurate candidate(s): 4 epochs each on the whole training part" in capsys.readouterr().err
    measured = {r["id"]: r for r in _journal_rows(run_dir) if r["status"] == "measured"}
    db = sqlite3.connect(run_dir / JOURNAL_FILE)
    attrs = {}  # the screening results, by candidate
    for candidate_id, figures in db.execute("SELECT candidate_id, figures FROM results WHERE stage = 'screening'"):
        attrs[candidate_id] = json.loads(figures)
    pool = {}  # the two best in validation accuracy, one per network and learning rate
    for row in sorted(measured.values(), key=lambda r: (-r["val_accuracy"], r["id"])):
        pool.setdefault((row["arch_hash"], json.loads(row["genotype"])["lr"]), row["id"])
    assert set(attrs) == set(list(pool.values())[:2])
    assert all(a["epochs"] == 4 and 0 < a["val_accuracy"] <= 1 for a in attrs.values())

    report = json.loads((run_dir / "report.json").read_text())
    assert {s["id"]: s["search_val_accuracy"] for s in report["screened"]} == {
        i: measured[i]["val_accuracy"] for i in attrs}
    overlaid = {i: attrs.get(i, {}).get("val_accuracy", r["val_accuracy"]) for i, r in measured.items()}
    (final,) = report["models"]
    assert overlaid[final["id"]] == max(overlaid.values())  # chosen on the screened figure, not the search's
    assert "## Screening" in (run_dir / "report.md").read_text()

    class NoTraining:
        def submit(self, task):
            raise AssertionError("a screened candidate was trained again")

    journal = Journal.open(run_dir)
    try:
        saved = SearchConfig.from_dict(journal.meta("config"))
        data = journal.meta("dataset")
        space = make_space(saved.space, tuple(data["input_shape"]), data["num_classes"], **saved.space_options)
        screen_best(journal, saved, space, {}, NoTraining(), print)  # a resumed run screens nothing twice
    finally:
        journal.close()
