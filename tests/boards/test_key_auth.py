"""Keys against a real sshd on loopback: a damaged known_hosts line is skipped with one warning
(never a traceback), and a passphrase-protected login key works through the passphrase
variable or ssh-agent, and is named as encrypted when neither is given."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
from robustness_helpers import REPO, assert_one_error_line  # noqa: E402

pytestmark = pytest.mark.ssh

PASSPHRASE = "secret"
BINARY_LINE = b"\xff\xfe\x00\x81 not text \xc3\x28"
GARBAGE_LINE = b"127.0.0.9 ssh-ed25519 !!!this-is-not-base64"


def run_hostside(args: Sequence[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``run_cli`` with stdin closed: on a terminal, hostside would ask for the passphrase."""
    return subprocess.run(
        [sys.executable, "-m", "hostside.cli", *args], capture_output=True, text=True, timeout=120,
        stdin=subprocess.DEVNULL, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})},
    )


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No agent, no passphrase and an empty ~ for the commands: only what a test gives counts."""
    fake_home = tmp_path / "user-home"
    (fake_home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(fake_home))
    for name in ("SSH_AUTH_SOCK", "SSH_AGENT_PID", "HOSTSIDE_SSH_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    return fake_home


@pytest.fixture
def encrypted_key(sshd, tmp_path: Path) -> Iterator[Path]:
    """An ed25519 key with a passphrase, authorised on the loopback sshd for this test only."""
    key = tmp_path / "encrypted_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True)
    authorized = sshd.directory / "authorized_keys"
    before = authorized.read_bytes()
    authorized.write_bytes(before + Path(f"{key}.pub").read_bytes())
    yield key
    authorized.write_bytes(before)


@pytest.fixture
def encrypted_board(board_config, encrypted_key: Path):
    from hostside.boards import inventory

    inventory.remove("loop")
    config = dataclasses.replace(board_config, key=str(encrypted_key))
    inventory.add(config)
    return config


@pytest.fixture
def ssh_agent(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dict[str, str]]:
    """A real ssh-agent for this test, killed by its pid at the end."""
    done = subprocess.run(["ssh-agent", "-s"], capture_output=True, text=True, check=True)
    env = {}
    for part in done.stdout.replace("\n", ";").split(";"):
        name, _, value = part.strip().partition("=")
        if name in ("SSH_AUTH_SOCK", "SSH_AGENT_PID"):
            env[name] = value
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield env
    finally:
        os.kill(int(env["SSH_AGENT_PID"]), signal.SIGTERM)


def assert_one_warning(done: subprocess.CompletedProcess, *needles: str) -> str:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("hostside: warning: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("bad_line", [BINARY_LINE, GARBAGE_LINE], ids=["binary", "garbage"])
def test_bad_line_in_hostside_known_hosts_is_skipped_with_one_warning(board_config, home, clean_env, bad_line):
    known_hosts = home / "known_hosts"
    good = known_hosts.read_bytes()
    known_hosts.write_bytes(b"# boards\n" + bad_line + b"\n" + good)
    done = run_hostside(["boards", "check", "loop"])
    assert_one_warning(done, f"{known_hosts}:2", "skipped")


@pytest.mark.parametrize("bad_line", [BINARY_LINE, GARBAGE_LINE], ids=["binary", "garbage"])
def test_bad_line_in_ssh_known_hosts_is_skipped_with_one_warning(board_config, home, clean_env, bad_line):
    system = clean_env / ".ssh" / "known_hosts"
    system.write_bytes(b"localhost ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA==\n" + bad_line + b"\n")
    done = run_hostside(["boards", "check", "loop"])
    assert_one_warning(done, f"{system}:2")


def test_a_board_whose_own_line_is_damaged_is_refused_as_unknown(board_config, home, clean_env):
    known_hosts = home / "known_hosts"
    known_hosts.write_bytes(known_hosts.read_bytes().replace(b"AAAA", b"\xff\xfe", 1))
    done = run_hostside(["boards", "check", "loop"])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    warning, error = [line for line in done.stderr.splitlines() if line.strip()]
    assert f"{known_hosts}:1" in warning and "unknown host key" in error and "boards trust loop" in error


def test_trust_keeps_the_other_lines_including_damaged_ones(board_config, home, clean_env, sshd, tmp_path):
    known_hosts = home / "known_hosts"
    other_key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    other = b"[10.0.0.7]:2222 " + b" ".join(Path(f"{other_key}.pub").read_bytes().split()[:2])
    stale = f"[127.0.0.1]:{board_config.port} ".encode() + b" ".join(sshd.client_key.with_suffix(".pub").read_bytes().split()[:2])
    known_hosts.write_bytes(b"# mine\n" + other + b"\n" + BINARY_LINE + b"\n" + stale + b"\n")
    done = run_hostside(["boards", "trust", "loop", "--yes"])
    assert done.returncode == 0, done.stderr
    assert "replaces the trusted key" in done.stdout
    lines = known_hosts.read_bytes().split(b"\n")
    assert lines[:3] == [b"# mine", other, BINARY_LINE] and lines[-1] == b""
    assert [line for line in lines if line.startswith(f"[127.0.0.1]:{board_config.port} ".encode())] == [lines[3]]
    assert lines[3] != stale
    assert_one_warning(run_hostside(["boards", "check", "loop"]), f"{known_hosts}:3")


def test_encrypted_key_without_passphrase_is_named_as_encrypted(encrypted_board, encrypted_key, clean_env):
    done = run_hostside(["boards", "check", "loop"])
    line = assert_one_error_line(done, str(encrypted_key), "encrypted", "HOSTSIDE_SSH_PASSPHRASE", "ssh-add")
    assert "ssh-copy-id" not in line


def test_encrypted_key_with_the_passphrase_variable_works(encrypted_board, clean_env):
    done = run_hostside(["boards", "check", "loop"], env={"HOSTSIDE_SSH_PASSPHRASE": PASSPHRASE})
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_wrong_passphrase_is_one_line(encrypted_board, encrypted_key, clean_env):
    done = run_hostside(["boards", "check", "loop"], env={"HOSTSIDE_SSH_PASSPHRASE": "not-it"})
    assert_one_error_line(done, "HOSTSIDE_SSH_PASSPHRASE", "does not decrypt", str(encrypted_key), "wrong passphrase")


def test_encrypted_key_held_by_ssh_agent_works(encrypted_board, encrypted_key, ssh_agent, tmp_path):
    """The agent gets a decrypted copy (what ``ssh-add`` does after asking the passphrase)."""
    copy = tmp_path / "decrypted_copy"
    copy.write_bytes(encrypted_key.read_bytes())
    copy.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-P", PASSPHRASE, "-N", "", "-f", str(copy)], check=True, capture_output=True)
    subprocess.run(["ssh-add", str(copy)], stdin=subprocess.DEVNULL, capture_output=True, check=True)
    done = run_hostside(["boards", "check", "loop"])
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_agent_without_that_key_still_names_the_key_as_encrypted(encrypted_board, encrypted_key, ssh_agent, sshd):
    subprocess.run(["ssh-add", str(sshd.client_key)], capture_output=True, check=True)
    assert_one_error_line(run_hostside(["boards", "check", "loop"]), "encrypted", str(encrypted_key))
