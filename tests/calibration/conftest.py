"""A real calibration of this machine (the ``local`` board) with a tiny suite, shared by the
tests of this folder: 14 suite models measured through the board API (~10-20 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TINY_SUITE = 14


@pytest.fixture(scope="session")
def hostside_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hostside-home")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("HOSTSIDE_HOME", str(home))
    yield home
    patcher.undo()


@pytest.fixture(scope="session")
def tiny_calibration_dir(hostside_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hostside.boards.board import open_board
    from hostside.calibration.calibrate import calibrate

    out = tmp_path_factory.mktemp("calibration") / "local-tiny"
    with open_board("local") as board:
        calibrate([board], out, threads=1, size=TINY_SUITE)
    return out


@pytest.fixture()
def calibration_copy(tiny_calibration_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny calibration directory a test may damage."""
    copy = tmp_path / "calibration"
    shutil.copytree(tiny_calibration_dir, copy)
    return copy
