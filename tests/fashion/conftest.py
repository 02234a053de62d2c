"""The real Fashion-MNIST files from Debian's ``dataset-fashion-mnist`` (scripts/test.sh
installs it), read once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not FASHION_DIR.is_dir():
        pytest.fail(f"{FASHION_DIR} is missing: install Debian's dataset-fashion-mnist (scripts/test.sh does)")
    return FASHION_DIR


@pytest.fixture(scope="session")
def fashion(fashion_dir):
    from hostside.train.datasets import load_dataset

    return load_dataset(str(fashion_dir))


@pytest.fixture(scope="session")
def fashion_calibration(tmp_path_factory) -> Path:
    """One quick real calibration of this machine at the 1x28x28 input size, shared by the
    searches here, so no search pays for the full calibration suite."""
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    out = tmp_path_factory.mktemp("calibration")
    with open_board("local") as board:
        calibrate([board], out, threads=1, input_shape=(1, 28, 28), size=16)
    return out / CALIBRATION_JSON
