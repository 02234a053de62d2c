"""The agent's own state on the board: model cache keyed by sha256 and the measurement lock.

Everything lives under ``$DEVICE_AGENT_HOME`` (default ``~/.cache/device-agent``). The lock is
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
from typing import Iterator

from device_agent.protocol import is_sha256

HOME_ENV = "DEVICE_AGENT_HOME"


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


def file_sha256(path: Path) -> str:
    """Digest of a file read in blocks: the name a model has in the cache."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def has_model(sha256: str) -> bool:
    return model_path(sha256).is_file()


def store_model(sha256: str, data: bytes) -> Path:
    """Write a model atomically after checking its digest; ValueError on a mismatch."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"upload corrupted: sha256 {actual} does not match the announced {sha256}")
    target = model_path(sha256)
    partial = target.with_suffix(f".part{os.getpid()}")
    partial.write_bytes(data)
    os.replace(partial, target)
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
