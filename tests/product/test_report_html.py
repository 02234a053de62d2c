"""report.html in a real headless Chromium: what a person sees, hovers, sorts and filters.

Most tests render a hand-made report data dict (the page's input format, documented in
docs/ARCHITECTURE.md) so each case is there on purpose: a front, re-trained models, rejected
and failed candidates with reasons, lineage, spot checks, hostile text. One slow test renders
the report a real tiny search wrote and checks it against that run's journal.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from hostside.arch.examples import digits_small_cnn
from hostside.search.report_html import (DATA_FORMAT, DATA_VERSION, METRICS, REPORT_HTML, arch_summary, build_report_data,
                                  metric_table, render_html, strategy_attributes, write_report_html)
from hostside.search.report_html import _extra_value

HOSTILE = "</script><script>window.__pwned = 1</script><b>bold</b>"


def _candidate(cid: int, status: str, **values: Any) -> Dict[str, Any]:
    entry = {"id": cid, "status": status, "generation": values.pop("generation", 0), "operator": "sample",
             "parents": [], "val_accuracy": None, "params": 1000 * cid, "macs": 20000 * cid,
             "activation_bytes": 4096, "predicted_latency_ms": 0.01 * cid, "latency_ms": None, "energy_mj": None,
             "train_seconds": None, "reason": None, "arch": "conv2d 8 3x3 > relu > flatten > linear 10",
             "onnx": None, "front": False, "final": False, "attrs": {}, "inherited_fraction": None}
    entry.update(values)
    return entry


def sample_data(run_name: str = "run-a") -> Dict[str, Any]:
    """Eight candidates: six measured (three on the front, one re-trained twice over), one
    rejected on predicted latency, one failed; candidate 6 descends from 2 and 3, 7 from 6."""
    c = [
        _candidate(1, "measured", val_accuracy=0.71, latency_ms=0.011, energy_mj=0.020, train_seconds=1.5, front=True,
                   onnx="candidates/00001/model.onnx"),
        _candidate(2, "measured", val_accuracy=0.86, latency_ms=0.024, energy_mj=0.041, train_seconds=2.0, front=True, final=True,
                   onnx="candidates/00002/model.onnx"),
        _candidate(3, "measured", val_accuracy=0.80, latency_ms=0.040, energy_mj=0.070, train_seconds=2.5),
        _candidate(4, "rejected", reason="predicted latency 0.31 ms exceeds the budget of 0.08 ms by 287%",
                   predicted_latency_ms=0.31),
        _candidate(5, "failed", reason="training failed: RuntimeError: out of memory", operator=HOSTILE),
        _candidate(6, "measured", generation=1, operator="crossover+add_layer", parents=[2, 3], val_accuracy=0.93,
                   latency_ms=0.035, energy_mj=0.066, train_seconds=3.0, front=True, final=True,
                   attrs={"age": 2, "species": 1, "fitness": 0.913}, inherited_fraction=0.75),
        _candidate(7, "measured", generation=2, operator="modify_lr", parents=[6], val_accuracy=0.90, latency_ms=0.05,
                   energy_mj=0.09, train_seconds=3.1),
        _candidate(8, "measured", generation=2, operator="immigrant", val_accuracy=0.52, latency_ms=0.06, energy_mj=0.1,
                   train_seconds=0.9),
    ]
    spec = digits_small_cnn()
    models = [
        {"id": 2, "onnx": "final/00002/model.onnx", "test_accuracy": 0.88, "val_accuracy": 0.87, "params": 2000, "macs": 40000,
         "activation_bytes": 4096, "predicted_latency_ms": 0.02, "latency_ms": 0.023, "energy_mj": 0.04,
         "search_val_accuracy": 0.86, "search_latency_ms": 0.024, "meets_budgets": True, "best_tradeoff": False,
         "operator": "sample", "parents": [], "arch": arch_summary(spec), "spec": spec},
        {"id": 6, "onnx": "final/00006/model.onnx", "test_accuracy": 0.95, "val_accuracy": 0.88, "params": 6000, "macs": 120000,
         "activation_bytes": 4096, "predicted_latency_ms": 0.06, "latency_ms": 0.034, "energy_mj": 0.065,
         "search_val_accuracy": 0.93, "search_latency_ms": 0.035, "meets_budgets": True, "best_tradeoff": True,
         "operator": "crossover+add_layer", "parents": [2, 3], "arch": arch_summary(spec), "spec": spec,
         "summary": {"arch_str": "|nor_conv_3x3~0|+|skip_connect~0|"}},
    ]
    return {
        "format": DATA_FORMAT, "version": DATA_VERSION,
        "run": {"name": run_name, "status": "finished", "live": False, "refresh_s": 10, "generated_at": "2026-12-01 09:00:00 UTC",
                "strategy": "nsga2", "space": "layer_list", "dataset": "digits", "board": "local",
                "objectives": ["val_accuracy", "latency_ms", "energy_mj"], "budgets": {"latency_ms": 0.08},
                "final_epochs": 30, "counts": {"measured": 6, "rejected": 1, "failed": 1}},
        "metrics": METRICS,
        "charts": [{"x": "latency_ms", "y": "val_accuracy"}, {"x": "energy_mj", "y": "val_accuracy"}],
        "candidates": c, "models": models, "best_tradeoff": 6,
        "nothing_meets_budgets": False, "nearest_misses": [],
        "filter": {"rejected": 1, "trained": 7, "train_seconds_spent": 14.0, "train_seconds_saved_estimate": 2.4,
                   "saved_fraction": 0.146, "spot_checked": 1, "false_rejects": [4], "false_reject_rate": 1.0,
                   "spot_checks": [{"id": 4, "predicted_latency_ms": 0.31, "latency_ms": 0.07, "meets_budget": True,
                                    "onnx": "spot_checks/00004.onnx", "error": None}]},
        "lineage": {"shown": True, "depth": 6},
    }


def _write(tmp_path: Path, data: Dict[str, Any]) -> Path:
    run_dir = tmp_path / data["run"]["name"]
    for model in data["models"]:
        (run_dir / model["onnx"]).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / model["onnx"]).write_bytes(b"onnx")
    return write_report_html(run_dir, data)


def _rows(browser) -> List[Dict[str, str]]:
    return browser.evaluate("""Array.from(document.querySelectorAll('#candidate-table tbody tr')).map(tr => ({
        id: tr.dataset.id, status: tr.dataset.status,
        cells: Array.from(tr.children).map(td => td.textContent)}))""")


def _header_index(browser, label: str) -> int:
    return browser.evaluate(f"""Array.from(document.querySelectorAll('#candidate-table thead th'))
        .findIndex(th => th.textContent === {json.dumps(label)})""")


def test_report_shows_the_front_the_models_and_every_candidate_with_its_reason(browser, tmp_path):
    data = sample_data()
    page = _write(tmp_path, data)
    browser.open(page.as_uri())

    charts = browser.evaluate("""Array.from(document.querySelectorAll('#charts .chart')).map(ch => ({
        x: ch.dataset.x, front: Array.from(ch.querySelectorAll('.front-pt')).map(n => +n.dataset.id),
        grey: Array.from(ch.querySelectorAll('.pt')).map(n => +n.dataset.id),
        finals: Array.from(ch.querySelectorAll('.final-pt')).map(n => +n.dataset.id),
        rejected: Array.from(ch.querySelectorAll('.reject-pt')).map(n => +n.dataset.id),
        budget: ch.querySelectorAll('.budget').length}))""")
    assert [c["x"] for c in charts] == ["latency_ms", "energy_mj"]
    latency = charts[0]
    assert sorted(latency["front"]) == [1, 2, 6] and sorted(latency["grey"]) == [3, 7, 8]
    assert sorted(latency["finals"]) == [2, 6] and latency["rejected"] == [4] and latency["budget"] == 1
    assert charts[1]["budget"] == 0  # no energy budget

    rows = _rows(browser)
    assert [int(r["id"]) for r in rows] == [1, 2, 3, 4, 5, 6, 7, 8]
    reason = _header_index(browser, "reason (rejected / failed)")
    by_id = {int(r["id"]): r for r in rows}
    assert "exceeds the budget of 0.08 ms" in by_id[4]["cells"][reason]
    assert "out of memory" in by_id[5]["cells"][reason] and by_id[5]["status"] == "failed"
    assert HOSTILE in by_id[5]["cells"][_header_index(browser, "operator")]  # shown as text, never run
    assert by_id[6]["cells"][_header_index(browser, "strategy attributes")] == "age 2, species 1, fitness 0.913"
    assert by_id[6]["cells"][_header_index(browser, "inherited")] == "75%"
    assert browser.evaluate("window.__pwned === undefined && document.querySelectorAll('#candidate-table b').length === 0")

    cards = browser.evaluate("""Array.from(document.querySelectorAll('#model-cards .card')).map(card => ({
        id: +card.dataset.model, best: card.classList.contains('best'), text: card.textContent,
        onnx: card.querySelector('a[download]').getAttribute('href')}))""")
    assert [c["id"] for c in cards] == [2, 6] and [c["best"] for c in cards] == [False, True]
    assert cards[1]["onnx"] == "final/00006/model.onnx" and (page.parent / cards[1]["onnx"]).is_file()
    assert "conv2d" in cards[1]["text"] and "0.950" in cards[1]["text"] and "best trade-off" in cards[1]["text"]
    assert "test accuracy (not used in any choice)0.950" in cards[1]["text"]  # the split is named
    assert "validation accuracy0.880 (search: 0.930)" in cards[1]["text"]
    assert "arch_str|nor_conv_3x3~0|+|skip_connect~0|" in cards[1]["text"]  # the genotype summary
    assert "validation accuracy" in browser.evaluate("document.getElementById('charts').textContent")
    assert "test accuracy" not in browser.evaluate("document.getElementById('charts').textContent")

    spot = browser.evaluate("Array.from(document.querySelectorAll('#spot-check-table tbody tr')).map(r => r.textContent)")
    assert len(spot) == 1 and "false reject" in spot[0]
    lineage = browser.evaluate("""Array.from(document.querySelectorAll('#lineage-trees li[data-lineage="6"] > ul > li'))
        .map(li => +li.dataset.lineage)""")
    assert lineage == [2, 3]
    assert browser.evaluate("document.getElementById('lineage').hidden") is False
    assert browser.evaluate("performance.getEntriesByType('resource').length") == 0  # nothing fetched
    assert browser.errors == []


def test_hovering_a_point_shows_its_figures_and_clicking_finds_its_row(browser, tmp_path):
    page = _write(tmp_path, sample_data())
    browser.open(page.as_uri())
    assert browser.evaluate("document.getElementById('tooltip').hidden") is True

    browser.hover('#charts .chart[data-x="latency_ms"] .front-pt[data-id="6"]')
    tip = browser.evaluate("document.getElementById('tooltip').hidden ? null : document.getElementById('tooltip').innerText")
    assert tip is not None and "#6" in tip
    for expected in ("0.930", "6,000", "120,000", "0.06 ms", "0.035 ms", "0.066 mJ", "75% of the weights", "species"):
        assert expected in tip, (expected, tip)

    links = browser.evaluate("""Array.from(document.querySelectorAll('#charts .chart[data-x="latency_ms"] .parent-link'))
        .map(n => +n.dataset.parent).sort()""")
    assert links == [2, 3]  # candidate 6 is a crossover of 2 and 3: lines to both parents

    browser.hover('#charts .chart[data-x="latency_ms"] .final-pt[data-id="6"]')
    tip = browser.evaluate("document.getElementById('tooltip').innerText")
    assert "re-trained" in tip and "0.950" in tip and "0.034 ms" in tip

    browser.hover('#charts .chart[data-x="latency_ms"] .reject-pt[data-id="4"]')
    assert "exceeds the budget" in browser.evaluate("document.getElementById('tooltip').innerText")

    browser.hover("#title")
    assert browser.evaluate("document.getElementById('tooltip').hidden") is True
    assert browser.evaluate("document.querySelectorAll('#charts .parent-link').length") == 0

    browser.evaluate("document.querySelector('#status-filters input[data-status=\"measured\"]').click()")
    assert {r["status"] for r in _rows(browser)} == {"rejected", "failed"}
    browser.click('#charts .chart[data-x="latency_ms"] .pt[data-id="7"]')
    assert browser.evaluate("!!document.getElementById('row-7') && document.getElementById('row-7').classList.contains('flash')")
    assert len(_rows(browser)) == 8  # finding the row cleared the filter that hid it
    assert browser.errors == []


def test_zooming_to_the_front_keeps_the_front_and_drops_the_far_points(browser, tmp_path):
    page = _write(tmp_path, sample_data("zoom-run"))
    browser.open(page.as_uri())
    chart = '#charts .chart[data-x="latency_ms"]'
    count = f"document.querySelectorAll('{chart} .reject-pt, {chart} .pt').length"
    before = browser.evaluate(count)
    browser.click("#zoom-front")
    assert browser.evaluate(f"Array.from(document.querySelectorAll('{chart} .front-pt')).map(n => +n.dataset.id).sort()") == [1, 2, 6]
    assert browser.evaluate(f"document.querySelectorAll('{chart} .reject-pt').length") == 0  # 0.31 ms, far right of the front
    assert browser.evaluate(count) < before
    browser.click("#zoom-front")
    assert browser.evaluate(count) == before
    assert browser.errors == []


def test_table_sorts_by_a_column_and_filters_by_status_and_text(browser, tmp_path):
    page = _write(tmp_path, sample_data())
    browser.open(page.as_uri())
    accuracy = _header_index(browser, "val. accuracy")
    browser.click(f"#candidate-table thead th:nth-child({accuracy + 1})")
    ids = [int(r["id"]) for r in _rows(browser)]
    assert ids == [8, 1, 3, 2, 7, 6, 4, 5]  # ascending; no accuracy (rejected, failed) last
    browser.click(f"#candidate-table thead th:nth-child({accuracy + 1})")
    assert [int(r["id"]) for r in _rows(browser)] == [6, 7, 2, 3, 1, 8, 4, 5]
    assert browser.evaluate(f"document.querySelectorAll('#candidate-table thead th')[{accuracy}].getAttribute('aria-sort')") == "descending"

    browser.click('#status-filters input[data-status="measured"]')
    assert [r["status"] for r in _rows(browser)] == ["rejected", "failed"]
    assert browser.evaluate("document.getElementById('row-count').textContent") == "2 of 8 candidates shown"
    browser.click('#status-filters input[data-status="measured"]')
    browser.type_text("#text-filter", "crossover")
    assert [int(r["id"]) for r in _rows(browser)] == [6]
    assert browser.errors == []


def test_a_live_run_reloads_itself_and_keeps_the_view(browser, tmp_path):
    data = sample_data("live-run")
    data["run"].update(status="running", live=True, refresh_s=1)
    page = _write(tmp_path, data)
    browser.open(page.as_uri())
    assert "reloads every 1 s" in browser.evaluate("document.getElementById('live').textContent")
    assert "Last written" not in browser.evaluate("document.getElementById('live').textContent")  # no time given
    browser.evaluate("window.__before_reload = true")
    browser.click('#status-filters input[data-status="rejected"]')
    # The run moves on: the file is rewritten, the page picks it up on its next reload.
    data["candidates"].append(_candidate(9, "measured", generation=3, val_accuracy=0.97, latency_ms=0.02, front=True))
    write_report_html(page.parent, data)
    browser.wait_for("window.__before_reload === undefined && document.body.getAttribute('data-rendered') === 'true'")
    ids = [int(r["id"]) for r in _rows(browser)]
    assert 9 in ids and 4 not in ids  # new data, and the status filter survived the reload
    assert browser.evaluate("document.querySelector('#status-filters input[data-status=\"rejected\"]').checked") is False
    browser.click("#pause-refresh")
    assert "paused" in browser.evaluate("document.getElementById('live').textContent")
    assert browser.errors == []


def test_a_stale_live_page_says_how_old_it_is(browser, tmp_path):
    data = sample_data("stale-run")
    data["run"].update(status="running", live=True, refresh_s=600, generated_at_s=time.time() - 3600)
    browser.open(_write(tmp_path, data).as_uri())
    text = browser.evaluate("document.getElementById('live').textContent")
    assert "Last written 60 min ago" in text and "hostside runs list" in text
    assert browser.errors == []


def test_when_nothing_meets_the_budgets_the_page_lists_the_nearest_misses(browser, tmp_path):
    data = sample_data("miss-run")
    data["run"]["budgets"] = {"latency_ms": 0.005}
    data.update(models=[], best_tradeoff=None, nothing_meets_budgets=True, nearest_misses=[
        {"id": 1, "violation": 1.2, "missed": {"latency_ms": {"value": 0.011, "limit": 0.005}}, "val_accuracy": 0.71,
         "latency_ms": 0.011, "params": 1000, "macs": 20000}])
    for candidate in data["candidates"]:
        candidate.update(front=False, final=False)
    browser.open(_write(tmp_path, data).as_uri())
    misses = browser.evaluate("document.getElementById('misses').hidden ? null : document.getElementById('misses').innerText")
    assert misses and "No candidate meets the budgets" in misses and "#1" in misses and "latency_ms 0.011 (limit 0.005)" in misses
    assert "No front model was measured" in browser.evaluate("document.getElementById('model-cards').innerText")
    assert browser.errors == []


def test_the_page_is_one_file_that_loads_nothing_from_elsewhere(tmp_path):
    html = render_html(sample_data())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html and "fetch(" not in html
    embedded = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S).group(1)
    assert json.loads(embedded)["candidates"][4]["operator"] == HOSTILE


def test_writing_is_atomic_and_nan_becomes_a_dash(browser, tmp_path):
    data = sample_data("nan-run")
    data["candidates"][0]["energy_mj"] = float("nan")
    page = _write(tmp_path, data)
    assert [p.name for p in page.parent.iterdir() if p.name.startswith(".")] == []
    browser.open(page.as_uri())
    energy = _header_index(browser, "energy mJ")
    assert _rows(browser)[0]["cells"][energy] == "\u2013"


def test_arch_summary_names_each_layer():
    summary = arch_summary(digits_small_cnn())
    assert summary.startswith("conv2d") and summary.endswith("linear 10")
    assert arch_summary(None) == "" and arch_summary({"nodes": "bad"}) == ""


def test_an_objective_another_module_registered_is_charted_by_its_own_reader():
    table = metric_table(["val_accuracy", "mult_energy_mj"])
    assert table["mult_energy_mj"]["key"] == "mult_energy_mj" and table["val_accuracy"] == METRICS["val_accuracy"]
    small, large = ({"macs": macs, "cost": {"deployed_params": 100}} for macs in (1000, 4000))
    assert 0 < _extra_value(small, "mult_energy_mj") < _extra_value(large, "mult_energy_mj")


def test_strategy_attributes_drop_the_engine_and_shorten_unambiguous_keys():
    attrs = {"engine.told": True, "ea4cnn.age": 2, "ea4cnn.fitness": 0.5, "x.fitness": 1, "rs-cnn.k": 3}
    assert strategy_attributes(attrs) == {"age": 2, "ea4cnn.fitness": 0.5, "x.fitness": 1, "k": 3}


@pytest.mark.slow
def test_a_real_search_writes_a_report_that_matches_its_journal(browser, tiny_run):
    page = tiny_run / REPORT_HTML
    assert page.is_file()
    db = sqlite3.connect(tiny_run / "journal.sqlite")
    rows = db.execute("SELECT id, status FROM candidates ORDER BY id").fetchall()
    finals = [r[0] for r in db.execute("SELECT candidate_id FROM results WHERE stage = 'final' AND status = 'measured' "
                                       "ORDER BY candidate_id")]
    browser.open(page.as_uri())
    shown = _rows(browser)
    assert [(int(r["id"]), r["status"]) for r in shown] == rows
    chart = '#charts .chart[data-x="latency_ms"]'
    on_chart = browser.evaluate(f"Array.from(document.querySelectorAll('{chart} [data-id]')).map(n => +n.dataset.id)")
    measured = [cid for cid, status in rows if status == "measured"]
    assert set(measured) <= set(on_chart)
    assert sorted(browser.evaluate(f"Array.from(document.querySelectorAll('{chart} .final-pt')).map(n => +n.dataset.id)")) == finals
    for link in browser.evaluate("Array.from(document.querySelectorAll('#model-cards a[download]')).map(a => a.getAttribute('href'))"):
        assert (tiny_run / link).is_file(), link
    data = build_report_data(tiny_run)
    assert data["run"]["status"] == "finished" and not data["run"]["live"]
    assert len(data["candidates"]) == len(rows)
    assert browser.errors == []
    json.dumps(data)  # plain data, no journal rows or objects
