"""Fixtures of the cluster tests: a real loopback Dask cluster."""

import pytest

from hostside.search.loopback_cluster import LoopbackCluster


@pytest.fixture
def loopback_cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()
