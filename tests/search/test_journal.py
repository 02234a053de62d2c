"""The SQLite journal: durable transitions, unique keys, JSON (not pickle) payloads."""

from __future__ import annotations

import sqlite3

import pytest

from hostside.errors import UserError
from hostside.journal import JOURNAL_FILE, Journal


def _fields(key: str, status: str = "pending"):
    return dict(key=key, arch_hash="h" + key, generation=0, status=status, operator="sample", parents=[],
                genotype={"layers": []}, spec={"nodes": []}, cost={"params": 1}, params=1, macs=2,
                activation_bytes=3, predicted_latency_ms=0.1, filter_accepted=1, filter_reason="ok")


def test_transitions_are_visible_to_a_second_connection_at_once(tmp_path):
    journal = Journal.create(tmp_path / "run")
    cid = journal.add_candidate(**_fields("a"))
    journal.update(cid, status="trained", accuracy=0.9, train_metrics={"epochs": 2})
    other = Journal.open(tmp_path / "run")
    row = other.candidate(cid)
    assert row["status"] == "trained" and row["accuracy"] == 0.9 and row["train_metrics"] == {"epochs": 2}
    assert other.counts()["trained"] == 1 and other.last_generation() == 0


def test_the_same_key_cannot_be_journaled_twice(tmp_path):
    journal = Journal.create(tmp_path / "run")
    journal.add_candidate(**_fields("a"))
    assert journal.has_key("a") and not journal.has_key("b")
    with pytest.raises(sqlite3.IntegrityError):
        journal.add_candidate(**_fields("a"))


def test_unknown_status_is_refused_by_the_schema(tmp_path):
    journal = Journal.create(tmp_path / "run")
    with pytest.raises(sqlite3.IntegrityError):
        journal.add_candidate(**_fields("a", status="done"))


def test_payloads_are_stored_as_json_text(tmp_path):
    journal = Journal.create(tmp_path / "run")
    cid = journal.add_candidate(**_fields("a"))
    raw = sqlite3.connect(tmp_path / "run" / JOURNAL_FILE).execute(
        "SELECT genotype, parents FROM candidates WHERE id = ?", (cid,)).fetchone()
    assert raw == ('{"layers": []}', "[]")


def test_create_refuses_an_existing_run_and_open_refuses_a_plain_directory(tmp_path):
    Journal.create(tmp_path / "run")
    with pytest.raises(UserError, match="already holds a search run; resume it with --resume"):
        Journal.create(tmp_path / "run")
    with pytest.raises(UserError, match="is not a search run"):
        Journal.open(tmp_path)


def test_final_models_are_upserted(tmp_path):
    journal = Journal.create(tmp_path / "run")
    cid = journal.add_candidate(**_fields("a"))
    journal.set_final(cid, status="training")
    journal.set_final(cid, status="measured", latency_ms=0.5, measurement={"latency_ms": {"median": 0.5}})
    (final,) = journal.finals()
    assert final["status"] == "measured" and final["measurement"]["latency_ms"]["median"] == 0.5
