"""NumPy ``.npz`` datasets: arrays ``x`` (N, H, W), (N, C, H, W) or (N, H, W, C) and ``y``
(N,), optionally ``class_names``. Read with ``allow_pickle=False``: an object array is
refused, never unpickled."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from hostside.errors import UserError
from hostside.train.datasets import Dataset, make_dataset


def to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W) gains a channel axis; (N, H, W, C) with C in 1/3/4 and a wider H is
    transposed; (N, C, H, W) is kept."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[3] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        return x
    raise UserError(f"{where}: x must have shape (N, H, W), (N, C, H, W) or (N, H, W, C), got {list(x.shape)}")


def read_npz_dataset(path: Path, source: str) -> Dataset:
    where = str(path)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{where}: not a readable .npz file (not a zip archive); save it with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("x", "y") if k not in archive.files]
            if missing:
                raise UserError(
                    f"{where}: missing array(s) {', '.join(missing)} (has {', '.join(archive.files) or 'none'}); "
                    f"save with np.savez(path, x=images, y=labels)"
                )
            x, y = archive["x"], archive["y"]
            names = archive["class_names"] if "class_names" in archive.files else None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(
                f"{where}: holds object arrays, which would need unpickling; save plain numeric "
                f"arrays (and class_names as a unicode string array)"
            ) from None
        raise UserError(f"{where}: cannot read as .npz ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{where}: not a readable .npz file ({exc}); save it with numpy.savez") from None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
        raise UserError(f"{where}: x must be numeric, got dtype {x.dtype}")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise UserError(f"{where}: class_names must be a 1-D array of strings, got {names.dtype} {list(names.shape)}")
    class_names = None if names is None else [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return make_dataset(path.stem, to_nchw(x, where).astype(np.float32), y, class_names, where, source)
