"""A board whose sshd offers no SFTP subsystem (dropbear, minimal Buildroot
images): installing the agent and uploading models go over the SSH exec channel instead."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import Iterator

import paramiko
import pytest

from hostside.boards import open_board
from hostside.boards.loopback_sshd import LoopbackSshd, sshd_binary

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="module")
def sshd_without_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackSshd]:
    if sshd_binary() is None:
        pytest.skip("openssh-server is not installed (apt-get install -y openssh-server)")
    with LoopbackSshd(tmp_path_factory.mktemp("sshd-nosftp"), sftp=False) as server:
        yield server


@pytest.fixture
def bare_board(sshd_without_sftp, home: Path, tmp_path: Path):
    from hostside.boards import inventory, ssh

    config = inventory.BoardConfig(
        name="bare", host="127.0.0.1", port=sshd_without_sftp.port, user=getpass.getuser(),
        key=str(sshd_without_sftp.client_key), python=sys.executable, agent_dir=str(tmp_path / "agent"),
        daemon_port=1, connect_timeout_s=5.0, retries=0,
    )
    inventory.add(config)
    ssh.trust(config, ssh.fetch_host_key(config))
    return config


def test_the_loopback_sshd_really_has_no_sftp(bare_board):
    from hostside.boards.ssh import connect

    client = connect(bare_board)
    try:
        with pytest.raises((paramiko.SSHException, EOFError)):
            client.open_sftp()
    finally:
        client.close()


def test_install_and_measure_without_sftp(bare_board, conv_model, tmp_path, capsys):
    from hostside.cli import main

    assert main(["boards", "install", "bare"]) == 0, capsys.readouterr().err
    assert "self-test passed" in capsys.readouterr().out
    copied = sorted(p.name for p in (tmp_path / "agent" / "lib" / "device_agent").glob("*.py"))
    import device_agent

    expected = sorted(p.name for p in Path(device_agent.__file__).parent.glob("*.py"))
    assert copied == expected
    for name in expected:  # byte for byte
        assert (tmp_path / "agent/lib/device_agent" / name).read_bytes() == (Path(device_agent.__file__).parent / name).read_bytes()
    with open_board("bare") as board:
        first = board.measure(conv_model, runs=5)
        second = board.measure(conv_model, runs=5)
        assert board._transport.sftp_missing is True
    assert first["error"] is None and first["host"]["path"] == "one-shot" and first["host"]["upload_s"] > 0
    assert second["error"] is None and second["host"]["upload_s"] == 0.0  # found in the cache, not re-sent
    cached = list((tmp_path / "agent" / "models").glob("*"))
    assert [p.suffix for p in cached] == [".onnx"]  # no .part left behind
    assert cached[0].read_bytes() == conv_model.read_bytes()


def test_relative_agent_dir_stays_relative_and_resolves_without_sftp(bare_board, home):
    """Commands start in the SSH user's home, so a relative agent_dir costs no round trip; the
    absolute form (for a systemd unit) is still one exec away."""
    import dataclasses

    from hostside.boards.ssh import SSHTransport

    transport = SSHTransport(dataclasses.replace(bare_board, agent_dir="~/.device-agent-test"))
    try:
        assert transport.agent_dir == ".device-agent-test"
        assert transport.absolute_path(transport.agent_dir) == str(Path.home() / ".device-agent-test")
    finally:
        transport.close()


def test_the_cached_model_check_and_the_agent_run_share_one_exec(bare_board, home, conv_model, tmp_path):
    from hostside.boards.ssh import SSHTransport

    transport = SSHTransport(bare_board)
    try:
        remote = f"{transport.agent_dir}/models/check.onnx"
        assert transport.run_agent_on_file(["info", "--json"], remote, 60.0) is None  # absent: nothing ran
        transport.put_file(conv_model, remote)
        done = transport.run_agent_on_file(["info", "--json"], remote, 60.0)
        assert done is not None and done.returncode == 0 and '"cpu_model"' in done.stdout, done.stderr
    finally:
        transport.close()
