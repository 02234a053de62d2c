"""A real OpenSSH server on 127.0.0.1 for the board tests (hostside.boards.loopback_sshd),
and boards that point at it: the "board" is this machine reached through that sshd, with its
agent in a temporary directory."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from hostside.boards.loopback_sshd import LoopbackSshd, free_port, sshd_binary, wait_for_port

@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if sshd_binary() is None:
        pytest.skip("openssh-server is not installed (apt-get install -y openssh-server)")
    with LoopbackSshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HOSTSIDE_HOME so nothing touches the real ~/.hostside."""
    path = tmp_path / "hostside-home"
    monkeypatch.setenv("HOSTSIDE_HOME", str(path))
    # A control process started by a test's `hostside measure` outlives the test only briefly.
    monkeypatch.setenv("HOSTSIDE_CONTROL_IDLE_S", "15")
    return path


@pytest.fixture
def board_config(sshd: LoopbackSshd, home: Path, tmp_path: Path):
    """An inventory entry for the loopback board, with its host key already trusted."""
    from hostside.boards import inventory, ssh

    config = inventory.BoardConfig(
        name="loop",
        host="127.0.0.1",
        port=sshd.port,
        user=getpass.getuser(),
        key=str(sshd.client_key),
        python=sys.executable,
        agent_dir=str(tmp_path / "agent"),
        daemon_port=free_port(),
        connect_timeout_s=5.0,
        retries=2,
    )
    inventory.add(config)
    ssh.trust(config, ssh.fetch_host_key(config))
    return config


@pytest.fixture
def installed_board(board_config):
    """The loopback board with the agent copied and self-tested by ``boards install``."""
    from hostside.boards.install import install

    install(board_config, say=lambda _: None)
    return board_config


@pytest.fixture
def daemon(installed_board, tmp_path: Path) -> Iterator["DaemonProcess"]:
    """``device-agent serve`` started from the copied package, as the systemd unit would."""
    process = DaemonProcess(installed_board, tmp_path)
    process.start()
    yield process
    process.stop()


class DaemonProcess:
    def __init__(self, config, tmp_path: Path, memory_limit_mb: int = 1024) -> None:
        self.config = config
        self.memory_limit_mb = memory_limit_mb
        self.process: subprocess.Popen = None  # type: ignore[assignment]

    def start(self) -> None:
        env = {
            **os.environ,
            "DEVICE_AGENT_HOME": self.config.agent_dir,
            "PYTHONPATH": f"{self.config.agent_dir}/lib",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "device_agent", "serve", "--port", str(self.config.daemon_port),
             "--memory-limit-mb", str(self.memory_limit_mb), "--timeout-s", "60"],
            env=env,
            cwd="/",
            stdout=subprocess.DEVNULL,
        )
        wait_for_port(self.config.daemon_port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with neither numpy, onnxruntime nor the agent: a freshly flashed board's."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")
