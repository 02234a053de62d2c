"""Fixtures for the search tests: one real quick calibration of this machine, shared.

The calibration measures a small suite (16 models at the digits input size) on the real
``local`` board once per session; every search test passes it with ``calibration``, so no
test pays for its own calibration.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def digits_calibration(tmp_path_factory) -> Path:
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    out = tmp_path_factory.mktemp("calibration")
    with open_board("local") as board:
        calibrate([board], out, threads=1, input_shape=(1, 8, 8), size=16)
    return out / CALIBRATION_JSON


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch) -> Path:
    """Runs go to ./runs: give each test its own current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
