"""Fixtures for the search tests (the shared calibration, ``digits_calibration``, lives in
tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def in_tmp_cwd(tmp_path, monkeypatch) -> Path:
    """Runs go to ./runs: give each test its own current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
