"""How the host runs the agent on a board: a command runner plus file upload.

A board is reached either directly (``local``: this machine, subprocesses) or over SSH
(:mod:`hostside.boards.ssh`). Both offer the same small interface, so the measuring code above
them is one path, as in TVM where a local run takes the same route as a remote one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import device_agent

PGID_PREFIX = "device-agent-pgid "


class LinkDown(Exception):
    """The connection to the board broke; the operation may be retried on a new one."""


class CommandTimeout(Exception):
    """A command overran its deadline; its process group on the board was killed."""


class Cancelled(Exception):
    """The command was called off (``Transport.cancel``) because whoever asked for it is gone."""


@dataclass
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def agent_env(agent_dir: str) -> Dict[str, str]:
    """Environment for the agent: its home (model cache, lock) and its copied package."""
    return {
        "DEVICE_AGENT_HOME": agent_dir,
        "PYTHONPATH": agent_dir.rstrip("/") + "/lib",
        "DEVICE_AGENT_REPORT_PGID": "1",
        # The agent stops when its stdin ends, i.e. when this host process or its SSH session dies.
        "DEVICE_AGENT_EXIT_WITH_STDIN": "1",
    }


def split_pgid(stderr: str) -> "tuple[Optional[int], str]":
    """Separate the agent's process-group line from the rest of stderr."""
    pgid, rest = None, []
    for line in stderr.splitlines():
        if line.startswith(PGID_PREFIX) and pgid is None:
            try:
                pgid = int(line[len(PGID_PREFIX):])
                continue
            except ValueError:
                pass
        rest.append(line)
    return pgid, "\n".join(rest)


class Transport:
    """What a runner needs from a board connection."""

    name: str
    python: str
    agent_dir: str

    #: Set from another thread to call off the running command (it raises :class:`Cancelled`
    #: and its process on the board ends with its channel); None where commands cannot be
    #: called off (``local``, whose commands die with this process anyway).
    cancelled: Optional[threading.Event] = None

    def run_agent(self, args: List[str], timeout_s: float) -> ExecResult:
        raise NotImplementedError

    def run(self, argv: List[str], timeout_s: float, env: Optional[Dict[str, str]] = None) -> ExecResult:
        raise NotImplementedError

    def has_file(self, remote_path: str) -> bool:
        raise NotImplementedError

    def run_agent_on_file(self, args: List[str], remote_path: str, timeout_s: float) -> Optional[ExecResult]:
        """``run_agent(args)`` if ``remote_path`` exists on the board, else None (nothing ran).
        A transport where each command costs a round trip answers both in one."""
        if not self.has_file(remote_path):
            return None
        return self.run_agent(args, timeout_s)

    def put_file(self, local_path: Path, remote_path: str) -> None:
        raise NotImplementedError

    def open_daemon(self, port: int) -> Optional[object]:
        """A connected stream (``sendall``/``recv``/``settimeout``) to the agent daemon, or None."""
        return None

    def daemon_token(self, refresh: bool = False) -> Optional[str]:
        """The daemon's token as the board's user can read it, or None (deploy/SECURITY.md)."""
        return None

    def is_alive(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _kill_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.communicate()


class LocalTransport(Transport):
    """This machine: the agent of the working tree run with this Python, state under
    ``$HOSTSIDE_HOME/local-agent``. It uses the one-shot path (a fresh process per
    measurement, with the same limits as on a board) and no daemon."""

    def __init__(self, agent_dir: Path) -> None:
        self.name = "local"
        self.python = sys.executable
        self.agent_dir = str(agent_dir)
        self.package_parent = str(Path(device_agent.__file__).resolve().parent.parent)
        (agent_dir / "models").mkdir(parents=True, exist_ok=True)

    def run(self, argv: List[str], timeout_s: float, env: Optional[Dict[str, str]] = None) -> ExecResult:
        """Run a child in its own process group that dies with this process: on a deadline or
        an interrupt its group is killed here, and if this process is killed outright the
        child sees its stdin (a pipe only this process holds open) end and stops itself."""
        keep_alive_read, keep_alive_write = os.pipe()
        try:
            child = subprocess.Popen(
                argv,
                stdin=keep_alive_read,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        finally:
            os.close(keep_alive_read)
        try:
            stdout, stderr = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(child)
            raise CommandTimeout(f"{argv[0]} ran longer than {timeout_s:.0f} s and was killed") from None
        except BaseException:  # Ctrl-C or any other way out: the measurement must not outlive us
            _kill_group(child)
            raise
        finally:
            os.close(keep_alive_write)
        return ExecResult(child.returncode, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace"))

    def run_agent(self, args: List[str], timeout_s: float) -> ExecResult:
        env = agent_env(self.agent_dir)
        env["PYTHONPATH"] = self.package_parent
        result = self.run([self.python, "-m", "device_agent", *args], timeout_s, env)
        result.stderr = split_pgid(result.stderr)[1]
        return result

    def has_file(self, remote_path: str) -> bool:
        return Path(remote_path).is_file()

    def put_file(self, local_path: Path, remote_path: str) -> None:
        target = Path(remote_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(local_path, partial)
        partial.replace(target)
