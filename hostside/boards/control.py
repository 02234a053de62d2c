"""A per-user control process that keeps one board's SSH connection open between commands,
like OpenSSH's ``ControlMaster``.

A fresh ``hostside measure --board B`` used to pay, every time, the paramiko import (~0.1 s)
and an SSH handshake before the daemon even saw the request. Now the first such command
measures as before and starts ``python -m hostside.boards.control serve B`` in the
background; the control process connects once and listens on a Unix socket
(``$HOSTSIDE_HOME/control/B-<config hash>.sock``, mode 0600 in a 0700 directory, and each
client's uid checked with ``SO_PEERCRED``). Later commands send it one JSON line (the model's
path on this machine and the options) and get the result back, without importing paramiko
or opening a connection. It exits after ``$HOSTSIDE_CONTROL_IDLE_S`` (default 600) seconds without a request, when its connection
drops, when its socket is removed, or when the board's settings change or it leaves the
inventory (the hash in the socket name no longer matches); ``hostside boards remove`` stops it
at once (:func:`stop_controls`), so a removed board keeps no SSH session open.

Daemon and one-shot measurements both go through it. A one-shot measurement is a process on
the board whose life must follow the command that asked for it: when the asking client's
socket closes (the command was killed or interrupted) before the result is back, the control
process calls the measurement off, which closes its SSH channel and kills its process group
on the board. When the control process cannot serve a request it answers
``{"declined": reason}`` and the command measures by itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

from hostside.boards.inventory import BoardConfig
from hostside.processes import process_alive
from hostside.paths import hostside_home

IDLE_ENV = "HOSTSIDE_CONTROL_IDLE_S"
#: ``HOSTSIDE_NO_CONTROL=1``: every command opens its own connection (debugging, benchmarks).
DISABLE_ENV = "HOSTSIDE_NO_CONTROL"
DEFAULT_IDLE_S = 600.0
MAX_LINE_BYTES = 1 << 20
#: How long a client waits to connect to a control socket before measuring by itself.
CONNECT_TIMEOUT_S = 1.0
#: How often a measurement in progress checks that its client is still there.
CLIENT_POLL_S = 0.1
#: The longest path a Unix socket address holds on Linux (``sun_path`` is 108 bytes with its NUL).
UNIX_PATH_MAX_BYTES = 107


def enabled() -> bool:
    return not os.environ.get(DISABLE_ENV)


def idle_s() -> float:
    try:
        return float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)
    except ValueError:
        return DEFAULT_IDLE_S


def control_dir() -> Path:
    directory = hostside_home() / "control"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def socket_path(config: BoardConfig) -> Path:
    """One socket per board and settings: changed settings get a fresh control process."""
    digest = hashlib.sha256(json.dumps(asdict(config), sort_keys=True, default=str).encode()).hexdigest()[:12]
    return control_dir() / f"{config.name}-{digest}.sock"


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for ``path`` that fits a Unix socket's ``sun_path``. A deep
    ``$HOSTSIDE_HOME`` (a CI checkout, a test's tmp dir) makes the full path too long for
    ``bind``/``connect``, and without this the control process could never start; the socket
    is then reached through an open descriptor of its directory instead."""
    if len(os.fsencode(path)) <= UNIX_PATH_MAX_BYTES:
        yield str(path)
        return
    directory_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory_fd}/{path.name}"
    finally:
        os.close(directory_fd)


# -- client side (the fresh `hostside measure` process; imports no paramiko) -------------------


