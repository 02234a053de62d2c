"""Fixtures for the end-to-end tests on emulated ARM boards (qemu-user userlands over SSH).

Each board variant is started once per session (``deploy/emulated/emulated_board.py``), with
a real ``sshd`` inside the emulated userland on a loopback port, and stopped at the end:
its processes killed, its mounts gone with its private mount namespace.

They run only when ``HOSTSIDE_ARM=1``, set after ``tests/boards/emulated/ci_arm.sh --prepare``
made binfmt_misc and the board cache ready (``scripts/test.sh`` does that). Otherwise they skip
with ``HOSTSIDE_ARM_SKIP_REASON``, or fail when that reason says the rig is broken: on a
machine that can emulate ARM, CI must really run them. Once asked for, a board that cannot
start is a failure, not a skip.

``installed_board`` here (an emulated board, session-scoped) overrides the loopback-sshd one of
tests/boards/conftest.py for the tests in this folder.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest

REPO = Path(__file__).resolve().parents[3]
BOARD_SCRIPT = REPO / "deploy" / "emulated" / "emulated_board.py"
VARIANTS = ("arm64-bookworm", "armhf-trixie", "arm64-bullseye")
#: Emulation makes a single inference take seconds; commands get generous limits.
CLI_TIMEOUT_S = 600


@dataclass
class EmulatedBoard:
    """A started board: how to reach it, and what its userland was built with."""

    variant: str
    host: str
    port: int
    user: str
    key: Path
    manifest: Dict[str, object]
    host_keys: List[List[str]]  # [type, base64] of each sshd host key, as in a .pub file
    known_hosts: Path  # those keys for this port, for the rig's own `ssh` calls

    def ssh(self, command: str, timeout_s: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run a shell command on the board as its user, verifying its host key."""
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
             f"{self.user}@{self.host}", command],
            capture_output=True, text=True, timeout=timeout_s,
        )


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_hostside(home: Path, *args: str, timeout_s: float = CLI_TIMEOUT_S) -> CliResult:
    """Run the real ``hostside`` CLI in a subprocess, with its state in ``home``.

    The working directory is ``home`` too, so nothing the command writes by a relative path
    can land in the repository (``calibration_data/`` above all).
    """
    env = dict(os.environ, HOSTSIDE_HOME=str(home))
    completed = subprocess.run(
        [sys.executable, "-m", "hostside.cli", *args],
        cwd=home, env=env, capture_output=True, text=True, timeout=timeout_s,
    )
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def add_board(home: Path, name: str, board: EmulatedBoard, *extra: str) -> None:
    result = run_hostside(home, "boards", "add", name, "--host", board.host, "--port", str(board.port),
                          "--user", board.user, "--key", str(board.key), *extra)
    assert result.returncode == 0, result.stderr


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.fixture(scope="session")
def hostside_cli() -> Callable[..., CliResult]:
    """``run_hostside`` for test modules (with --import-mode=importlib a conftest is not importable)."""
    return run_hostside


@pytest.fixture(scope="session")
def add_board_to() -> Callable[[Path, str, EmulatedBoard], None]:
    return add_board


@pytest.fixture(scope="session")
def arm_rig() -> None:
    """Run only where ci_arm.sh prepared the rig; a broken rig fails instead of skipping."""
    if os.environ.get("HOSTSIDE_ARM") == "1":
        return
    reason = os.environ.get("HOSTSIDE_ARM_SKIP_REASON", "")
    if reason.startswith("ARM rig broken"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason or "emulated ARM boards are not prepared; run tests/boards/emulated/ci_arm.sh as root (or set HOSTSIDE_ARM=1 after `ci_arm.sh --prepare`)")


@pytest.fixture(scope="session")
def ssh_key(arm_rig: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("arm-key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostside-arm-tests", "-f", str(key)],
                   check=True)
    return key


@pytest.fixture(scope="session", params=VARIANTS)
def board(request: pytest.FixtureRequest, ssh_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedBoard]:
    """One running board per variant for the whole session (starting one costs seconds)."""
    variant = request.param
    state_dir = tmp_path_factory.mktemp(f"board-{variant}")
    started = subprocess.run(
        [sys.executable, str(BOARD_SCRIPT), "start", variant, "--state-dir", str(state_dir / "board"),
         "--authorized-key", f"{ssh_key}.pub"],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    try:
        assert started.returncode == 0, f"board {variant} did not start: {started.stderr.strip()}"
        facts = json.loads(started.stdout)
        known_hosts = state_dir / "known_hosts"
        known_hosts.write_text("".join(f"[{facts['host']}]:{facts['port']} {kind} {blob}\n"
                                       for kind, blob in facts["host_keys"]))
        yield EmulatedBoard(variant, facts["host"], facts["port"], facts["user"], ssh_key, facts["manifest"],
                            facts["host_keys"], known_hosts)
    finally:
        subprocess.run([sys.executable, str(BOARD_SCRIPT), "stop", "--state-dir", str(state_dir / "board")],
                       check=True, timeout=120)


@pytest.fixture(scope="session")
def installed_board(board: EmulatedBoard, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, object]]:
    """The board added, its host key trusted, the agent installed and its daemon running.

    The daemon is started over SSH the way deploy/device-agent.service starts it (a chroot
    has no systemd). The emulated boards share the host's loopback, so each daemon gets a
    free port (``--daemon-port``) instead of the default 47800 that another board or test
    could hold.
    """
    from hostside.boards.inventory import DEFAULT_AGENT_DIR

    home = tmp_path_factory.mktemp(f"home-{board.variant}")
    # Unique per run, so a test can search calibration_data/ for any trace of this board.
    name = f"emu-{board.variant}-{secrets.token_hex(4)}"
    daemon_port = free_loopback_port()
    add_board(home, name, board, "--daemon-port", str(daemon_port))
    trusted = run_hostside(home, "boards", "trust", name, "--yes")
    assert trusted.returncode == 0, trusted.stderr
    installed = run_hostside(home, "boards", "install", name)
    if installed.returncode == 0:
        agent_dir = f"$HOME/{DEFAULT_AGENT_DIR}"  # where `boards install` put the agent
        # setsid -f: the daemon leaves the SSH session (whose channel would otherwise stay
        # open until the daemon exits), as a systemd service would be detached.
        daemon_started = board.ssh(
            f"cd {agent_dir} && DEVICE_AGENT_HOME={agent_dir} PYTHONPATH={agent_dir}/lib "
            f"setsid -f python3 -m device_agent serve --port {daemon_port} "
            f"> {agent_dir}/daemon.log 2>&1 < /dev/null",
            timeout_s=60,
        )
        assert daemon_started.returncode == 0, daemon_started.stderr
        assert wait_for_port(daemon_port, 120), (
            "the agent daemon did not listen within 120 s: "
            + board.ssh(f"tail -n 20 {agent_dir}/daemon.log").stdout)
    yield {"home": home, "name": name, "board": board, "install": installed, "trust": trusted}
