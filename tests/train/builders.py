"""Writers for tiny dataset files of every supported format, in the layouts the real
releases use (MNIST IDX, CIFAR python batches)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from typing import Optional

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: Optional[bytes] = None) -> Path:
    """An IDX file (gzipped when the name ends in .gz) as MNIST ships them."""
    header = (magic or bytes([0, 0, 0x08, array.ndim])) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(">u1").tobytes()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def write_cifar_batch(path: Path, data: np.ndarray, labels, label_key: str = "labels", protocol: int = 2) -> Path:
    """A batch in the layout of the official files: a dict with bytes keys."""
    with path.open("wb") as f:
        pickle.dump({b"batch_label": b"test", label_key.encode(): labels, b"data": data,
                     b"filenames": [b"x.png"] * len(data)}, f, protocol=protocol)
    return path


def random_images(rng: np.random.Generator, n: int, shape) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
