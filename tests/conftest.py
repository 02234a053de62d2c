"""Shared test setup: every test gets its own HOSTSIDE_HOME so nothing touches the real one."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_hostside_home(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HOSTSIDE_HOME", str(tmp_path_factory.mktemp("hostside_home")))
