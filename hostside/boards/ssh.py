"""SSH to a board with paramiko, guarded against its known traps.

* ``recv_exit_status()`` waits forever and ignores channel timeouts: commands here are polled
  with ``select`` against our own deadline instead.
* stdout and stderr are drained together, so a chatty command cannot fill one window and
  deadlock while we block on the other.
* a peer that vanishes without closing TCP would block a read forever: the socket has TCP
  keepalives, the transport sends SSH keepalives, and every wait has a deadline.
* on a deadline the agent's own process group on the board is killed (it reports its id).
* host keys are verified against ``$HOSTSIDE_HOME/known_hosts`` (and ``~/.ssh/known_hosts``);
  an unknown key is refused with its fingerprint and the command that trusts it. Both files
  are read by ``ssh_keys``, which skips a damaged line with one warning instead of failing.
* an encrypted ``--key`` is decrypted by ``ssh_keys`` (passphrase variable, ssh-agent, prompt)
  before connecting, so it is never mistaken for a key the board refused.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import shlex
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import paramiko

from hostside.boards import ssh_keys
from hostside.boards.inventory import SYSTEM_DAEMON_TOKEN, BoardConfig
from hostside.boards.transport import Cancelled, CommandTimeout, ExecResult, LinkDown, Transport, agent_env, split_pgid
from hostside.errors import UserError
from hostside.paths import hostside_home

# paramiko logs a refused channel ("Secsh channel 1 open FAILED") at ERROR level, which with
# no handler reaches stderr through logging's last resort; every such case is handled here
# (a missing daemon means one-shot), so its log stays quiet unless a caller configures logging.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

KEEPALIVE_S = 5
CONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)
SELECT_SLICE_S = 0.2
EXEC_UPLOAD_BLOCK_BYTES = 1 << 16
#: Writes a file from stdin under a temporary name, checks its size, then renames it: the
#: exec-channel upload for boards without SFTP, with POSIX sh, cat, wc and mv only.
_EXEC_PUT_SCRIPT = 'cat > "$1" && n=$(wc -c < "$1") && [ "$n" -eq "$2" ] && mv -f -- "$1" "$3"'
#: ``sh -c`` script of every command: the shell waits on it, so a death by signal comes back as
#: exit status 128+N (paramiko ignores the SSH "exit-signal" message).
_RUN_SCRIPT = '"$@"; exit $?'
#: The same, run only when the file named first exists; else this status and stderr line.
_NO_FILE_STATUS = 66
_NO_FILE_MARK = "hostside-no-such-file"
_RUN_IF_FILE_SCRIPT = f'[ -f "$1" ] || {{ echo {_NO_FILE_MARK} >&2; exit {_NO_FILE_STATUS}; }}; shift; {_RUN_SCRIPT}'


def home_relative(path: str) -> str:
    """A board path as the SSH user's commands and SFTP read it: relative ones (and ``~/...``)
    from the user's home, where every exec channel and SFTP session starts. Resolving them to
    absolute paths would cost a round trip per connection, which a fresh one-shot command pays
    on top of the measurement (a shell start on the board, ~0.1 s where the login shell's rc
    file is slow)."""
    return path[2:] if path.startswith("~/") else path


def _command_line(argv: List[str], env: Optional[Dict[str, str]], script: str = _RUN_SCRIPT) -> str:
    """``env K=V... sh -c SCRIPT sh ARGV...`` with every part quoted: callers never pass shell text."""
    assignments = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(["env", *assignments, "sh", "-c", shlex.quote(script), "sh", *map(shlex.quote, argv)])


def known_hosts_path() -> Path:
    return hostside_home() / "known_hosts"


def system_known_hosts_path() -> Path:
    """OpenSSH's own list, read (never written) so boards already known to ``ssh`` work."""
    return Path.home() / ".ssh" / "known_hosts"


def _load_host_keys(client: paramiko.SSHClient) -> None:
    """Both files into the client's host keys, hostside's last, so a key recorded by
    ``boards trust`` replaces a stale one of the same type in ``~/.ssh/known_hosts``."""
    for path in (system_known_hosts_path(), known_hosts_path()):
        ssh_keys.load_known_hosts(client.get_host_keys(), path)


