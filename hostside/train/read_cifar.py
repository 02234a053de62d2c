"""CIFAR-10 / CIFAR-100 "python version" batches, read without trusting pickle.

The official files are Python pickles: a dict of ``data`` (uint8, N x 3072), labels and file
names. The house rule is "no pickle for anything read from disk" because unpickling can
call any importable function. The files are only usable as pickles, so we read them with an
unpickler whose ``find_class`` admits exactly what these files contain: numpy's array
reconstruction (``_reconstruct``, ``ndarray``, ``dtype``, ``_frombuffer`` for protocol 5)
and ``_codecs.encode`` (how protocol 2 stores bytes). Any other global - the hook an
exploit needs - is refused, and arrays of Python objects are rejected after loading. The
same data is also accepted as ``.npz`` (``x``, ``y``), which needs no pickle at all.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from hostside.errors import UserError
from hostside.train.datasets import Dataset, make_dataset

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): np.ndarray((0,)).__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): np.ndarray((0,)).__reduce__()[0],
    ("numpy.core.numeric", "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): np.zeros(1).__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class _CifarUnpickler(pickle.Unpickler):
    """Admits only the globals listed in ``_ALLOWED`` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}") from None


def read_batch(path: Path) -> Dict[str, Any]:
    """One batch file as a dict with str keys (the originals are Python 2 pickles with
    bytes keys; ``encoding="bytes"`` keeps their byte strings intact)."""
    try:
        with path.open("rb") as f:
            data = _CifarUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror})") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise UserError(
            f"{path}: not a CIFAR python batch ({exc}); use the 'python version' files or an .npz with x and y"
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a CIFAR python batch (holds a {type(data).__name__}, not a dict)")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in data.items()}


def _batch_arrays(path: Path, label_key: str):
    batch = read_batch(path)
    if "data" not in batch or label_key not in batch:
        raise UserError(f"{path}: missing 'data' or '{label_key}' entry; not a CIFAR batch of this kind")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {got}")
    if not isinstance(labels, (list, np.ndarray)) or not all(isinstance(v, (int, np.integer)) for v in labels):
        raise UserError(f"{path}: '{label_key}' must be a list of integers")
    if len(labels) != len(data):
        raise UserError(f"{path}: {len(labels)} labels for {len(data)} images; the batch is damaged")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def _names(meta_path: Path, key: str) -> Optional[List[str]]:
    if not meta_path.exists():
        return None
    meta = read_batch(meta_path)
    names = meta.get(key)
    if not isinstance(names, list):
        raise UserError(f"{meta_path}: no '{key}' list of class names")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def read_cifar_dataset(path: Path, source: str) -> Dataset:
    """All batches of a CIFAR-10 (``data_batch_*``, ``test_batch``) or CIFAR-100
    (``train``, ``test``; fine labels) directory as one dataset."""
    if not path.is_dir():
        raise UserError(f"{path}: a CIFAR dataset is the extracted folder (cifar-10-batches-py or cifar-100-python)")
    cifar10 = sorted(path.glob("data_batch_*")) + sorted(path.glob("test_batch"))
    if cifar10:
        files, label_key, names = cifar10, "labels", _names(path / "batches.meta", "label_names")
    else:
        files = [p for p in (path / "train", path / "test") if p.exists()]
        label_key, names = "fine_labels", _names(path / "meta", "fine_label_names")
    if not files:
        raise UserError(f"{path}: no data_batch_*/test_batch (CIFAR-10) or train/test (CIFAR-100) files")
    parts = [_batch_arrays(f, label_key) for f in files]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32)
    y = np.concatenate([p[1] for p in parts])
    # The test batch (last in ``files``) is the official test set when training batches come with it.
    has_test = files[-1].name in ("test_batch", "test") and len(files) > 1
    return make_dataset(path.name, x, y, names, str(path), source, len(parts[-1][1]) if has_test else 0)
