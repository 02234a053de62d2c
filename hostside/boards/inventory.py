"""The board inventory: ``$HOSTSIDE_HOME/boards.toml``, one ``[boards.NAME]`` table per board.

Read with the standard ``tomllib`` (through :mod:`hostside.safe_io`, so a binary or
malformed file is one line). Written by a few lines here rather than a TOML library:
the file holds only flat tables of strings and integers, and ``tomli_w`` is not a dependency.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from hostside.errors import UserError
from hostside.paths import hostside_home
from hostside.safe_io import load_toml

LOCAL = "local"
DEFAULT_AGENT_DIR = ".device-agent"
DEFAULT_DAEMON_PORT = 47800
#: Where deploy/install-agent.sh's system daemon keeps its token (its DEVICE_AGENT_HOME).
SYSTEM_DAEMON_TOKEN = "/var/lib/device-agent/daemon.token"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass
class BoardConfig:
    """How to reach one board and where its agent lives.

    ``agent_dir`` is relative to the SSH user's home unless absolute; it holds the copied
    package (``lib/device_agent``) and the agent's model cache. ``daemon_token`` is the file
    holding the daemon's token (default: ``agent_dir/daemon.token``, then the system daemon's
    ``/var/lib/device-agent/daemon.token``).
    """

    name: str
    host: str
    user: str
    port: int = 22
    key: Optional[str] = None
    python: str = "python3"
    agent_dir: str = DEFAULT_AGENT_DIR
    daemon_port: int = DEFAULT_DAEMON_PORT
    device_key: Optional[str] = None
    daemon_token: Optional[str] = None
    connect_timeout_s: float = 10.0
    retries: int = 2
    extra: Dict[str, str] = field(default_factory=dict)


#: (type, low, high) of each numeric setting; strings are checked in ``check_config``.
_NUMBERS = {
    "port": (int, 1, 65535),
    "daemon_port": (int, 1, 65535),
    "retries": (int, 0, 10),
    "connect_timeout_s": (float, 0.1, 600.0),
}
_OPTIONAL_STRINGS = ("key", "device_key", "daemon_token")
_STRINGS = ("host", "user", "python", "agent_dir")


def check_config(config: BoardConfig, where: str) -> BoardConfig:
    """Refuse settings that would fail later with a traceback (a port of "abc", a NaN
    timeout, a negative retry count, a host with spaces); UserError names the setting."""
    name = config.name
    for key, (kind, low, high) in _NUMBERS.items():
        value = getattr(config, key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
        if not ok or not low <= value <= high:  # NaN fails the range test too
            raise UserError(f"{where}: board {name!r}: {key} = {value!r} is not allowed; give {kind.__name__} from {low} to {high}")
    for key in _STRINGS + _OPTIONAL_STRINGS:
        value = getattr(config, key)
        if value is None and key in _OPTIONAL_STRINGS:
            continue
        if not isinstance(value, str) or not value or any(ch.isspace() or ord(ch) < 32 for ch in value if key in ("host", "user")):
            raise UserError(f"{where}: board {name!r}: {key} = {value!r} is not allowed; give a non-empty string (no spaces in host/user)")
        if any(ord(ch) < 32 for ch in value):
            raise UserError(f"{where}: board {name!r}: {key} holds a control character; remove it")
    return config


def inventory_path() -> Path:
    return hostside_home() / "boards.toml"


def check_name(name: str) -> str:
    if name == LOCAL:
        raise UserError("'local' is reserved for this machine and always exists; choose another board name")
    if not _NAME_RE.match(name):
        raise UserError(f"board name {name!r} is not valid; use letters, digits, '-', '_' or '.' (e.g. pi4-lab)")
    return name


def load() -> Dict[str, BoardConfig]:
    """All boards in the inventory; a malformed file is a UserError naming the file and the fix."""
    path = inventory_path()
    if not path.exists() and not path.is_symlink():
        return {}
    data = load_toml(path, "board inventory")
    boards: Dict[str, BoardConfig] = {}
    known = set(BoardConfig.__dataclass_fields__) - {"name", "extra"}
    tables = data.get("boards") or {}
    if not isinstance(tables, dict):
        raise UserError(f"{path}: 'boards' must be tables ([boards.NAME]); see deploy/boards.example.toml")
    for name, table in tables.items():
        if not isinstance(table, dict) or "host" not in table or "user" not in table:
            raise UserError(f"{path}: board {name!r} needs at least host and user (see deploy/boards.example.toml)")
        settings = {k: v for k, v in table.items() if k in known}
        extra = {k: str(v) for k, v in table.items() if k not in known}
        boards[name] = check_config(BoardConfig(name=name, extra=extra, **settings), str(path))
    return boards


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def save(boards: Dict[str, BoardConfig]) -> Path:
    """Rewrite the inventory atomically (write then rename), so a crash never leaves half a file."""
    lines: List[str] = ["# Board inventory written by `hostside boards add`; see deploy/boards.example.toml", ""]
    for name in sorted(boards):
        config = asdict(boards[name])
        extra = config.pop("extra")
        config.pop("name")
        lines.append(f"[boards.{json.dumps(name)}]")
        for key, value in {**config, **extra}.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    path = inventory_path()
    partial = path.with_suffix(".toml.part")
    partial.write_text("\n".join(lines))
    partial.replace(path)
    return path


def get(name: str) -> BoardConfig:
    boards = load()
    if name not in boards:
        known = ", ".join([LOCAL] + sorted(boards))
        raise UserError(f"unknown board {name!r}; known boards: {known}; add one with `hostside boards add {name} --host H --user U`")
    return boards[name]


def check_key_file(config: BoardConfig) -> None:
    """Refuse a ``--key`` that is not a file now, when the user is typing it, rather than at the
    board's first use, where it would look like a connection problem. Only ``add`` checks:
    a hand-edited boards.toml is still read, and its key is named at first use."""
    if config.key is None:
        return
    key = Path(config.key).expanduser()
    if not key.is_file():
        state = "is a directory, not a key file" if key.is_dir() else "does not exist"
        raise UserError(
            f"hostside boards add: the SSH key {key} {state}; give the private key file with --key PATH "
            "(e.g. ~/.ssh/id_ed25519) or leave --key out to use ssh-agent and ~/.ssh keys"
        )


def add(config: BoardConfig) -> Path:
    check_name(config.name)
    check_config(config, "hostside boards add")
    check_key_file(config)
    boards = load()
    if config.name in boards:
        raise UserError(f"board {config.name!r} already exists; remove it first with `hostside boards remove {config.name}`")
    boards[config.name] = config
    return save(boards)


def remove(name: str) -> Path:
    boards = load()
    if name not in boards:
        raise UserError(f"unknown board {name!r}; known boards: {', '.join(sorted(boards)) or 'none'}")
    del boards[name]
    return save(boards)
