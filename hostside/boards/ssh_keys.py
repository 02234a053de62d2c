"""The keys of an SSH connection to a board: the host keys it is checked against and the
private key it logs in with.

* ``known_hosts`` files are read line by line here, not by paramiko's ``HostKeys.load``: that
  one raises on the first line it cannot decode (a ``UnicodeDecodeError`` for a binary line,
  an ``InvalidHostKey`` for bad base64), so one damaged line would stop every board. A bad
  line is skipped with one warning naming ``file:line``; a board whose own line was the bad
  one is then refused as unknown, never accepted.
* a passphrase-protected private key is decrypted with ``$HOSTSIDE_SSH_PASSPHRASE``, used
  through ssh-agent when the agent holds it, or asked for when stdin is a terminal; paramiko
  alone would report it as a key the board refused.
"""

from __future__ import annotations

import base64
import binascii
import getpass
import hmac
import os
import sys
import threading
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

import paramiko
from paramiko.hostkeys import HostKeyEntry

from hostside.errors import UserError

#: The passphrase of an encrypted ``--key`` (and of encrypted default keys), for scripts and
#: services that cannot be asked; ssh-agent is the safer way where one runs.
PASSPHRASE_ENV = "HOSTSIDE_SSH_PASSPHRASE"

_KEY_CLASSES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
_OPENSSH_BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"
_OPENSSH_END = "-----END OPENSSH PRIVATE KEY-----"
_OPENSSH_MAGIC = b"openssh-key-v1\0"


# -- known_hosts ---------------------------------------------------------------------------


class KnownHostsLine(NamedTuple):
    """One line as it was (bytes, for rewriting it unchanged) and the entry it holds, if any."""

    raw: bytes
    entry: Optional[HostKeyEntry]


class BadLine(NamedTuple):
    number: int
    why: str


_warned: Set[str] = set()
_warned_lock = threading.Lock()


def _parse_line(raw: bytes, number: int) -> Tuple[Optional[HostKeyEntry], Optional[str]]:
    """The entry on one line, or why the line is bad. Comments, blank lines, ``@`` marker lines
    and key types paramiko does not know are valid OpenSSH and yield neither."""
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "not text (binary data)"
    if not text or text.startswith("#") or text.startswith("@"):
        return None, None
    fields = text.split()
    if len(fields) < 3:
        return None, "not a known_hosts entry (it needs host names, a key type and a key)"
    try:
        # paramiko's parsers raise many types (InvalidHostKey, SSHException, ValueError, ...).
        return HostKeyEntry.from_line(" ".join(fields), number), None
    except Exception as exc:  # noqa: BLE001 - any failure means this one line is unusable
        return None, f"its {fields[1]} key does not decode ({type(exc).__name__})"


def read_known_hosts(path: Path) -> Tuple[List[KnownHostsLine], List[BadLine]]:
    """Every line of ``path`` with its entry, and the bad lines; a missing file is empty."""
    if not path.is_file():
        return [], []
    lines, bad = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        entry, why = _parse_line(raw, number)
        lines.append(KnownHostsLine(raw, entry))
        if why is not None:
            bad.append(BadLine(number, why))
    if lines and lines[-1].raw == b"":
        lines.pop()  # the split after the final newline
    return lines, bad


def warn_bad_lines(path: Path, bad: List[BadLine]) -> None:
    """One warning line per file and process: a search reconnects often, and the line stays
    bad until the user edits the file."""
    if not bad:
        return
    with _warned_lock:
        if str(path) in _warned:
            return
        _warned.add(str(path))
    first = bad[0]
    more = f" (and {len(bad) - 1} more bad line{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
    print(
        f"hostside: warning: skipped {path}:{first.number}: {first.why}{more}; fix or delete that line "
        "(a board whose key was on it is refused as unknown until trusted again)",
        file=sys.stderr,
    )


def load_known_hosts(keys: paramiko.HostKeys, path: Path) -> None:
    """Add the valid entries of ``path`` to ``keys`` (later lines win), warning about bad ones."""
    lines, bad = read_known_hosts(path)
    warn_bad_lines(path, bad)
    for line in lines:
        if line.entry is not None:
            for name in line.entry.hostnames:
                keys.add(name, line.entry.key.get_name(), line.entry.key)


def _names(pattern: str, host: str) -> bool:
    """Whether a known_hosts name (plain or ``|1|`` hashed, as ``ssh-keygen -H`` writes) is ``host``."""
    if pattern.startswith("|1|") and not host.startswith("|1|"):
        return hmac.compare_digest(paramiko.HostKeys.hash_host(host, pattern), pattern)
    return pattern == host


def _without_host(lines: Iterable[KnownHostsLine], host: str) -> List[bytes]:
    """The lines unchanged, except that ``host`` is taken off the entries that name it (an
    entry naming only it goes): bad lines and comments stay, they are the user's to fix."""
    kept = []
    for line in lines:
        if line.entry is None or not any(_names(name, host) for name in line.entry.hostnames):
            kept.append(line.raw)
            continue
        others = [name for name in line.entry.hostnames if not _names(name, host)]
        if others:
            kept.append(HostKeyEntry(others, line.entry.key).to_line().rstrip("\n").encode())
    return kept


def record_host_key(path: Path, host: str, key: paramiko.PKey) -> None:
    """Make ``key`` the only key of ``host`` in ``path``, keeping every other line as it was;
    written to a temporary file and renamed, so an interruption never leaves half a file."""
    lines, bad = read_known_hosts(path)
    warn_bad_lines(path, bad)
    kept = _without_host(lines, host)
    kept.append(HostKeyEntry([host], key).to_line().rstrip("\n").encode())
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"\n".join(kept) + b"\n")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# -- private keys --------------------------------------------------------------------------


