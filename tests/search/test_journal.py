"""The SQLite journal: durable transitions, unique keys, JSON (not pickle) payloads, schema migration."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from hostside.errors import UserError
from hostside.journal import JOURNAL_FILE, SCHEMA_VERSION, Journal


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
    journal.set_result(cid, "final", status="training")
    journal.set_result(cid, "final", status="measured", latency_ms=0.5, measurement={"latency_ms": {"median": 0.5}})
    (final,) = journal.results("final")
    assert final["status"] == "measured" and final["measurement"]["latency_ms"]["median"] == 0.5
    with pytest.raises(ValueError, match="result stage"):
        journal.set_result(cid, "bench", status="measured")


V1_SQL = (Path(__file__).parent / "data" / "journal_v1_schema.sql").read_text()


def _v1_journal(run_dir, version=1):
    """A journal file exactly as the schema-1 code wrote it (its SQL, its meta rows)."""
    run_dir.mkdir(parents=True)
    db = sqlite3.connect(run_dir / JOURNAL_FILE)
    db.executescript(V1_SQL)
    db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (json.dumps(version),))
    fields = _fields("old", status="measured")
    fields.update(onnx_path="candidates/00001/model.onnx", onnx_sha256="ab" * 32, accuracy=0.9, latency_ms=0.2,
                  parents="[]", genotype='{"layers": []}', spec='{"nodes": []}', cost='{"params": 1}',
                  created_at=1.0, updated_at=2.0)
    db.execute(f"INSERT INTO candidates ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)})",
               list(fields.values()))
    db.commit()
    db.close()


def test_a_schema_1_journal_is_migrated_in_place_and_keeps_its_rows(tmp_path):
    _v1_journal(tmp_path / "run")
    journal = Journal.open(tmp_path / "run")
    assert journal.schema_version == SCHEMA_VERSION == 3
    (row,) = journal.candidates()
    assert (row["status"], row["accuracy"], row["updated_at"], row["weights_path"]) == ("measured", 0.9, 2.0, None)
    (artifact,) = journal.artifacts(row["id"])  # the ONNX file became an artifact with its hash
    assert (artifact["kind"], artifact["path"], artifact["sha256"]) == ("onnx", "candidates/00001/model.onnx", "ab" * 32)
    journal.set_attrs(row["id"], {"nsga2.rank": 0})
    cid = journal.add_candidate(**_fields("new"), exercise={"epochs": 3, "weights_from": [row["id"]]})
    journal.update(cid, status="trained", weights_path="candidates/00002/weights.npz", inherited_fraction=0.75)
    journal.close()
    again = Journal.open(tmp_path / "run")  # opening a migrated file again changes nothing
    assert again.schema_version == 3 and again.attrs(row["id"]) == {"nsga2.rank": 0}
    assert again.candidate(cid)["exercise"] == {"epochs": 3, "weights_from": [row["id"]]}
    assert again.training_exercises() == 2 and again.training_exercises("epochs") == 3


def test_spot_checks_screening_and_finals_of_an_older_journal_become_results(tmp_path):
    """Schema 2 kept the three in three places (a candidates column, ``screen.*`` attributes,
    a table); opening it makes them rows of ``results``, NaN figures included."""
    from hostside.journal import MIGRATIONS

    _v1_journal(tmp_path / "run")
    db = sqlite3.connect(tmp_path / "run" / JOURNAL_FILE)
    db.executescript(MIGRATIONS[1])  # to schema 2, as that code left it
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.execute("UPDATE candidates SET spot_check = ? WHERE id = 1",
               (json.dumps({"onnx": "spot_checks/00001.onnx", "latency_ms": 0.3, "meets_budget": False, "error": None}),))
    db.executemany("INSERT INTO attrs VALUES (1, ?, ?, 5.0)", [("screen.epochs", "4"), ("screen.val_accuracy", "0.8"),
                                                                ("nsga2.rank", "0")])
    db.execute("INSERT INTO final_models (candidate_id, status, accuracy, val_accuracy, train_metrics, onnx_path, "
               "updated_at) VALUES (1, 'measured', 0.91, NULL, ?, 'final/00001/model.onnx', 6.0)",
               (json.dumps({"loss": float("nan")}),))
    db.commit()
    db.close()
    journal = Journal.open(tmp_path / "run")
    (spot,) = journal.results("spot_check")
    assert (spot["candidate_id"], spot["status"], spot["latency_ms"], spot["meets_budget"]) == (1, "measured", 0.3, False)
    (screened,) = journal.results("screening")
    assert (screened["status"], screened["epochs"], screened["val_accuracy"]) == ("trained", 4, 0.8)
    (final,) = journal.results("final")
    assert (final["status"], final["test_accuracy"], final["onnx_path"]) == ("measured", 0.91, "final/00001/model.onnx")
    assert final["updated_at"] == 6.0 and final["train_metrics"]["loss"] != final["train_metrics"]["loss"]  # NaN
    assert journal.attrs(1) == {"nsga2.rank": 0}  # a strategy's attributes stay; the screening's moved
    assert "spot_check" not in journal.candidate(1)


def test_a_newer_schema_is_refused_naming_both_versions(tmp_path):
    _v1_journal(tmp_path / "run", version=4)
    with pytest.raises(UserError) as info:
        Journal.open(tmp_path / "run")
    assert "journal schema 4 is newer than this hostside supports (3); upgrade hostside" in str(info.value)
    assert "\n" not in str(info.value)


def test_attrs_and_artifacts_round_trip_as_json(tmp_path):
    journal = Journal.create(tmp_path / "run")
    cid = journal.add_candidate(**_fields("a"))
    journal.set_attrs(cid, {"ea4cnn.age": 2, "ea4cnn.species": [1, 2]})
    journal.set_attrs(cid, {"ea4cnn.age": 3})
    assert journal.all_attrs() == {cid: {"ea4cnn.age": 3, "ea4cnn.species": [1, 2]}}
    journal.add_artifact(cid, "weights", "candidates/00001/weights.npz", "cd" * 32, 123, meta={"format": 1})
    (artifact,) = journal.artifacts(cid)
    assert artifact["size_bytes"] == 123 and artifact["meta"] == {"format": 1}
