"""The calibration the narrow tests predict latency with: the one shipped in the package."""

import pytest

from hostside.calibration.registry import CALIBRATION_DATA


@pytest.fixture(scope="session")
def shipped_calibration() -> str:
    found = sorted(CALIBRATION_DATA.glob("*/calibration.json"))
    assert found, f"no calibration shipped under {CALIBRATION_DATA}"
    return str(found[0])
