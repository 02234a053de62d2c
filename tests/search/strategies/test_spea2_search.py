"""``hostside search --strategy spea2`` over the dense space through the real engine (process
pool, journal, local board): every candidate is measured and carries the paper's Score, and a
[stop] rule met by an archive member ends the search, naming the rule."""

from __future__ import annotations

import json

import pytest

from hostside import cli

pytestmark = pytest.mark.slow


def test_a_stop_rule_ends_the_search_after_the_first_iteration(tmp_path, capsys, digits_calibration):
    config = tmp_path / "search.toml"
    config.write_text('[strategy]\nname = "spea2"\niterations = 4\n\n[stop]\n'
                      'any_fast = "accuracy >= 0 and latency_ms <= 1000"\n')
    run = tmp_path / "run"
    code = cli.main(["search", "--config", str(config), "--population", "2", "--budget", "8", "--epochs", "1",
                     "--objectives", "accuracy,params", "--no-filter", "--final-epochs", "1", "--workers", "1",
                     "--calibration", str(digits_calibration), "--out", str(run)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "search ends: stop rule 'any_fast'" in err
    assert "passed the filter" not in err  # the stop rule ended the search, not the filter
    assert cli.main(["runs", "show", str(run), "--json"]) == 0
    candidates = json.loads(capsys.readouterr().out)["candidates"]
    assert len(candidates) == 2  # nothing was asked after the rule was met
    for c in candidates:
        assert c["attrs"]["spea2.score"] == pytest.approx(c["val_accuracy"] / c["params"])
        assert c["latency_ms"] > 0
    from hostside.journal import Journal

    journal = Journal.open(run)
    assert journal.meta("stopped_by").startswith("stop rule 'any_fast'")
    assert sum("engine.stopped_by" in attrs for attrs in journal.all_attrs().values()) == 1
    journal.close()
    # a run's candidate folder is a --spec: the spec comes from the run's journal
    folder = run / "candidates" / f"{candidates[0]['id']:05d}"
    code = cli.main(["prune", "--spec", str(folder), "--weights", str(folder / "weights.npz"), "--split",
                     str(run / "split.json"), "--iterations", "1", "--fine-tune-epochs", "1", "--out",
                     str(tmp_path / "pruned")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "pruned" / "prune.json").read_text())["original"]["params"] == candidates[0]["params"]
