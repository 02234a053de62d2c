"""No paramiko noise on stderr when a board has no daemon (one-shot path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

REPO = Path(__file__).resolve().parents[2]


def test_measuring_a_board_without_a_daemon_prints_nothing_on_stderr(installed_board, home, conv_model):
    done = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "measure", "--board", "loop", str(conv_model), "--runs", "3", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["host"]["path"] == "one-shot"
    assert "Secsh" not in done.stderr and done.stderr.strip() == ""
