"""Fixtures of the product tests: a real headless Chromium, and one real tiny search run."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


def _load(name: str):
    """A helper module next to this file (with --import-mode=importlib tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"product_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


browser_module = _load("browser")


@pytest.fixture(scope="session")
def browser():
    """One Chromium for the session. Missing chromium skips locally and fails under CI
    (scripts/test.sh installs it, so there it is a broken setup, not a reason to skip)."""
    executable = browser_module.find_chromium()
    if executable is None:
        message = "no chromium on PATH; scripts/test.sh installs Debian's chromium (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    chromium = browser_module.Browser(executable)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits_calibration) -> Path:
    """A real NSGA-II search on digits, small enough for a test: 4 trained candidates, two
    generations, a latency budget that the filter uses, the front re-trained and measured."""
    from hostside.cli import main

    run_dir = tmp_path_factory.mktemp("product_run") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOSTSIDE_HOME", str(tmp_path_factory.mktemp("product_home")))
        code = main(["search", "--budget", "4", "--population", "2", "--epochs", "1", "--final-epochs", "1",
                     "--seed", "3", "--workers", "1", "--latency-budget-ms", "0.5",
                     "--calibration", str(digits_calibration), "--out", str(run_dir)])
    assert code == 0, "the tiny search failed"
    return run_dir
