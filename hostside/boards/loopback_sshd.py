"""A throwaway OpenSSH server on 127.0.0.1, for tests, benchmarks and trying the tools out.

It runs as the current user with its own host key, client key and config in one directory
(``sshd -D -e -f cfg``), so nothing of the machine's SSH setup is touched; the "board" it
offers is this machine. Needs ``openssh-server`` (``apt-get install -y openssh-server``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def sshd_binary() -> Optional[str]:
    found = shutil.which("sshd")
    return found or next((c for c in SSHD_CANDIDATES if os.path.exists(c)), None)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class LoopbackSshd:
    """``with LoopbackSshd(directory) as sshd:`` -> ``sshd.port``, ``sshd.client_key``."""

    def __init__(self, directory: Path, sftp: bool = True) -> None:
        """``sftp=False`` offers no SFTP subsystem, like dropbear or a minimal Buildroot board."""
        binary = sshd_binary()
        if binary is None:
            raise RuntimeError("sshd not found; install it with `apt-get install -y openssh-server`")
        self.binary = binary
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.client_key = self.directory / "client_ed25519"
        self.sftp = sftp
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "LoopbackSshd":
        host_key = keygen(self.directory / "host_ed25519")
        keygen(self.client_key)
        authorized = self.directory / "authorized_keys"
        shutil.copy(self.client_key.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)
        sftp_server = Path(self.binary).parent.parent / "lib/openssh/sftp-server"
        config = self.directory / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "UsePAM no",
                    "AllowTcpForwarding yes",
                    "PidFile none",
                    f"Subsystem sftp {sftp_server}" if self.sftp else "",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege-separation directory
        self.process = subprocess.Popen([self.binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise
        return self

    def connection_pids(self) -> List[int]:
        """sshd processes serving connections: the listener's sshd descendants."""
        assert self.process is not None
        parents: Dict[int, int] = {}
        names: Dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            names[int(entry.name)] = stat[stat.index("(") + 1 : stat.rindex(")")]
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        found, frontier = [], [self.process.pid]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and names[pid] == "sshd":
                    found.append(pid)
                    frontier.append(pid)
        return found

    def cut_connections(self) -> int:
        """Kill every live SSH connection, as a dropped link would, leaving the listener up."""
        pids = self.connection_pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> "LoopbackSshd":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
