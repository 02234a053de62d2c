"""One process per run directory: two ``hostside search --resume RUN`` at once would train
every candidate twice and race on ``pareto.json``.

The lock is an ``flock`` on ``RUN/run.lock``, held for the life of the process. The kernel
drops it when the process dies however it dies (SIGKILL included), so a killed run never
leaves a stale lock to clean up by hand. The file also records who holds it (pid, host,
command, start time) so the refusal can name the live process. ``flock`` is advisory and
local: a run directory on a network file system shared by two machines is not protected.

    with hold_run_lock(run_dir):
        ...  # the search
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

from hostside.errors import UserError

LOCK_FILE = "run.lock"


class RunLock:
    """An acquired run lock; ``release()``, process exit or dropping the object frees it
    (the lock lives in the open file), so keep it for as long as the run goes on."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def holder(run_dir: Union[str, Path]) -> Optional[Dict[str, Any]]:
    """Who holds the run's lock (pid, host, command, started), or None when nobody does."""
    path = Path(run_dir) / LOCK_FILE
    try:
        handle = open(path, "r")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(path)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def _read_owner(path: Path) -> Dict[str, Any]:
    try:
        owner = json.loads(path.read_text()[:4096] or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        owner = {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: Dict[str, Any]) -> str:
    pid = owner.get("pid", "?")
    where = f" on {owner['host']}" if owner.get("host") and owner.get("host") != socket.gethostname() else ""
    command = f" ({str(owner['command'])[:120]})" if owner.get("command") else ""
    since = f", started {owner['started']}" if owner.get("started") else ""
    return f"process {pid}{where}{command}{since}"


def acquire_run_lock(run_dir: Union[str, Path]) -> RunLock:
    """Take the run's lock or raise UserError naming the live process that holds it."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    try:
        handle = open(path, "a+")
    except OSError as exc:
        raise UserError(f"cannot lock run {run_dir} ({exc.strerror or exc}); check that the directory is writable") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(
            f"run {run_dir} is in use by {_describe(_read_owner(path))}; wait for it to finish "
            f"or stop it (kill -INT {_read_owner(path).get('pid', 'PID')}), then resume it again"
        ) from None
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["hostside", *sys.argv[1:]]) if sys.argv else "hostside",
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(owner) + "\n")
    handle.flush()
    return RunLock(path, handle)


@contextmanager
def hold_run_lock(run_dir: Union[str, Path]) -> Iterator[RunLock]:
    """``with hold_run_lock(run_dir):`` the search, refused while another process runs it."""
    lock = acquire_run_lock(run_dir)
    try:
        yield lock
    finally:
        lock.release()
