"""Fixtures of the cluster tests: a real loopback Dask cluster."""

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