def measure_via_control(config: BoardConfig, model: Path, options: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The result of measuring through the board's control process, or None when there is
    none or it has no daemon to use (then the caller measures by itself)."""
    path = socket_path(config)
    if not path.exists():
        return None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        with _address(path) as address:
            sock.connect(address)
    except OSError:
        return None
    try:
        sock.settimeout(None)
        request = {"model": str(model.resolve()), "options": options}
        sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        reply_line = sock.makefile("rb").readline(MAX_LINE_BYTES)
    except OSError:
        return None
    finally:
        sock.close()
    try:
        reply = json.loads(reply_line)
    except ValueError:
        return None
    if not isinstance(reply, dict) or not isinstance(reply.get("result"), dict):
        return None
    result = reply["result"]
    result.setdefault("host", {})["via_control"] = True
    return result


def start_control(config: BoardConfig) -> None:
    """Start the board's control process in the background (it exits at once if one runs)."""
    log = control_dir() / f"{config.name}.log"
    with open(log, "ab") as err:
        subprocess.Popen(
            [sys.executable, "-m", "hostside.boards.control", "serve", config.name, str(socket_path(config))],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )


def stop_controls(name: str, timeout_s: float = 5.0) -> int:
    """End every control process of board ``name`` (whatever its settings were), and with it
    the SSH session it holds; how many were running. Called by ``boards remove``: a removed
    board must not stay connected until the idle timeout."""
    directory = hostside_home() / "control"
    if not directory.is_dir():
        return 0
    own = re.compile(re.escape(name) + r"-[0-9a-f]{12}\.sock")
    return sum(_stop_one(path, timeout_s) for path in sorted(directory.iterdir()) if own.fullmatch(path.name))


def _stop_one(path: Path, timeout_s: float) -> bool:
    """SIGTERM the process serving ``path`` (found through the socket, so only this user's
    own control process is ever signalled) and wait for it; SIGKILL if it lingers."""
    pid = _server_pid(path)
    path.unlink(missing_ok=True)  # even without a pid, a removed socket ends its process
    if pid is None:
        return False
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + timeout_s
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not process_alive(pid):
            return True
    return True


def _server_pid(path: Path) -> Optional[int]:
    """The pid of the process listening on ``path`` if it runs as this user (``SO_PEERCRED``)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT_S)
            with _address(path) as address:
                sock.connect(address)
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    pid, uid, _ = struct.unpack("3i", creds)
    return pid if uid == os.getuid() and pid > 0 else None


# -- server side (the control process) ---------------------------------------------------------


def _still_configured(name: str, path: Path) -> bool:
    """Whether the inventory still has board ``name`` with the settings ``path`` was made for:
    a removed or changed board's control process has nobody left to serve."""
    from hostside.boards import inventory
    from hostside.errors import UserError

    try:
        return socket_path(inventory.get(name)) == path
    except UserError:
        return False


def _exit_on_term(signum: int, frame: Any) -> None:
    """SIGTERM (``boards remove``) ends the serve loop through its ``finally``: the socket is
    removed and the board's SSH connection closed, not merely dropped by the kernel."""
    raise SystemExit(0)


def _peer_uid(conn: socket.socket) -> Optional[int]:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    return struct.unpack("3i", creds)[1]


def _client_gone(conn: socket.socket) -> bool:
    """True once the client closed its end (it sends nothing after its request line)."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _measure_for(conn: socket.socket, board: Any, model: Path, options: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """``board.measure`` in a worker thread while the client is watched: the reply, or None
    when the client went away (the measurement was called off)."""
    from hostside.boards.transport import Cancelled
    from hostside.errors import UserError

    outcome: Dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["reply"] = {"result": board.measure(model, **options)}
        except Cancelled:
            pass
        except (UserError, TypeError) as exc:
            outcome["reply"] = {"declined": str(exc)}

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    gone = False
    while worker.is_alive():
        worker.join(CLIENT_POLL_S)
        gone = gone or _client_gone(conn)
        if gone:
            board.call_off()  # again each poll: a command started after the first call-off ends too
    return None if gone else outcome.get("reply")


def _handle(conn: socket.socket, board: Any, lock: threading.Lock) -> None:
    with conn:
        uid = _peer_uid(conn)
        if uid is not None and uid != os.getuid():
            return
        line = conn.makefile("rb").readline(MAX_LINE_BYTES)
        try:
            request = json.loads(line)
            model, options = Path(request["model"]), dict(request["options"])
        except (ValueError, KeyError, TypeError):
            return
        with lock:
            reply = _measure_for(conn, board, model, options)
        if reply is not None:
            conn.sendall(json.dumps(reply).encode("utf-8") + b"\n")


def serve(name: str, path: Path) -> int:
    """Hold ``name``'s connection and answer on ``path`` until idle for ``idle_s()``."""
    import fcntl

    from hostside.boards.board import open_board

    lock_file = open(str(path) + ".lock", "a")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another control process serves this board already
    signal.signal(signal.SIGTERM, _exit_on_term)
    board = open_board(name)
    board.connect()
    if not _still_configured(name, path):
        board.close()
        return 0  # removed (or changed) while this process connected: nobody to serve
    if path.exists() or path.is_symlink():
        path.unlink()
    old_umask = os.umask(0o177)
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _address(path) as address:
            listener.bind(address)
    finally:
        os.umask(old_umask)
    listener.listen(8)
    listener.settimeout(5.0)
    lock = threading.Lock()
    last_used = time.monotonic()
    try:
        while time.monotonic() - last_used < idle_s():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                if not path.exists() or not (board.transport_alive() or lock.locked()):
                    break  # removed by hand, or the board's connection is gone: the next command starts afresh
                if not lock.locked() and not _still_configured(name, path):
                    break  # the board was removed or its settings changed
                continue
            last_used = time.monotonic()
            threading.Thread(target=_handle, args=(conn, board, lock), daemon=True).start()
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        board.close()
    return 0


if __name__ == "__main__":
    sys.modules.setdefault("invoke", None)  # paramiko's optional import, unused (see hostside.cli)
    if len(sys.argv) != 4 or sys.argv[1] != "serve":
        sys.exit("usage: python -m hostside.boards.control serve BOARD SOCKET")
    sys.exit(serve(sys.argv[2], Path(sys.argv[3])))
