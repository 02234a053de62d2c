"""MNIST / Fashion-MNIST IDX files, gzipped or raw.

The format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions, then one big-endian int32 per dimension and the values. numpy reads it
directly; no library for it is both maintained and lighter than these few lines.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import List, Tuple

import numpy as np

from hostside.errors import UserError
from hostside.safe_io import check_file
from hostside.train.datasets import Dataset, make_dataset

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
#: Images are (N, H, W) or (N, C, H, W), labels (N,): more dimensions mean it is no dataset file.
MAX_DIMS = 4


def read_idx(path: Path) -> np.ndarray:
    """One IDX file as an array; errors name the file and the problem."""
    check_file(path, "IDX file")  # a FIFO named like one would block the read forever
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise UserError(f"{path}: cannot read as {'gzip' if path.name.endswith('.gz') else 'IDX'} ({exc})") from None
    _check_magic(path, raw)
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"{path}: truncated IDX header; the file is damaged, download it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UserError(
            f"{path}: size {len(raw)} bytes does not match its header shape {list(shape)} "
            f"({expected} bytes); the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def _check_magic(path: Path, raw: bytes) -> None:
    """Refuse a file whose first four bytes are no IDX magic (two zero bytes, a known type
    code, 1 to ``MAX_DIMS`` dimensions), before they are read as a shape: a wrong file's
    bytes taken as dimensions gave messages about shapes like [1869573999, ...]."""
    if len(raw) >= 4 and raw[0] == 0 and raw[1] == 0 and raw[2] in _TYPES and 1 <= raw[3] <= MAX_DIMS:
        return
    magic = f"0x{raw[:4].hex()}" if raw else "none (the file is empty)"
    raise UserError(
        f"{path}: not an IDX file: magic {magic}, expected 0x00000803 (images) or 0x00000801 (labels); "
        f"give MNIST-style *-idx3-ubyte / *-idx1-ubyte files"
    )


def find_idx_pairs(path: Path) -> List[Tuple[Path, Path]]:
    """(images, labels) file pairs: the one an images file names, or all in a directory."""
    if path.is_file():
        images = [path]
    else:
        images = sorted(p for p in path.iterdir() if "images" in p.name and "idx" in p.name)
        for label_path in sorted(p for p in path.iterdir() if "labels" in p.name and "idx" in p.name):
            image_name = label_path.name.replace("labels", "images").replace("idx1", "idx3")
            if not (path / image_name).exists():
                raise UserError(f"{label_path}: no images file {image_name} beside it; the dataset is incomplete")
    pairs = []
    for image_path in images:
        if "images" not in image_path.name:
            raise UserError(f"{image_path}: expected an images file (*-images-idx3-ubyte[.gz]) to pair with its labels")
        label_path = image_path.with_name(image_path.name.replace("images", "labels").replace("idx3", "idx1"))
        if not label_path.exists():
            raise UserError(f"{image_path}: no labels file {label_path.name} beside it; put the pair in one folder")
        pairs.append((image_path, label_path))
    if not pairs:
        raise UserError(f"{path}: no *-images-idx3-ubyte[.gz] files; expected MNIST-style IDX pairs")
    return pairs


def _is_test(image_path: Path) -> bool:
    return image_path.name.startswith("t10k") or "test" in image_path.name


def read_idx_dataset(path: Path, source: str) -> Dataset:
    """All IDX pairs under ``path`` as one dataset, training pairs first.

    A directory with both training (``train-*``) and test (``t10k-*`` / ``*test*``) pairs, as
    MNIST and Fashion-MNIST are released, marks the test pair as the official test set
    (``Dataset.official_test``), so the split takes its test part from there and reported
    accuracies compare with published ones.
    """
    pairs = sorted(find_idx_pairs(path), key=lambda pair: (_is_test(pair[0]), pair[0].name))
    xs, ys = [], []
    for image_path, label_path in pairs:
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim not in (3, 4):
            raise UserError(f"{image_path}: images must have 3 dimensions (N, H, W), got shape {list(images.shape)}")
        if labels.ndim != 1:
            raise UserError(f"{label_path}: labels must have 1 dimension, got shape {list(labels.shape)}")
        if len(images) != len(labels):
            raise UserError(
                f"{label_path}: {len(labels)} labels for {len(images)} images in {image_path.name}; "
                f"the pair must come from the same release"
            )
        images = images[:, None] if images.ndim == 3 else images
        if xs and images.shape[1:] != xs[0].shape[1:]:
            raise UserError(
                f"{image_path}: images of shape {list(images.shape[1:])} but {pairs[0][0].name} has "
                f"{list(xs[0].shape[1:])}; train and test files must hold images of one size"
            )
        xs.append(images.astype(np.float32))
        ys.append(labels.astype(np.int64))
    tests = [i for i, (image_path, _) in enumerate(pairs) if _is_test(image_path)]
    official_test = sum(len(ys[i]) for i in tests) if tests and len(tests) < len(pairs) else 0
    name = path.stem if path.is_file() else path.name
    return make_dataset(name or "idx", np.concatenate(xs), np.concatenate(ys), None, str(path), source,
                        official_test)
