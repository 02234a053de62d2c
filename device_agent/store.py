"""The agent's own state on the board: model cache keyed by sha256 and the measurement lock.

Everything lives under ``$DEVICE_AGENT_HOME`` (default ``~/.cache/device-agent``). The cache is
bounded (``$DEVICE_AGENT_CACHE_MAX_MB``, default 1024): a calibration uploads hundreds of models,
some of several MB, and a Pi's SD card is small, so storing a model evicts the least recently
used ones beyond the bound (a cache hit counts as a use). The lock is
an ``flock`` on one file, shared by the daemon's children and one-shot ``device-agent measure``
runs alike, so two measurements never overlap on one board whichever way they arrive.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

from device_agent.protocol import is_sha256

HOME_ENV = "DEVICE_AGENT_HOME"
CACHE_MAX_ENV = "DEVICE_AGENT_CACHE_MAX_MB"
DEFAULT_CACHE_MAX_MB = 1024


def agent_home() -> Path:
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "device-agent")
    home.mkdir(parents=True, exist_ok=True)
    return home


def models_dir() -> Path:
    directory = agent_home() / "models"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def model_path(sha256: str) -> Path:
    """Where the model with this digest lives; refuses anything that is not a digest."""
    if not is_sha256(sha256):
        raise ValueError("a model is named by its sha256 digest")
    return models_dir() / f"{sha256}.onnx"


def cache_limit_bytes() -> int:
    try:
        return int(float(os.environ.get(CACHE_MAX_ENV) or DEFAULT_CACHE_MAX_MB) * 1024 * 1024)
    except ValueError:
        return DEFAULT_CACHE_MAX_MB * 1024 * 1024


def has_model(sha256: str) -> bool:
    """Whether the model is cached; a hit marks it as recently used."""
    path = model_path(sha256)
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    return True


def evict_least_recently_used(keep: Path) -> List[Path]:
    """Mark ``keep`` as just used, then delete the least recently used models until the cache
    fits its bound; ``keep`` itself is never deleted."""
    os.utime(keep)
    entries = []
    for path in models_dir().glob("*.onnx"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        entries.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    limit = cache_limit_bytes()
    evicted = []
    for _, size, path in sorted(entries):
        if total <= limit:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        evicted.append(path)
    return evicted


def store_model(sha256: str, data: bytes) -> Path:
    """Write a model atomically after checking its digest; ValueError on a mismatch."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"upload corrupted: sha256 {actual} does not match the announced {sha256}")
    target = model_path(sha256)
    partial = target.with_suffix(f".part{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
    evict_least_recently_used(keep=target)
    return target


@contextmanager
def measurement_lock() -> Iterator[float]:
    """Hold the board-wide measurement lock; yields the seconds spent waiting for it."""
    start = time.perf_counter()
    with open(agent_home() / "measure.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield time.perf_counter() - start
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
