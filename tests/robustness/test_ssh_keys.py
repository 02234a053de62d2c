"""SSH keys a careless user gives: a damaged known_hosts line, an encrypted login key without
its passphrase or with a wrong one, a public key given as the private one. Each is one line,
found before any connection (these tests need no sshd: the board's port is closed)."""

from __future__ import annotations

import getpass
import subprocess
import sys
from pathlib import Path
from typing import Dict

import paramiko
import pytest

from robustness_helpers import assert_one_error_line, run_cli

PASSPHRASE = "secret"


def _keygen(path: Path, passphrase: str = "") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-f", str(path)], check=True)
    return path


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dict[str, str]:
    """A private HOSTSIDE_HOME and ~, no agent and no passphrase, for this process and the CLI."""
    values = {"HOSTSIDE_HOME": str(tmp_path / "home"), "HOME": str(tmp_path / "user")}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    for name in ("SSH_AUTH_SOCK", "HOSTSIDE_SSH_PASSPHRASE"):
        monkeypatch.delenv(name, raising=False)
    return values


@pytest.fixture
def encrypted_key(tmp_path: Path) -> Path:
    return _keygen(tmp_path / "encrypted_ed25519", PASSPHRASE)


def _config(key: Path):
    from hostside.boards.inventory import BoardConfig

    return BoardConfig(name="nowhere", host="127.0.0.1", port=1, user="pi", key=str(key), retries=0)


def _add_board(env: Dict[str, str], key: Path) -> None:
    """Straight into the inventory (``env`` is already this process's): what ``boards add``
    accepts is not under test here."""
    from hostside.boards import inventory

    inventory.add(_config(key))


def test_wrong_passphrase_in_the_variable_is_one_line(env, encrypted_key):
    _add_board(env, encrypted_key)
    done = run_cli(["boards", "check", "nowhere"], env={**env, "HOSTSIDE_SSH_PASSPHRASE": "not-it"})
    assert_one_error_line(done, "HOSTSIDE_SSH_PASSPHRASE", "does not decrypt", str(encrypted_key))


def test_right_passphrase_gets_as_far_as_the_network(env, encrypted_key):
    _add_board(env, encrypted_key)
    done = run_cli(["boards", "check", "nowhere"], env={**env, "HOSTSIDE_SSH_PASSPHRASE": PASSPHRASE})
    assert_one_error_line(done, "connection refused")


def test_public_key_given_as_the_key_is_one_line(env, tmp_path):
    public = Path(f"{_keygen(tmp_path / 'plain')}.pub")
    _add_board(env, public)
    assert_one_error_line(run_cli(["boards", "check", "nowhere"], env=env), str(public), "not a private key", ".pub")


def test_encrypted_key_without_a_terminal_says_how_to_give_the_passphrase(env, encrypted_key, monkeypatch):
    from hostside.boards import ssh, ssh_keys
    from hostside.errors import UserError

    monkeypatch.setattr(ssh_keys, "_can_prompt", lambda: False)
    with pytest.raises(UserError) as caught:
        ssh.connect(_config(encrypted_key))
    message = str(caught.value)
    assert "encrypted" in message and "HOSTSIDE_SSH_PASSPHRASE" in message and f"ssh-add {encrypted_key}" in message
    assert "ssh-copy-id" not in message and "\n" not in message


def test_passphrase_is_asked_on_a_terminal_once(env, encrypted_key, monkeypatch):
    from hostside.boards import ssh_keys

    asked = []
    monkeypatch.setattr(ssh_keys, "_can_prompt", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: asked.append(prompt) or PASSPHRASE)
    monkeypatch.setattr(ssh_keys, "_decrypted", {})
    first = ssh_keys.private_key("nowhere", encrypted_key)
    assert ssh_keys.private_key("nowhere", encrypted_key) is first  # a reconnect does not ask again
    assert len(asked) == 1 and str(encrypted_key) in asked[0]
    assert isinstance(first, paramiko.Ed25519Key)


def test_wrong_passphrase_typed_is_one_line(env, encrypted_key, monkeypatch):
    from hostside.boards import ssh_keys
    from hostside.errors import UserError

    monkeypatch.setattr(ssh_keys, "_can_prompt", lambda: True)
    monkeypatch.setattr(getpass, "getpass", lambda prompt: "not-it")
    monkeypatch.setattr(ssh_keys, "_decrypted", {})
    with pytest.raises(UserError, match="the passphrase typed does not decrypt"):
        ssh_keys.private_key("nowhere", encrypted_key)


def _host_line(host: str, key_path: Path) -> bytes:
    return host.encode() + b" " + b" ".join(Path(f"{key_path}.pub").read_bytes().split()[:2])


def test_damaged_lines_are_one_warning_and_the_good_ones_load(tmp_path, capsys, monkeypatch):
    from hostside.boards import ssh_keys

    monkeypatch.setattr(ssh_keys, "_warned", set())
    known_hosts = tmp_path / "known_hosts"
    good = _host_line("[10.0.0.5]:2222", _keygen(tmp_path / "host"))
    known_hosts.write_bytes(b"\n".join([b"# comment", b"\xff\xfe binary", good, b"garbage", b"h ssh-ed25519 Zm9v", b""]))
    keys = paramiko.HostKeys()
    ssh_keys.load_known_hosts(keys, known_hosts)
    ssh_keys.load_known_hosts(keys, known_hosts)  # once per file and process
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("hostside: warning: ")
    assert f"{known_hosts}:2" in err and "binary" in err and "2 more bad lines" in err
    assert keys.lookup("[10.0.0.5]:2222") is not None


def test_trust_replaces_a_hashed_entry_and_keeps_the_rest(env, tmp_path, capsys):
    from hostside.boards import ssh

    config = _config(tmp_path / "unused")
    known_hosts = ssh.known_hosts_path()
    known_hosts.parent.mkdir(parents=True, exist_ok=True)
    other = _host_line("[10.0.0.5]:2222", _keygen(tmp_path / "other"))
    known_hosts.write_bytes(_host_line("[127.0.0.1]:1", _keygen(tmp_path / "old")) + b"\n" + other + b"\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known_hosts)], check=True, capture_output=True)
    hashed = known_hosts.read_bytes()
    assert b"127.0.0.1" not in hashed
    new_key = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "new")))
    ssh.trust(config, new_key)
    lines = known_hosts.read_bytes().splitlines()
    assert len(lines) == 2 and lines[0] == hashed.splitlines()[1]  # the other host's line, untouched
    assert ssh.trusted_key(config) == new_key
    assert capsys.readouterr().err == ""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_trust_writes_a_private_file(env, tmp_path):
    from hostside.boards import ssh

    key = paramiko.Ed25519Key.from_private_key_file(str(_keygen(tmp_path / "new")))
    path = ssh.trust(_config(tmp_path / "unused"), key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["known_hosts"]
