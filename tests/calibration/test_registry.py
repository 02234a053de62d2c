"""Choosing a stored calibration for a board, or measuring one when none matches."""

from __future__ import annotations

import shutil
from pathlib import Path

from hostside.calibration.calibrate import CALIBRATION_JSON
from hostside.calibration.kernel_probes import probe_count
from hostside.calibration.registry import cache_dir, calibration_for_board, find_calibration


def test_matching_board_key_and_threads_is_found(tiny_calibration_dir: Path, tmp_path: Path):
    root = tmp_path / "data"
    shutil.copytree(tiny_calibration_dir, root / "this-machine")
    from hostside.calibration import load_calibration

    key = load_calibration(tiny_calibration_dir / CALIBRATION_JSON).board["key"]
    assert find_calibration(key, 1, roots=[root]) is not None
    assert find_calibration(key, 2, roots=[root]) is None
    assert find_calibration("armv7l-other-board-4c", 1, roots=[root]) is None


def test_a_broken_stored_file_is_skipped(tiny_calibration_dir: Path, tmp_path: Path):
    root = tmp_path / "data"
    shutil.copytree(tiny_calibration_dir, root / "broken")
    (root / "broken" / CALIBRATION_JSON).write_text("{")
    from hostside.calibration import load_calibration

    key = load_calibration(tiny_calibration_dir / CALIBRATION_JSON).board["key"]
    assert find_calibration(key, 1, roots=[root]) is None


def test_calibration_for_board_reuses_the_cache_without_measuring(tiny_calibration_dir: Path, hostside_home: Path):
    from hostside.boards.board import open_board

    with open_board("local") as board:
        target = cache_dir() / f"{board.key}-threads1-quick"
        shutil.copytree(tiny_calibration_dir, target, dirs_exist_ok=True)
        before = (target / "measurements.csv").read_text()
        calibration = calibration_for_board(board, threads=1, roots=[cache_dir()])
    assert calibration.board["key"] == board.key and calibration.threads == 1
    assert calibration.path == target / CALIBRATION_JSON
    assert (target / "measurements.csv").read_text() == before


def test_calibration_for_board_measures_when_nothing_matches(hostside_home: Path, tmp_path: Path, monkeypatch):
    """With no stored calibration, the quick suite is measured now and cached (a small suite here)."""
    from hostside.boards.board import open_board
    from hostside.calibration import calibrate as calibrate_module

    real_calibrate = calibrate_module.calibrate
    monkeypatch.setattr(calibrate_module, "calibrate", lambda *a, **k: real_calibrate(*a, **{**k, "size": 12}))
    monkeypatch.setenv("HOSTSIDE_HOME", str(tmp_path / "fresh-home"))
    seen = []
    with open_board("local") as board:
        calibration = calibration_for_board(board, threads=1, progress=lambda d, t: seen.append((d, t)),
                                            roots=[cache_dir()])
        assert calibration.path == cache_dir() / f"{board.key}-threads1-quick" / CALIBRATION_JSON
    done, total = seen[-1]
    assert done == total >= 12 + 1 + probe_count(12)  # the suite, the floor probe, the kernel probes (and refining)
    assert [t for _, t in seen] == sorted(t for _, t in seen)  # the refining round counts on, not from 0
