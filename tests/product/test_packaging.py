"""The built wheel carries the files the code reads at run time, and an installed copy finds them.

Why: a source checkout finds everything by relative paths, so it hides a file that is missing
from the wheel (the calibration sets once were). The test copies the sources to a temporary
directory, builds a wheel there with pip, installs it into another directory and runs code
from that installed copy, with the checkout out of the import path.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "hostside", "device_agent")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("wheel_source")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    isolation = [] if _has_setuptools() else ["--use-pep517"]
    flags = ["--no-build-isolation"] if not isolation else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *flags, *isolation, "-w", str(out), str(source)],
                   check=True, cwd=source, timeout=300)
    wheels = list(out.glob("hostside-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _has_setuptools() -> bool:
    """The build backend is importable here: build without isolation (no download of setuptools)."""
    return importlib.util.find_spec("setuptools") is not None


def _package_files() -> list:
    """Every file of the packages that git tracks (or will: new, not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "hostside", "device_agent"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\n")
    return [name for name in listed if name and (REPO / name).is_file()]


def test_the_wheel_holds_every_file_of_the_packages(wheel):
    """Code and data alike: report assets, calibration sets, the multiplier tables, whatever
    lands next (a data file missing from [tool.setuptools.package-data] fails here)."""
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in _package_files() if name not in names]
    assert not missing, (f"{len(missing)} file(s) of the packages are not in the wheel, e.g. {missing[:3]}; "
                         f"add their folder to [tool.setuptools.package-data] in pyproject.toml")
    assert {f"hostside/report_assets/{asset}" for asset in ("report.html", "report.css", "report.js")} <= names
    assert any(name.startswith("hostside/calibration_data/") and name.endswith("/calibration.json") for name in names)
    assert not any(name.startswith("tests/") for name in names)


def test_an_installed_copy_finds_its_calibration_and_writes_a_report(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    from hostside.calibration.artifact import load_calibration

    shipped = load_calibration(next((REPO / "hostside" / "calibration_data").glob("*/calibration.json")))
    board_key, threads = shipped.board["key"], shipped.threads
    script = f"""
import json, sys
from pathlib import Path
import hostside
from hostside.calibration.registry import CALIBRATION_DATA, find_calibration
from hostside.search.report_html import write_report_html
assert Path(hostside.__file__).is_relative_to({str(target)!r}), hostside.__file__
found = find_calibration({board_key!r}, {threads!r}, roots=[CALIBRATION_DATA])
page = write_report_html({str(tmp_path)!r}, {{"run": {{"name": "x"}}, "candidates": [], "models": []}})
print(json.dumps({{"data": str(CALIBRATION_DATA), "found": found is not None, "page": page.read_text()[:200]}}))
"""
    env = {**os.environ, "PYTHONPATH": str(target), "HOSTSIDE_HOME": str(tmp_path / "home")}
    result = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(answer["data"]).is_relative_to(target) and answer["found"]
    assert answer["page"].startswith("<!DOCTYPE html>")
