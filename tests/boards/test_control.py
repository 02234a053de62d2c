"""The control process (hostside.boards.control): a fresh ``hostside measure`` reuses the
board's open connection, through a Unix socket only this user can use."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.ssh

REPO = Path(__file__).resolve().parents[2]


def _measure(home: Path, model: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "hostside.cli", "measure", "--board", "loop", str(model), "--runs", "5", "--json"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "HOSTSIDE_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _wait_for_socket(home: Path, timeout_s: float = 30.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sockets = list((home / "control").glob("loop-*.sock"))
        if sockets:
            return sockets[0]
        time.sleep(0.1)
    raise AssertionError("no control socket appeared")


def test_a_second_fresh_measure_goes_through_the_control_process(daemon, home, conv_model):
    first = _measure(home, conv_model)
    assert first["host"]["path"] == "daemon" and not first["host"].get("via_control")
    sock = _wait_for_socket(home)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    second = _measure(home, conv_model)
    assert second["error"] is None and second["host"]["via_control"] is True
    assert second["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]
    sock.unlink()  # a removed socket ends the control process; the next command measures itself
    third = _measure(home, conv_model)
    assert third["error"] is None and not third["host"].get("via_control")


def test_a_board_without_a_daemon_is_measured_one_shot_through_the_control_process(installed_board, home, conv_model):
    first = _measure(home, conv_model)
    assert first["host"]["path"] == "one-shot" and not first["host"].get("via_control")
    _wait_for_socket(home)
    second = _measure(home, conv_model)
    assert second["error"] is None and second["host"]["path"] == "one-shot" and second["host"]["via_control"] is True
    assert second["host"]["upload_s"] == 0.0  # the first command left the model in the board's cache
    assert second["outputs"][0]["sha256"] == first["outputs"][0]["sha256"]


def test_a_socket_deeper_than_sun_path_allows_is_bound_and_reached(tmp_path):
    """A deep ``$HOSTSIDE_HOME`` (CI checkouts, pytest's tmp dirs under xdist) makes the socket's
    full path longer than a Unix address holds; the control process must still be reachable."""
    import socket

    from hostside.boards import control

    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5)
    deep.mkdir(parents=True)
    path = deep / "loop-0123456789ab.sock"
    assert len(os.fsencode(path)) > control.UNIX_PATH_MAX_BYTES
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        with control._address(path) as address:
            listener.bind(address)
        listener.listen(1)
        assert path.exists()
        assert control._server_pid(path) == os.getpid()  # connects through the same short address
