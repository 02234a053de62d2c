"""What every robustness test asserts about a command a careless or hostile user ran."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]


def run_cli(args: Sequence[str], env: Optional[Dict[str, str]] = None, timeout_s: float = 120.0,
            program: str = "hostside.cli", cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """``python -m hostside.cli ARGS`` (or ``device_agent``) as a user would run it."""
    return subprocess.run(
        [sys.executable, "-m", program, *args], capture_output=True, text=True, timeout=timeout_s,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}, cwd=cwd or REPO,
    )


def assert_one_error_line(done: subprocess.CompletedProcess, *needles: str) -> str:
    """Non-zero exit, no traceback, exactly one line on stderr, naming what is wrong."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def processes_matching(*needles: str) -> List[int]:
    """Live pids whose command line holds every needle (zombies excluded)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and all(n in cmdline for n in needles):
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout_s: float, interval_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def kill_quietly(pids: Sequence[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def candidate_statuses(run_dir: Path) -> List[str]:
    """The status of every candidate in the run's journal, read-only while the search writes
    it; none (an empty list) while the journal does not exist yet or cannot be read."""
    try:
        db = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return [row[0] for row in db.execute("SELECT status FROM candidates")]
        finally:
            db.close()
    except sqlite3.Error:
        return []


def run_status(run_dir: Path) -> str:
    """The run's own status in its journal ("running", "interrupted", ...)."""
    db = sqlite3.connect(f"file:{run_dir / 'journal.sqlite'}?mode=ro", uri=True, timeout=5)
    try:
        return json.loads(db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()[0])
    finally:
        db.close()
