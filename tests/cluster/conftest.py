"""Fixtures of the cluster tests: a real loopback Dask cluster and a small real calibration."""

import sys
from pathlib import Path

import pytest

# --import-mode=importlib puts no test directory on sys.path; the shared helpers live beside us.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_helpers import LoopbackCluster  # noqa: E402


@pytest.fixture
def loopback_cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def cluster_calibration(tmp_path_factory) -> Path:
    """One small real calibration of this machine, so searches start training at once."""
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    out = tmp_path_factory.mktemp("calibration")
    with open_board("local") as board:
        calibrate([board], out, threads=1, input_shape=(1, 8, 8), size=16)
    return out / CALIBRATION_JSON
