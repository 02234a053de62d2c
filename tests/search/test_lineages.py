"""Lineages end to end on real digits training: survivors retrained from their own weights
(each retraining one more training exercise of the budget), attributes told back and
journaled, inherited fractions, measurements reused, and `runs show --json` following it all,
under both scheduling policies."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import List

import pytest

from hostside.cli import main
from hostside.journal import Journal
from hostside.options import setting
from hostside.search.candidate import Proposal
from hostside.search.config import SearchConfig
from hostside.search.run import start_run
from hostside.search.strategies import Strategy, register_strategy

pytestmark = pytest.mark.slow


@dataclass
class AgeingOptions:
    founders: int = setting(2, "networks of the first generation", minimum=1)


@register_strategy("test-ageing")
class Ageing(Strategy):
    """Founders first, then every measured lineage tip is trained again (a survivor ageing)."""

    Options = AgeingOptions

    def ask(self, n: int, ctx) -> List[Proposal]:
        founders = [c for c in ctx.records if c.operator == "sample"]
        if len(founders) < self.options.founders:
            return [Proposal(ctx.space.sample(ctx.rng), "sample", attrs={"test-ageing.age": 0})
                    for _ in range(min(n, self.options.founders - len(founders)))]
        busy = {p for c in ctx.records for p in c.parents} | {c.id for c in ctx.in_flight}
        tips = [c for c in ctx.evaluated() if c.id not in busy]
        return [Proposal.retrain(c, epochs=1, data_seed=c.id) for c in tips[:n]]

    def tell(self, finished, ctx):
        updates = {}
        for record in finished:
            if record.parents:
                updates[record.id] = {"test-ageing.age": ctx.by_id(record.parents[0]).attr("test-ageing.age") + 1}
        return updates


@pytest.mark.parametrize("policy", ["generational", "steady-state"])
def test_survivors_age_through_retraining_and_runs_show_follows_the_lineage(in_tmp_cwd, digits_calibration,
                                                                           capsys, policy):
    run_dir = in_tmp_cwd / "run"
    config = SearchConfig(strategy="test-ageing", policy=policy, budget=6, population=2, epochs=1, final_epochs=1,
                          spot_checks=0, calibration=str(digits_calibration))
    start_run(config, run_dir, progress=lambda message: None)
    journal = Journal.open(run_dir)
    rows = journal.candidates()
    attrs = journal.all_attrs()
    trained = [r for r in rows if r["status"] in ("trained", "measured", "failed")]
    assert len(trained) == 6 == journal.training_exercises()  # each retraining counted once more
    assert all(r["status"] == "measured" for r in trained)
    founders = [r for r in rows if r["operator"] == "sample"]
    assert len(founders) == 2 and all(r["inherited_fraction"] == 0.0 for r in founders)
    for row in rows:
        assert (run_dir / row["weights_path"]).is_file() and row["weights_sha256"]
        kinds = {a["kind"]: a for a in journal.artifacts(row["id"])}
        assert kinds["weights"]["sha256"] == row["weights_sha256"] and kinds["onnx"]["sha256"] == row["onnx_sha256"]
        if row["operator"] == "retrain":
            (parent_id,) = row["parents"]
            parent = journal.candidate(parent_id)
            assert row["exercise"]["weights_from"] == [parent_id] and row["inherited_fraction"] == 1.0
            assert row["arch_hash"] == parent["arch_hash"] and row["measurement"]["reused"]  # no board time
            assert row["key"] != parent["key"]
            assert attrs[row["id"]]["test-ageing.age"] == attrs[parent_id]["test-ageing.age"] + 1
    assert max(a["test-ageing.age"] for a in attrs.values()) >= 1
    journal.close()

    capsys.readouterr()
    assert main(["runs", "show", str(run_dir), "--json"]) == 0
    shown = {c["id"]: c for c in json.loads(capsys.readouterr().out)["candidates"]}
    for row in rows:
        entry = shown[row["id"]]
        assert entry["parents"] == row["parents"] and entry["inherited_fraction"] == row["inherited_fraction"]
        assert entry["age"] == attrs[row["id"]]["test-ageing.age"] == entry["attrs"]["test-ageing.age"]
        assert "engine.told" not in entry["attrs"]


def test_budget_in_epochs_counts_every_epoch_trained(in_tmp_cwd, digits_calibration):
    config = SearchConfig(strategy="random", budget=4, budget_unit="epochs", population=2, epochs=2, final_epochs=1,
                          spot_checks=0, calibration=str(digits_calibration))
    start_run(config, in_tmp_cwd / "run", progress=lambda message: None)
    journal = Journal.open(in_tmp_cwd / "run")
    assert journal.training_exercises() == 2 and journal.training_exercises("epochs") == 4
    journal.close()
