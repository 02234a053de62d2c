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
drops, when its socket is removed, or when the board's settings change (the hash in the socket name
changes, so the old process is simply no longer asked and idles out).

Only daemon measurements go through it: a one-shot measurement is a process on the board
whose life must follow the command that asked for it (issue 17: it stops when its stdin
ends), and it pays Python and onnxruntime start-up on the board anyway, which dwarfs the
host's. So the control process answers ``{"no_daemon": true}`` when the board has no usable
daemon, and the command measures itself as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Optional

from hostside.boards.inventory import BoardConfig
from hostside.paths import hostside_home

IDLE_ENV = "HOSTSIDE_CONTROL_IDLE_S"
#: ``HOSTSIDE_NO_CONTROL=1``: every command opens its own connection (debugging, benchmarks).
DISABLE_ENV = "HOSTSIDE_NO_CONTROL"
DEFAULT_IDLE_S = 600.0
MAX_LINE_BYTES = 1 << 20
#: How long a client waits to connect to a control socket before measuring by itself.
CONNECT_TIMEOUT_S = 1.0


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
        sock.connect(str(path))
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


# -- server side (the control process) ---------------------------------------------------------


def _peer_uid(conn: socket.socket) -> Optional[int]:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):
        return None
    return struct.unpack("3i", creds)[1]


def _handle(conn: socket.socket, board: Any, lock: threading.Lock) -> None:
    from hostside.boards.board import NoDaemon
    from hostside.errors import UserError

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
            try:
                reply: Dict[str, Any] = {"result": board.measure(model, **options)}
            except (NoDaemon, UserError, TypeError) as exc:
                reply = {"no_daemon": True, "reason": str(exc)}
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
    board = open_board(name)
    board.allow_one_shot = False  # a one-shot measurement stays in the command that wants it
    if board.daemon() is None:
        return 0  # nothing to keep open for
    if path.exists() or path.is_symlink():
        path.unlink()
    old_umask = os.umask(0o177)
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
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
