"""Reading what a user hands us, with one clear line for every way it can be wrong.

A user's file can be missing, a directory, unreadable, binary, gigantic, nested 100,000
deep, or a damaged SQLite database; each of those used to surface as a Python traceback
(UnicodeDecodeError, RecursionError, sqlite3.DatabaseError). Every function here raises
:class:`~hostside.errors.UserError` instead, naming the file, what is wrong and what to do.
``what`` is how the message names the file ("ArchSpec", "calibration file", "search config").
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Union

from hostside.errors import UserError

if TYPE_CHECKING:
    import sqlite3

PathLike = Union[str, Path]
#: Text inputs (specs, configs, calibrations) are kilobytes to a few megabytes.
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
#: Far deeper than any spec or config we write (a few levels), far below the recursion limit.
DEFAULT_MAX_DEPTH = 64


def check_file(path: PathLike, what: str) -> Path:
    """The path of an existing regular file, or UserError saying why it is not one.

    Every reader of a user's file calls this before opening it: a FIFO would block the
    command forever, /dev/zero (or a symbolic link to it) never ends, and a directory or a
    dangling link is best named as such, not as a decoder's error. It only stats the path."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what} {path} is a directory, not a file; give the path of the file itself")
    if not path.exists():
        hint = " (a broken symbolic link)" if path.is_symlink() else ""
        raise UserError(f"{what} {path} does not exist{hint}; check the path")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a regular file (a device, socket or pipe); give a file")
    return path


def refuse_special_file(path: PathLike, what: str) -> None:
    """Refuse only a path that exists as neither a regular file nor a directory (a FIFO, a
    device, a link to one), for readers that keep their own messages for a missing file or
    a directory: the read that follows would otherwise block forever or never end."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_file() and not path.is_dir():
        check_file(path, what)


def run_file(run_dir: PathLike, recorded: str) -> Path:
    """A path a run's journal recorded: relative to the run directory (as the search writes
    them, so a copied run directory keeps working), or absolute."""
    return Path(run_dir) / recorded


def run_file_problem(run_dir: PathLike, recorded: str, sha256: Optional[str]) -> Optional[str]:
    """What is wrong with a file a run's journal recorded, without raising: None when it is
    the regular file the journal hashed, else "missing", "not a regular file" or "changed".

    For readers that must not fail (the report of a finished run marks the file instead)."""
    path = run_file(run_dir, recorded)
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a regular file"
    return "changed" if _sha256_mismatch(path, sha256) else None


def check_run_file(run_dir: PathLike, recorded: str, sha256: Optional[str], what: str) -> Path:
    """The path of a file a run's journal recorded, checked against the journal's sha256.

    Why: the journal's figures (params, accuracy, latency) belong to the file it hashed; a
    different network copied over it would otherwise be measured and reported beside them.
    A journal row without a hash (written before hashes were kept) is trusted as it is."""
    path = check_file(run_file(run_dir, recorded), what)
    actual = _sha256_mismatch(path, sha256)
    if actual:
        raise UserError(f"{what} {path} is not the file this run's journal recorded (sha256 {actual[:12]}..., "
                        f"journal {str(sha256)[:12]}...): it was replaced or changed; restore the run's own file")
    return path


def _sha256_mismatch(path: Path, sha256: Optional[str]) -> Optional[str]:
    """The file's sha256 when it differs from ``sha256`` (None when equal or none recorded)."""
    from device_agent.protocol import file_sha256

    if not sha256:
        return None
    try:
        actual = file_sha256(path)
    except PermissionError:
        raise UserError(f"{path} is not readable by this user; check its permissions (ls -l {path})") from None
    return None if actual == sha256 else actual


