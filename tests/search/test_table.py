"""Table runs (``--table``): the same engine, journal, resume and reports, figures looked up."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from hostside.cli import main
from hostside.errors import Interrupted, UserError
from hostside.journal import Journal
from hostside.metrics import rank_and_crowding
from hostside.search.config import build_config
from hostside.search.run import resume_run, start_run
from hostside.search.table_run import SKIPPED_META

NB201 = Path(__file__).resolve().parents[2] / "data" / "nb201" / "nb201_hw.csv"


def _rows() -> List[Dict[str, str]]:
    with open(NB201, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def nb201_rows() -> Dict[str, Dict[str, str]]:
    return {r["arch_str"]: r for r in _rows()}


def _config(table: Path, **values):
    base = {"space": "nasbench201", "strategy": "nsga2", "budget": 16, "population": 8, "seed": 3,
            "table": {"path": str(table)}}
    for key, value in values.items():
        if key.startswith("table_"):
            base["table"][key[len("table_"):]] = value
        else:
            base[key] = value
    return build_config(base, {})


def _arch(row: Dict) -> str:
    from hostside.arch.nb201 import format_arch_str

    return format_arch_str(row["genotype"]["ops"])


def _write_csv(path: Path, rows: List[Dict[str, str]], header: List[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_table_search_end_to_end(tmp_path, nb201_rows):
    run = tmp_path / "run"
    report = start_run(_config(NB201), run, progress=lambda m: None)
    journal = Journal.open(run)
    try:
        rows = journal.candidates()
        finals = journal.results("final")
    finally:
        journal.close()
    assert [r["status"] for r in rows] == ["measured"] * 16
    for row in rows:
        truth = nb201_rows[_arch(row)]
        assert row["val_accuracy"] == pytest.approx(float(truth["c10valid_val_acc_200ep"]) / 100)
        assert row["latency_ms"] == pytest.approx(float(truth["raspi4_latency_ms"]))
        assert row["accuracy"] is None  # no test figure for a search candidate
        assert row["onnx_path"] is None
    assert finals and all(f["status"] == "measured" for f in finals)
    for final in finals:
        truth = nb201_rows[_arch(next(r for r in rows if r["id"] == final["candidate_id"]))]
        assert final["test_accuracy"] == pytest.approx(float(truth["c10valid_test_acc_200ep"]) / 100)
        assert final["val_accuracy"] == pytest.approx(float(truth["c10valid_val_acc_200ep"]) / 100)
    assert len(report["models"]) == len(finals)
    for name in ("report.md", "report.html", "pareto.json"):
        assert (run / name).is_file()
    assert not (run / "candidates").exists()


def test_resume_of_a_killed_table_run_draws_what_the_whole_run_draws(tmp_path):
    whole = tmp_path / "whole"
    start_run(_config(NB201), whole, progress=lambda m: None)
    seen = []

    def kill_at_tenth(message: str) -> None:
        if "): measured" in message:
            seen.append(message)
            if len(seen) == 10:
                raise KeyboardInterrupt

    killed = tmp_path / "killed"
    with pytest.raises(Interrupted):
        start_run(_config(NB201), killed, progress=kill_at_tenth)
    journal = Journal.open(killed)
    assert journal.meta("status") == "interrupted"
    journal.close()
    resume_run(killed, progress=lambda m: None)
    genotypes = {}
    for run in (whole, killed):
        journal = Journal.open(run)
        genotypes[run] = [r["genotype"] for r in journal.candidates()]
        assert journal.meta("status") == "finished"
        journal.close()
    assert genotypes[whole] == genotypes[killed]


@pytest.mark.parametrize("damage, expected", [
    ("drop_column", "has no column 'raspi4_latency_ms'"),
    ("text_cell", "line 4 column 'c10valid_val_acc_200ep': 'n/a' is not a number"),
    ("duplicate", "line 5 repeats key"),
])
def test_a_bad_table_is_one_line_naming_row_and_column(tmp_path, damage, expected):
    rows = _rows()[:20]
    header = list(rows[0])
    if damage == "drop_column":
        header.remove("raspi4_latency_ms")
        rows = [{k: v for k, v in r.items() if k in header} for r in rows]
    elif damage == "text_cell":
        rows[2]["c10valid_val_acc_200ep"] = "n/a"
    else:
        rows[3]["arch_str"] = rows[0]["arch_str"]
    table = _write_csv(tmp_path / "bad.csv", rows, header)
    with pytest.raises(UserError, match=expected.replace("(", r"\(").replace("|", r"\|")) as info:
        start_run(_config(table), tmp_path / "run", progress=lambda m: None)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_cli_says_one_line_for_a_space_without_the_key_column(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(["search", "--space", "layer_list", "--table", str(NB201), "--budget", "4"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "genotype_summary" in err and "'arch_str'" in err


def test_missing_error_stops_and_missing_skip_counts(tmp_path):
    subset = _rows()[:3000]
    table = _write_csv(tmp_path / "part.csv", subset, list(subset[0]))
    with pytest.raises(UserError, match="has no row with arch_str"):
        start_run(_config(table, strategy="random"), tmp_path / "strict", progress=lambda m: None)
    run = tmp_path / "lenient"
    start_run(_config(table, strategy="random", table_missing="skip"), run, progress=lambda m: None)
    journal = Journal.open(run)
    try:
        known = {r["arch_str"] for r in subset}
        rows = journal.candidates()
        skipped = journal.meta(SKIPPED_META)
    finally:
        journal.close()
    assert len(rows) == 16 and all(_arch(r) in known for r in rows)
    assert skipped and not set(skipped) & known  # uniform samples miss ~80 % of a fifth of the table


def test_asha_promotes_the_best_and_charges_only_the_extra_seconds(tmp_path, nb201_rows):
    run = tmp_path / "asha"
    config = _config(NB201, strategy="asha", budget_unit="train_seconds", budget=24_000,
                     objectives=["val_accuracy", "latency_ms"], policy="generational")
    start_run(config, run, progress=lambda m: None)
    journal = Journal.open(run)
    try:
        rows = {r["id"]: r for r in journal.candidates()}
        attrs = journal.all_attrs()
    finally:
        journal.close()
    promoted = [r for r in rows.values() if r["operator"] == "retrain"]
    fresh = [r for r in rows.values() if r["operator"] == "sample"]
    assert promoted and fresh
    for row in fresh:
        assert row["exercise"]["epochs"] == 12 and row["train_seconds"] == pytest.approx(120.0)
        assert row["val_accuracy"] == pytest.approx(float(nb201_rows[_arch(row)]["c10valid_val_acc_12ep"]) / 100)
    for row in promoted:
        parent = rows[row["parents"][0]]
        assert attrs[parent["id"]]["asha.rung"] == 0 and attrs[row["id"]]["asha.rung"] == 1
        assert row["arch_hash"] == parent["arch_hash"] and row["exercise"]["weights_from"] == [parent["id"]]
        assert row["train_seconds"] == pytest.approx(2000.0 - 120.0)
        assert row["val_accuracy"] == pytest.approx(float(nb201_rows[_arch(row)]["c10valid_val_acc_200ep"]) / 100)
        # Promoted: in the best third (Pareto rank, then crowding) of the rung's candidates
        # evaluated before it was proposed (generational: the earlier generations).
        earlier = [r for r in fresh if r["generation"] < row["generation"]]
        F = np.array([[1 - r["val_accuracy"], r["latency_ms"]] for r in earlier])
        rank, crowding = rank_and_crowding(F, np.zeros(len(earlier)))
        order = sorted(range(len(earlier)), key=lambda i: (rank[i], -crowding[i], earlier[i]["id"]))
        assert parent["id"] in [earlier[i]["id"] for i in order[:len(earlier) // 3]]
    spent = sum(r["train_seconds"] for r in rows.values())
    assert 24_000 <= spent < 24_000 + 2000.0


def test_table_settings_are_checked_against_the_run():
    with pytest.raises(UserError, match="the table has figures after 12, 200 epochs"):
        _config(NB201, epochs=50)
    with pytest.raises(UserError, match="train_seconds.*table run"):
        build_config({"budget_unit": "train_seconds"}, {})
    with pytest.raises(UserError, match="table.missing"):
        _config(NB201, table_missing="maybe")
    config = _config(NB201)
    assert (config.epochs, config.final_epochs) == (200, 200)
    assert json.loads(json.dumps(config.to_dict()))["table"]["path"] == str(NB201)


def test_runs_show_prints_each_candidates_arch_string(tmp_path, capsys):
    run = tmp_path / "run"
    start_run(_config(NB201, budget=8), run, progress=lambda m: None)
    journal = Journal.open(run)
    expected = {r["id"]: _arch(r) for r in journal.candidates()}
    journal.close()
    capsys.readouterr()
    assert main(["runs", "show", str(run), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["candidates"]
    assert {c["id"]: c["arch_str"] for c in shown} == expected
    assert all(c["genotype_summary"] == {"arch_str": c["arch_str"]} for c in shown)
    assert main(["runs", "show", str(run)]) == 0
    text = capsys.readouterr().out
    assert all(f"`{arch}`" in text for arch in expected.values())
