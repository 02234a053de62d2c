"""A search end to end on a 2,000-image subset of the real Fashion-MNIST files: trained,
measured on this machine, the front re-trained, and the official test part in split.json."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_tiny_search_on_a_fashion_subset(fashion_dir, fashion_calibration, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "search", "--dataset", f"{fashion_dir}?subset=2000",
         "--budget", "2", "--population", "2", "--epochs", "1", "--final-epochs", "1", "--workers", "1",
         "--calibration", str(fashion_calibration),
         "--objectives", "accuracy,latency_ms", "--out", str(run)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    split = json.loads((run / "split.json").read_text())
    assert split["test_part"] == "official" and split["num_examples"] == 2000
    assert len(split["test"]) == 286 and min(split["test"]) == 2000 - 286
    pareto = json.loads((run / "pareto.json").read_text())
    assert pareto, "empty front"
    for model in pareto:
        assert 0.1 < model["accuracy"] <= 1.0
        assert model["latency_ms"] > 0
    assert (run / "report.md").exists() and (run / "report.html").exists()