def read_bytes(path: PathLike, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A file's bytes, refusing what is no regular file (a pipe would block forever, /dev/zero
    never ends) and anything over ``max_bytes``."""
    path = check_file(path, what)
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except PermissionError:
        raise UserError(f"{what} {path} is not readable by this user; check its permissions (ls -l {path})") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise UserError(f"{what} {path} is larger than {max_bytes // (1024 * 1024)} MiB; is it the right file?")
    return data


def read_text(path: PathLike, what: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """A UTF-8 text file; binary content (a NUL byte, invalid UTF-8) is refused in one line."""
    data = read_bytes(path, what, max_bytes)
    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(f"{what} {Path(path)} is not a text file (a NUL byte at offset {nul}); is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{what} {Path(path)} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); is it the right file?"
        ) from None


def json_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def parse_json(text: str, what: str, *, max_depth: int = DEFAULT_MAX_DEPTH, allow_nan: bool = False) -> Any:
    """JSON text, refusing absurd nesting (which would exhaust the parser's or our own
    recursion) and, unless allowed, NaN/Infinity (not JSON, and poison in any comparison)."""
    try:
        value = json.loads(text, parse_constant=None if allow_nan else _refuse_constant)
    except RecursionError:
        raise UserError(f"{what} is nested too deeply to be a real one (over {max_depth} levels); is it the right file?") from None
    except ValueError as exc:
        raise UserError(f"{what} is not valid JSON ({str(exc)[:160]})") from None
    if json_depth(value) > max_depth:
        raise UserError(f"{what} is nested {json_depth(value)} levels deep, over the {max_depth} any real one needs")
    return value


def read_json(path: PathLike, what: str, *, max_depth: int = DEFAULT_MAX_DEPTH, allow_nan: bool = False,
              max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """A JSON file: every failure (missing, binary, malformed, too deep) is one line naming it."""
    text = read_text(path, what, max_bytes)
    return parse_json(text, f"{what} {Path(path)}", max_depth=max_depth, allow_nan=allow_nan)


def load_toml(path: PathLike, what: str) -> Dict[str, Any]:
    """A TOML file, with the parser's line and column when it is malformed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.9/3.10 hosts
        import tomli as tomllib  # type: ignore[no-redef]

    text = read_text(path, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{what} {Path(path)} is not valid TOML: {exc}") from None
    except RecursionError:
        raise UserError(f"{what} {Path(path)} is nested too deeply to be a real one; is it the right file?") from None


def _damaged(path: Path, what: str, exc: BaseException) -> UserError:
    return UserError(
        f"{what} {path} is damaged or not an SQLite database ({str(exc)[:120]}); "
        f"restore it from a backup, or move it aside to start afresh"
    )


def open_sqlite(path: PathLike, what: str, *, create: bool = False, timeout_s: float = 30.0) -> "sqlite3.Connection":
    """A connection to an SQLite file, checked now: a damaged header, a file that is not a
    database or a missing one (unless ``create``) is one UserError instead of a traceback on
    the first query. Damage deeper in the file shows up later; wrap queries in
    :func:`sqlite_errors` to report it the same way."""
    import sqlite3  # here, not at the top: commands that never open a journal start faster

    path = Path(path).expanduser()
    if path.exists() or not create:
        check_file(path, what)
    from urllib.parse import quote

    mode = "rwc" if create else "rw"
    try:
        connection = sqlite3.connect(f"file:{quote(str(path))}?mode={mode}", uri=True, timeout=timeout_s)
    except sqlite3.Error as exc:
        raise _damaged(path, what, exc) from None
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        connection.close()
        raise _damaged(path, what, exc) from None
    return connection


@contextmanager
def sqlite_errors(path: PathLike, what: str) -> Iterator[None]:
    """Turn an SQLite failure inside the block into one UserError naming the file."""
    import sqlite3

    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise UserError(f"{what} {Path(path)} is locked by another process; wait for it or stop it") from None
        raise _damaged(Path(path), what, exc) from None
    except sqlite3.DatabaseError as exc:
        raise _damaged(Path(path), what, exc) from None