def host_entry(host: str, port: int) -> str:
    """known_hosts spelling: ``host`` on port 22, ``[host]:port`` otherwise (as OpenSSH writes it)."""
    return host if port == 22 else f"[{host}]:{port}"


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint, the form ``ssh-keygen -lf`` prints."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(paramiko.SSHException):
    def __init__(self, hostname: str, key: paramiko.PKey) -> None:
        super().__init__(hostname)
        self.hostname = hostname
        self.key = key


class _RefuseUnknownHost(paramiko.MissingHostKeyPolicy):
    """Refuse like RejectPolicy, but keep the key so the message can show its fingerprint."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(hostname, key)


def _keepalive_socket(host: str, port: int, timeout_s: float) -> socket.socket:
    """TCP connection with kernel keepalives, so a dead peer is noticed within ~30 s."""
    sock = socket.create_connection((host, port), timeout=timeout_s)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    return sock


def _connect_error(config: BoardConfig, exc: BaseException) -> UserError:
    where = f"{config.host}:{config.port}"
    if isinstance(exc, UnknownHostKey):
        return UserError(
            f"board {config.name!r} ({where}) presented an unknown host key {exc.key.get_name()} {fingerprint(exc.key)}; "
            f"if that is the board's key, trust it with `hostside boards trust {config.name}`"
        )
    if isinstance(exc, paramiko.BadHostKeyException):
        return UserError(
            f"board {config.name!r} ({where}) presented a host key {fingerprint(exc.key)} that differs from the trusted one: "
            f"possibly an attack; if the board was reinstalled, trust the new key with `hostside boards trust {config.name}`"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):  # a default key; --key is decrypted before
        return ssh_keys.default_keys_encrypted_error(config.name)
    if isinstance(exc, paramiko.AuthenticationException):
        key = config.key or "your default SSH keys"
        return UserError(
            f"board {config.name!r} refused {key} for user {config.user!r}; install the public key on the board "
            f"(ssh-copy-id -p {config.port} {config.user}@{config.host}) or fix --key/--user with "
            f"`hostside boards remove {config.name}` and `hostside boards add`"
        )
    if isinstance(exc, socket.gaierror):
        return UserError(f"board {config.name!r}: host name {config.host!r} does not resolve; check --host")
    if isinstance(exc, (ConnectionRefusedError, paramiko.ssh_exception.NoValidConnectionsError)):
        return UserError(
            f"board {config.name!r}: nothing accepts SSH at {where} (connection refused); "
            "check that the board is on and sshd runs, and that --port is right"
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return UserError(f"board {config.name!r}: no answer from {where} within {config.connect_timeout_s:.0f} s; check the address and network")
    if isinstance(exc, OSError):
        return UserError(f"board {config.name!r}: cannot reach {where} ({exc.strerror or exc}); check the address and network")
    return UserError(f"board {config.name!r}: SSH to {where} failed ({exc}); check the address, user and key")


_RETRYABLE = (ConnectionRefusedError, socket.timeout, TimeoutError, paramiko.ssh_exception.NoValidConnectionsError, EOFError)


def _auth_options(config: BoardConfig) -> Dict[str, Any]:
    """``SSHClient.connect`` arguments for logging in. An explicit key is loaded (and
    decrypted) here, once for all attempts, and used alone; without one, paramiko tries
    ssh-agent and the default keys, with the passphrase variable for encrypted ones."""
    if config.key:
        pkey = ssh_keys.private_key(config.name, Path(config.key).expanduser())
        return {"pkey": pkey, "look_for_keys": False, "allow_agent": False}
    return {"look_for_keys": True, "allow_agent": True, "passphrase": os.environ.get(ssh_keys.PASSPHRASE_ENV) or None}


def connect(config: BoardConfig) -> paramiko.SSHClient:
    """An authenticated client with host keys verified; retries transient failures with backoff."""
    if config.key:
        key = Path(config.key).expanduser()
        if not key.is_file():
            state = "is a directory, not a key file" if key.is_dir() else "does not exist"
            raise UserError(
                f"board {config.name!r}: the SSH key {key} {state}; give the private key file "
                f"(`hostside boards remove {config.name}` and `hostside boards add ... --key PATH`)"
            )
    auth = _auth_options(config)
    attempts = max(1, config.retries + 1)
    for attempt in range(attempts):
        client = paramiko.SSHClient()
        _load_host_keys(client)
        client.set_missing_host_key_policy(_RefuseUnknownHost())
        try:
            sock = _keepalive_socket(config.host, config.port, config.connect_timeout_s)
            client.connect(
                config.host,
                port=config.port,
                username=config.user,
                **auth,
                timeout=config.connect_timeout_s,
                banner_timeout=config.connect_timeout_s,
                auth_timeout=config.connect_timeout_s,
                sock=sock,
            )
        except _RETRYABLE as exc:
            client.close()
            if attempt + 1 == attempts:
                raise _connect_error(config, exc) from None
            time.sleep(CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)])
            continue
        except (paramiko.SSHException, OSError) as exc:
            client.close()
            raise _connect_error(config, exc) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(KEEPALIVE_S)
        return client
    raise AssertionError("unreachable")


def fetch_host_key(config: BoardConfig) -> paramiko.PKey:
    """The key the board presents, without authenticating (for ``boards trust``)."""
    try:
        sock = _keepalive_socket(config.host, config.port, config.connect_timeout_s)
        transport = paramiko.Transport(sock)
        try:
            transport.start_client(timeout=config.connect_timeout_s)
            return transport.get_remote_server_key()
        finally:
            transport.close()
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _connect_error(config, exc) from None


def trusted_key(config: BoardConfig) -> Optional[paramiko.PKey]:
    keys = paramiko.HostKeys()
    ssh_keys.load_known_hosts(keys, known_hosts_path())
    found = keys.lookup(host_entry(config.host, config.port)) or {}
    return next(iter(found.values()), None)


def trust(config: BoardConfig, key: paramiko.PKey) -> Path:
    """Record ``key`` as the board's host key in ``$HOSTSIDE_HOME/known_hosts`` (replacing any
    old one), keeping every other line of the file as it was."""
    path = known_hosts_path()
    ssh_keys.record_host_key(path, host_entry(config.host, config.port), key)
    return path


class SSHTransport(Transport):
    """One SSH connection to one board: commands with deadlines, file upload (SFTP, or the
    exec channel where the board has no SFTP subsystem), daemon channel."""

    def __init__(self, config: BoardConfig) -> None:
        self.config = config
        self.name = config.name
        self.python = config.python
        self.client = connect(config)
        self._sftp: Optional[paramiko.SFTPClient] = None
        #: True once the board refused the SFTP subsystem: files then travel over exec channels.
        self.sftp_missing = False
        self._token: Optional[str] = None
        #: Why the daemon's token could not be read, for ``boards check``; None when it could.
        self.token_problem: Optional[str] = None
        self.agent_dir = home_relative(config.agent_dir)
        self.cancelled = threading.Event()

    def _transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise LinkDown(f"SSH connection to {self.name} is closed")
        return transport

    def is_alive(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def sftp(self) -> Optional[paramiko.SFTPClient]:
        """The SFTP session, or None on a board without the SFTP subsystem (dropbear, some
        Buildroot images): then files go over the exec channel (``_exec_put``) instead."""
        if self._sftp is None and not self.sftp_missing:
            try:
                self._sftp = self.client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not self.is_alive():
                    raise LinkDown(f"cannot open SFTP on {self.name}: {exc}") from None
                self.sftp_missing = True  # the connection is fine: the board has no SFTP server
                return None
            self._sftp.get_channel().settimeout(self.config.connect_timeout_s * 3)
        return self._sftp

    def absolute_path(self, path: str) -> str:
        """``path`` with the SSH user's home put in front of a relative one, for what is read
        outside a session on the board (a systemd unit, a report)."""
        path = home_relative(path)
        if path.startswith("/"):
            return path
        result = self._exec('printf "%s" "$HOME"', self.config.connect_timeout_s)
        home = result.stdout.strip()
        if result.returncode != 0 or not home.startswith("/"):
            raise LinkDown(f"cannot find the home directory on {self.name}: {result.stderr.strip()[:200]}")
        return f"{home.rstrip('/')}/{path}"

    def run(self, argv: List[str], timeout_s: float, env: Optional[Dict[str, str]] = None) -> ExecResult:
        """Run a command (a list, quoted here, never a shell string from callers) with a deadline."""
        return self._exec(_command_line(argv, env), timeout_s)

    def _exec(self, command: str, timeout_s: float, stdin_file: Optional[Path] = None, cancellable: bool = True) -> ExecResult:
        """Run a shell command line; ``stdin_file`` is streamed to its stdin, then EOF. Without
        one, stdin stays open while the command runs: the agent stops when it ends (the host
        or this session died, or ``cancelled`` was set and the channel closed)."""
        try:
            channel = self._transport().open_session(timeout=self.config.connect_timeout_s)
            channel.exec_command(command)
            if stdin_file is not None:
                with open(stdin_file, "rb") as handle:
                    for block in iter(lambda: handle.read(EXEC_UPLOAD_BLOCK_BYTES), b""):
                        channel.sendall(block)
                channel.shutdown_write()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LinkDown(f"cannot start a command on {self.name}: {exc}") from None
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                while channel.recv_ready():
                    out += channel.recv(65536)
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if not self.is_alive() or (channel.closed and not channel.exit_status_ready()):
                    raise LinkDown(f"the SSH connection to {self.name} dropped during a command")
                if time.monotonic() > deadline:
                    self._kill_group(split_pgid(err.decode("utf-8", "replace"))[0])
                    raise CommandTimeout(f"command on {self.name} ran longer than {timeout_s:.0f} s; its process group was killed")
                if cancellable and self.cancelled.is_set():
                    self._kill_group(split_pgid(err.decode("utf-8", "replace"))[0])
                    raise Cancelled(f"command on {self.name} called off; its process group was killed")
                select.select([channel], [], [], SELECT_SLICE_S)
            status = channel.recv_exit_status()  # already known: exit_status_ready() was true
            if status == -1:  # paramiko's value for a channel closed without an exit status
                raise LinkDown(f"the SSH channel to {self.name} closed before the command finished")
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise LinkDown(f"the SSH connection to {self.name} dropped: {exc}") from None
        finally:
            channel.close()
        return ExecResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _kill_group(self, pgid: Optional[int]) -> None:
        """Best effort: stop the overrunning measurement so it does not hold the board's lock."""
        if pgid is None or pgid <= 1:
            return
        try:
            self._exec(f"kill -KILL -- -{int(pgid)} 2>/dev/null; true", self.config.connect_timeout_s, cancellable=False)
        except (LinkDown, CommandTimeout):
            pass

    def run_agent(self, args: List[str], timeout_s: float) -> ExecResult:
        result = self.run([self.python, "-m", "device_agent", *args], timeout_s, agent_env(self.agent_dir))
        result.stderr = split_pgid(result.stderr)[1]
        return result

    def run_agent_on_file(self, args: List[str], remote_path: str, timeout_s: float) -> Optional[ExecResult]:
        """One exec channel for the check and the run: each channel starts a shell on the board."""
        argv = [remote_path, self.python, "-m", "device_agent", *args]
        result = self._exec(_command_line(argv, agent_env(self.agent_dir), _RUN_IF_FILE_SCRIPT), timeout_s)
        if result.returncode == _NO_FILE_STATUS and _NO_FILE_MARK in result.stderr:
            return None
        result.stderr = split_pgid(result.stderr)[1]
        return result

    def has_file(self, remote_path: str) -> bool:
        sftp = self.sftp()
        if sftp is None:
            return self._exec(f"test -f {shlex.quote(remote_path)}", self.config.connect_timeout_s).returncode == 0
        try:
            return stat.S_ISREG(sftp.stat(remote_path).st_mode or 0)
        except FileNotFoundError:
            return False
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise LinkDown(f"SFTP stat on {self.name} failed: {exc}") from None

    def makedirs(self, remote_dir: str) -> None:
        sftp = self.sftp()
        if sftp is None:
            done = self._exec(f"mkdir -p -- {shlex.quote(remote_dir)}", self.config.connect_timeout_s)
            if done.returncode != 0:
                raise UserError(f"board {self.name!r}: cannot create {remote_dir} ({done.stderr.strip()[:200]}); check agent_dir in boards.toml")
            return
        root = "/" if remote_dir.startswith("/") else ""  # a relative one starts in the user's home
        parts = [part for part in remote_dir.split("/") if part]
        for depth in range(1, len(parts) + 1):
            current = root + "/".join(parts[:depth])
            try:
                sftp.stat(current)
            except FileNotFoundError:
                sftp.mkdir(current)

    def put_file(self, local_path: Path, remote_path: str) -> None:
        """Upload to a temporary name and rename, so a dropped link never leaves a truncated model."""
        partial = remote_path + ".part"
        try:
            self.makedirs(remote_path.rsplit("/", 1)[0])
            sftp = self.sftp()
            if sftp is None:
                self._exec_put(local_path, partial, remote_path)
                return
            sftp.put(str(local_path), partial)
            sftp.posix_rename(partial, remote_path)
        except (OSError, paramiko.SSHException, EOFError) as exc:
            if isinstance(exc, PermissionError):
                raise UserError(f"board {self.name!r}: cannot write {remote_path} ({exc}); check agent_dir in boards.toml") from None
            raise LinkDown(f"upload to {self.name} failed: {exc}") from None

    def _exec_put(self, local_path: Path, partial: str, remote_path: str) -> None:
        """Stream the file into ``cat`` over an exec channel (no SFTP on the board)."""
        size = Path(local_path).stat().st_size
        args = " ".join(shlex.quote(a) for a in (partial, str(size), remote_path))
        timeout_s = self.config.connect_timeout_s * 3 + size / 1e6  # at least ~1 MB/s
        done = self._exec(f"sh -c {shlex.quote(_EXEC_PUT_SCRIPT)} sh {args}", timeout_s, stdin_file=Path(local_path))
        if done.returncode != 0:
            self._exec(f"rm -f -- {shlex.quote(partial)}", self.config.connect_timeout_s)
            reason = done.stderr.strip()[:200] or f"{size} bytes sent, a different size arrived"
            if "ermission denied" in reason:
                raise UserError(f"board {self.name!r}: cannot write {remote_path} ({reason}); check agent_dir in boards.toml")
            raise LinkDown(f"upload to {self.name} over the exec channel failed: {reason}")

    def open_daemon(self, port: int) -> Optional[paramiko.Channel]:
        """A direct-tcpip channel to the daemon on the board's loopback, or None if none listens."""
        try:
            return self._transport().open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=self.config.connect_timeout_s
            )
        except paramiko.ChannelException:
            return None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise LinkDown(f"cannot open a channel to {self.name}: {exc}") from None

    def token_candidates(self) -> List[str]:
        if self.config.daemon_token:
            return [home_relative(self.config.daemon_token)]
        return [f"{self.agent_dir.rstrip('/')}/daemon.token", SYSTEM_DAEMON_TOKEN]

    def daemon_token(self, refresh: bool = False) -> Optional[str]:
        """The daemon's token, read once per connection with the SSH user's own rights: who
        may read the file (the agent's user, or its group with ``--token-mode 0640``) may
        measure through the daemon (deploy/SECURITY.md)."""
        if self._token is not None and not refresh:
            return self._token
        candidates = " ".join(shlex.quote(c) for c in self.token_candidates())
        script = f'for f in {candidates}; do if [ -e "$f" ]; then head -c 200 -- "$f" 2>&1 && exit 0; exit 3; fi; done; exit 4'
        result = self._exec(f"sh -c {shlex.quote(script)}", self.config.connect_timeout_s)
        token = result.stdout.strip()
        if result.returncode == 0 and len(token) == 64 and all(c in "0123456789abcdef" for c in token):
            self._token, self.token_problem = token, None
            return token
        self._token = None
        if result.returncode == 4:
            self.token_problem = f"no daemon token at {' or '.join(self.token_candidates())}; set daemon_token for this board in boards.toml"
        else:
            self.token_problem = (
                f"user {self.config.user!r} cannot read the daemon's token ({(result.stdout + result.stderr).strip()[:120]}); "
                "add the user to the agent's group and run the daemon with --token-mode 0640 (deploy/SECURITY.md)"
            )
        return None

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()
