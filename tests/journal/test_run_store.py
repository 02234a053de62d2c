"""Both RunStore backends (the SQLite file and the in-memory journal) keep the same contract."""

from __future__ import annotations

import inspect
import sqlite3

import pytest

from hostside.journal import JOURNAL_FILE, Journal, RunStore


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path):
    journal = Journal.create(tmp_path / "run") if request.param == "file" else Journal.in_memory()
    yield journal
    journal.close()


def _candidate(key: str, **extra):
    fields = dict(key=key, arch_hash="a" + key, generation=0, status="pending", operator="sample", parents=[],
                  genotype={"ops": [key]}, spec={"nodes": []}, cost={}, params=10, macs=20, activation_bytes=30,
                  filter_accepted=1, filter_reason="")
    fields.update(extra)
    return fields


def test_journal_implements_every_method_of_the_protocol():
    wanted = {name for name, _ in inspect.getmembers(RunStore, inspect.isfunction) if not name.startswith("_")}
    assert wanted <= {name for name in dir(Journal) if not name.startswith("_")}


def test_candidates_attributes_artifacts_and_finals_round_trip(store):
    first = store.add_candidate(**_candidate("k1"))
    second = store.add_candidate(**_candidate("k2", generation=1))
    store.update(first, status="measured", latency_ms=1.5, measurement={"latency_ms": {"median": 1.5}})
    store.set_attrs(second, {"ea4cnn.age": 3, "ea4cnn.species": [1, 2]})
    store.add_artifact(first, "onnx", "models/1.onnx", "f" * 64, 123, {"opset": 17})
    store.set_result(first, "final", status="measured", test_accuracy=0.9)
    store.set_result(first, "final", test_accuracy=0.91)
    store.set_result(second, "screening", status="trained", epochs=5, val_accuracy=0.8)
    store.set_meta("config", {"budget": 3})

    assert store.has_key("k1") and not store.has_key("k3")
    assert store.candidate(first)["genotype"] == {"ops": ["k1"]}
    assert [c["id"] for c in store.candidates(["pending"])] == [second]
    assert store.counts()["measured"] == 1 and store.counts()["pending"] == 1
    assert store.last_generation() == 1
    assert store.measurement_of_arch("ak1") == {"latency_ms": {"median": 1.5}}
    assert store.all_attrs() == {second: {"ea4cnn.age": 3, "ea4cnn.species": [1, 2]}}
    assert store.artifacts(first)[0]["meta"] == {"opset": 17}
    assert [(f["status"], f["test_accuracy"]) for f in store.results("final")] == [("measured", 0.91)]
    assert [(r["candidate_id"], r["epochs"]) for r in store.results("screening")] == [(second, 5)]
    assert store.results("spot_check") == []
    assert store.meta("config") == {"budget": 3} and store.meta("absent", 7) == 7
    with pytest.raises(KeyError):
        store.candidate(99)


def test_a_key_is_unique_in_both_backends(store):
    store.add_candidate(**_candidate("k1"))
    with pytest.raises(sqlite3.IntegrityError):
        store.add_candidate(**_candidate("k1"))


def test_the_in_memory_journal_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    journal = Journal.in_memory()
    journal.add_candidate(**_candidate("k1"))
    journal.close()
    assert not list(tmp_path.iterdir()) and not (tmp_path / JOURNAL_FILE).exists()
