"""The files a user hands the host: binary bytes, 100,000-deep
JSON, damaged journals, absurd specs and bad search settings give one line, write nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from robustness_helpers import assert_one_error_line, run_cli

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00"
DEEP = "[" * 100_000 + "]" * 100_000


def _spec(out_channels: int) -> str:
    return json.dumps({
        "format": "hostside.archspec", "version": 1, "input_shape": [1, 8, 8], "num_classes": 10,
        "nodes": [
            {"id": "c", "op": "conv2d", "inputs": ["input"], "out_channels": out_channels, "kernel": 3, "padding": 1},
            {"id": "g", "op": "global_avgpool", "inputs": ["c"]},
            {"id": "f", "op": "flatten", "inputs": ["g"]},
            {"id": "l", "op": "linear", "inputs": ["f"], "out_features": 10},
        ],
        "output": "l",
    })


def _cli(tmp_path: Path, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return run_cli(list(args), env={"HOSTSIDE_HOME": str(tmp_path / "home")}, cwd=tmp_path, timeout_s=timeout_s)


def _files(tmp_path: Path):
    return sorted(p.name for p in tmp_path.iterdir() if p.name != "home")


@pytest.mark.parametrize("content", [BINARY, DEEP.encode()], ids=["binary", "deep"])
def test_archspec_files(tmp_path, content):
    (tmp_path / "spec.json").write_bytes(content)
    assert_one_error_line(_cli(tmp_path, "arch", "stats", "spec.json"), "spec.json")
    assert_one_error_line(_cli(tmp_path, "train", "spec.json", "--out", "out"), "spec.json")
    assert _files(tmp_path) == ["spec.json"]


@pytest.mark.parametrize("content", [BINARY, DEEP.encode()], ids=["binary", "deep"])
def test_calibration_files(tmp_path, content):
    (tmp_path / "cal.json").write_bytes(content)
    (tmp_path / "spec.json").write_text(_spec(8))
    assert_one_error_line(_cli(tmp_path, "predict", "--calibration", "cal.json", "spec.json"), "cal.json")


def test_binary_search_config(tmp_path):
    (tmp_path / "search.toml").write_bytes(BINARY)
    assert_one_error_line(_cli(tmp_path, "search", "--config", "search.toml"), "search.toml")
    assert _files(tmp_path) == ["search.toml"]  # no run directory


@pytest.mark.parametrize("command", [["runs", "show", "run"], ["search", "--resume", "run"], ["runs", "list"]])
def test_a_damaged_journal_is_one_line(tmp_path, command):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "journal.sqlite").write_bytes(b"garbage" * 200)
    if command[0] == "runs" and command[1] == "list":
        (tmp_path / "runs").mkdir()
        (tmp_path / "run").rename(tmp_path / "runs" / "run")
    done = _cli(tmp_path, *command)
    assert "Traceback" not in done.stderr, done.stderr
    if command[1] != "list":
        assert_one_error_line(done, "journal")
    else:
        assert "damaged" in done.stderr + done.stdout


@pytest.mark.parametrize("filters", [10**9, 10**30], ids=["1e9", "1e30"])
def test_training_an_absurd_spec_is_refused_before_allocating(tmp_path, filters):
    (tmp_path / "spec.json").write_text(_spec(filters))
    assert_one_error_line(_cli(tmp_path, "train", "spec.json", "--out", "out"), "available")
    assert _files(tmp_path) == ["spec.json"]


@pytest.mark.parametrize("table, needle", [("[train]\nbatch_size = 0\n", "batch_size"),
                                           ("[space_options]\nbogus = 1\n", "bogus")])
def test_bad_search_settings_are_found_before_the_search_starts(tmp_path, table, needle):
    (tmp_path / "search.toml").write_text(table)
    assert_one_error_line(_cli(tmp_path, "search", "--config", "search.toml", "--out", "run", timeout_s=30), needle)
    assert _files(tmp_path) == ["search.toml"]


def test_an_unknown_board_creates_no_run_directory(tmp_path):
    assert_one_error_line(_cli(tmp_path, "search", "--board", "nosuch", "--out", "run", timeout_s=30), "nosuch")
    assert _files(tmp_path) == []