#: Keys decrypted with a passphrase, by path: a reconnect must not ask again (or run bcrypt again).
_decrypted: Dict[str, paramiko.PKey] = {}
_decrypt_lock = threading.Lock()


def _load(path: Path, passphrase: Optional[str]) -> paramiko.PKey:
    """The key in ``path`` of whichever type it is, as SSHClient tries them. Raises
    PasswordRequiredException when it is encrypted and ``passphrase`` is None, and the last
    type's SSHException when no type reads it (wrong passphrase, not a private key)."""
    failure: Exception = paramiko.SSHException("no key type matches")
    for key_class in _KEY_CLASSES:
        try:
            return key_class.from_private_key_file(str(path), passphrase)
        except paramiko.PasswordRequiredException:
            raise
        except (paramiko.SSHException, ValueError, TypeError, IndexError) as exc:
            failure = exc
    raise failure


def _public_blob(path: Path) -> Optional[bytes]:
    """The public half of a private key without its passphrase, to find it in ssh-agent: the
    OpenSSH format stores it in clear; older PEM files have the ``.pub`` file beside them."""
    try:
        text = path.read_text(errors="replace")
        if _OPENSSH_BEGIN in text and _OPENSSH_END in text:
            body = text.split(_OPENSSH_BEGIN, 1)[1].split(_OPENSSH_END, 1)[0]
            data = base64.b64decode("".join(body.split()))
            if data.startswith(_OPENSSH_MAGIC):
                message = paramiko.Message(data[len(_OPENSSH_MAGIC):])
                for _ in range(3):  # cipher name, KDF name, KDF options
                    message.get_string()
                if message.get_int() >= 1:
                    return message.get_binary()
        fields = Path(f"{path}.pub").read_text().split()
        return base64.b64decode(fields[1]) if len(fields) >= 2 else None
    except (OSError, ValueError, binascii.Error, IndexError):
        return None


def _agent_key(path: Path) -> Optional[paramiko.PKey]:
    """The agent's copy of the key in ``path``, or None (no agent, or it does not hold it).
    Only that key: an explicit ``--key`` means that key, as with ``IdentitiesOnly``."""
    if not os.environ.get("SSH_AUTH_SOCK"):
        return None
    blob = _public_blob(path)
    if blob is None:
        return None
    try:
        keys = paramiko.Agent().get_keys()
    except (paramiko.SSHException, OSError, EOFError):
        return None
    return next((key for key in keys if key.asbytes() == blob), None)


def _can_prompt() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _decrypt(board: str, path: Path, passphrase: str, source: str) -> paramiko.PKey:
    try:
        return _load(path, passphrase)
    except (paramiko.SSHException, ValueError, TypeError, IndexError):
        raise UserError(
            f"board {board!r}: {source} does not decrypt the SSH key {path} (wrong passphrase, or a damaged key file); "
            f"check it, or add the key to ssh-agent with `ssh-add {path}`"
        ) from None


def _ask(board: str, path: Path) -> str:
    try:
        return getpass.getpass(f"passphrase for SSH key {path}: ")
    except EOFError:
        raise UserError(f"board {board!r}: no passphrase given for the SSH key {path}") from None


def _encrypted_key(board: str, path: Path) -> paramiko.PKey:
    """An encrypted key made usable: ``$HOSTSIDE_SSH_PASSPHRASE`` first (set on purpose), then
    ssh-agent, then a prompt on a terminal; else one line saying how to give the passphrase."""
    passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase:
        return _decrypt(board, path, passphrase, f"the passphrase in ${PASSPHRASE_ENV}")
    agent_key = _agent_key(path)
    if agent_key is not None:
        return agent_key
    if _can_prompt():
        return _decrypt(board, path, _ask(board, path), "the passphrase typed")
    raise UserError(
        f"board {board!r}: the SSH key {path} is encrypted (passphrase-protected) and no passphrase was given; "
        f"add it to ssh-agent (`ssh-add {path}`), set {PASSPHRASE_ENV} to its passphrase, or run from a terminal to be asked"
    )


def private_key(board: str, path: Path) -> paramiko.PKey:
    """The login key of ``board`` from ``path``, decrypted where it needs it; one UserError
    line when it cannot be had."""
    with _decrypt_lock:  # concurrent connects of a pool ask for a passphrase once
        if str(path) in _decrypted:
            return _decrypted[str(path)]
        try:
            return _load(path, None)
        except paramiko.PasswordRequiredException:
            key = _encrypted_key(board, path)
        except OSError as exc:
            raise UserError(f"board {board!r}: cannot read the SSH key {path} ({exc.strerror or exc}); check its permissions") from None
        except (paramiko.SSHException, ValueError, TypeError, IndexError):
            raise UserError(
                f"board {board!r}: {path} is not a private key hostside can read (OpenSSH, PEM: ed25519, ECDSA or RSA); "
                f"give the private key file, not the .pub (`hostside boards remove {board}` and `hostside boards add ... --key PATH`)"
            ) from None
        if not isinstance(key, paramiko.AgentKey):
            _decrypted[str(path)] = key
        return key


def default_keys_encrypted_error(board: str) -> UserError:
    """For a login with the default keys where paramiko found one encrypted and none worked."""
    return UserError(
        f"board {board!r}: your default SSH key in ~/.ssh is encrypted (passphrase-protected) and no key was accepted; "
        f"add it to ssh-agent (`ssh-add`), set {PASSPHRASE_ENV} to its passphrase, or name the key with "
        f"`hostside boards add ... --key PATH` to be asked for it on a terminal"
    )
