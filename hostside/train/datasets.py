"""The in-memory dataset every trainer and evaluator reads, and ``load_dataset``.

A dataset is small enough for memory in this project (digits, MNIST, CIFAR), so it is held
as one float32 array of *raw* values (N, C, H, W): normalisation belongs to the exported
model, not to the data, and the statistics come from a split's train part
(:meth:`Dataset.channel_stats`). Loaders for each file format live in ``read_*`` modules;
this module only recognises the format and dispatches.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from hostside.errors import UserError
from hostside.safe_io import check_file

FORMATS = ("digits", "idx", "cifar", "npz", "images")


@dataclass
class Dataset:
    """Raw float32 inputs ``x`` (N, C, H, W) and int64 labels ``y`` in 0..num_classes-1."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    class_names: List[str]
    source: str = ""
    #: How many trailing examples are the dataset's official test set (IDX t10k files, the
    #: CIFAR test batch); 0 = none, our seeded split then draws the test part too.
    official_test: int = 0
    _fingerprint: Optional[str] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.x.ndim != 4 or self.x.dtype != np.float32:
            raise ValueError(f"x must be float32 (N, C, H, W), got {self.x.dtype} {self.x.shape}")
        if self.y.shape != (len(self.x),) or self.y.dtype != np.int64:
            raise ValueError(f"y must be int64 of shape ({len(self.x)},), got {self.y.dtype} {self.y.shape}")
        # Datasets are cached per process and shared between trainings: freeze them.
        if not 0 <= self.official_test < len(self.y):
            raise ValueError(f"official_test must be in [0, {len(self.y)}), got {self.official_test}")
        self.x.flags.writeable = False
        self.y.flags.writeable = False

    @property
    def input_shape(self) -> Tuple[int, int, int]:
        return (int(self.x.shape[1]), int(self.x.shape[2]), int(self.x.shape[3]))

    def __len__(self) -> int:
        return len(self.y)

    def channel_stats(self, indices: Optional[Sequence[int]] = None) -> Tuple[List[float], List[float]]:
        """Per-channel mean and std of ``x[indices]`` (all examples if None).

        Computed on a split's train part so validation and test data never leak into the
        normalisation the exported model carries. A constant channel gets std 1.0, so the
        division stays finite.
        """
        x = self.x if indices is None else self.x[np.asarray(indices, dtype=np.int64)]
        if len(x) == 0:
            raise ValueError("channel_stats needs at least one example")
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        std = x.std(axis=(0, 2, 3), dtype=np.float64)
        std[std < 1e-6] = 1.0
        return [float(v) for v in mean], [float(v) for v in std]

    def fingerprint(self) -> str:
        """sha256 of shapes, inputs and labels: a saved split records it so it is only ever
        applied to the very data it was drawn from."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(repr((self.x.shape, self.y.shape)).encode())
            h.update(np.ascontiguousarray(self.x).data)
            h.update(np.ascontiguousarray(self.y).data)
            self._fingerprint = h.hexdigest()
        return self._fingerprint


def make_dataset(name: str, x: np.ndarray, y: np.ndarray, class_names: Optional[Sequence[str]],
                 where: str, source: str = "", official_test: int = 0) -> Dataset:
    """Check labels against inputs and class names and build a :class:`Dataset`.

    ``where`` names the file or folder in error messages; ``official_test`` counts the
    trailing examples that are the release's own test set.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: labels must be a 1-D array of integers, got {y.dtype} with shape {list(y.shape)}")
    if len(x) != len(y):
        raise UserError(f"{where}: {len(x)} inputs but {len(y)} labels; the two must have the same length")
    if len(x) == 0:
        raise UserError(f"{where}: no examples; point --dataset at a non-empty dataset")
    if y.min() < 0:
        raise UserError(f"{where}: negative label {int(y.min())}; labels must be 0..num_classes-1")
    num_classes = int(y.max()) + 1
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if num_classes > len(class_names):
            raise UserError(
                f"{where}: label {num_classes - 1} but only {len(class_names)} class names; "
                f"labels must be 0..{len(class_names) - 1}"
            )
        num_classes = len(class_names)
    else:
        class_names = [str(i) for i in range(num_classes)]
    _check_two_classes(y, class_names, where)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise UserError(f"{where}: inputs contain NaN or infinity; clean the data first")
    if official_test >= len(y):
        raise UserError(f"{where}: only test examples ({official_test}) and no training examples")
    return Dataset(name, x, y.astype(np.int64), num_classes, class_names, source, official_test)


def _check_two_classes(y: np.ndarray, class_names: Sequence[str], where: str) -> None:
    """Refuse data of a single class: every classifier trained on it predicts that class and
    scores accuracy 1.000, a result that looks perfect and means nothing."""
    present = np.unique(y)
    if len(present) < 2:
        label = int(present[0])
        raise UserError(f"{where}: every example is of one class ({class_names[label]!r}); a classifier needs at "
                        f"least 2 classes: add examples of another class (for an image folder, a second class "
                        f"subfolder)")


def take_subset(dataset: Dataset, size: int, where: str) -> Dataset:
    """A seeded random ``size``-example subset (seed 0, so every process of a run draws the
    same one from the same source string), keeping the official train/test proportion.

    Why a subset at all: tests and quick tries on Fashion-MNIST-sized data need a few
    thousand images, not 70,000, and naming it in the source keeps it one string that
    travels to every training worker.
    """
    if size > len(dataset):
        raise UserError(
            f"{where}: subset of {size} examples is larger than the {len(dataset)} examples of "
            f"{dataset.name!r}; give a subset of at most {len(dataset)}"
        )
    if size < 2:
        raise UserError(f"{where}: subset must be at least 2 examples, got {size}")
    rng = np.random.default_rng(0)
    n_train = len(dataset) - dataset.official_test
    if dataset.official_test:
        test_size = max(1, min(size - 1, int(round(size * dataset.official_test / len(dataset)))))
        train_idx = np.sort(rng.choice(n_train, size=size - test_size, replace=False))
        test_idx = np.sort(rng.choice(np.arange(n_train, len(dataset)), size=test_size, replace=False))
        indices = np.concatenate([train_idx, test_idx])
    else:
        test_size = 0
        indices = np.sort(rng.choice(len(dataset), size=size, replace=False))
    return Dataset(f"{dataset.name}[{size}]", np.ascontiguousarray(dataset.x[indices]), dataset.y[indices],
                   dataset.num_classes, list(dataset.class_names), dataset.source, test_size)


def load_digits_dataset() -> Dataset:
    """scikit-learn's bundled 8x8 digits, raw values 0..16 (shape 1x8x8): the default
    dataset, since it ships with scikit-learn and needs no download."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]
    return make_dataset("digits", x, bunch.target, [str(c) for c in bunch.target_names], "digits", "digits")


def load_dataset(source: str = "digits") -> Dataset:
    """Load ``"digits"`` or a path, with the format detected or given as a prefix.

    Prefixes: ``idx:``, ``cifar:``, ``npz:``, ``images:`` (e.g. ``npz:/data/set.npz``).
    A ``?subset=N`` suffix keeps a seeded random N-example subset (:func:`take_subset`),
    e.g. ``/usr/share/datasets/fashion-mnist?subset=2000``.
    Without one: a ``.npz`` file is npz; a directory holding ``data_batch_*``/``test_batch``
    or ``train``/``test`` + ``meta`` files is CIFAR; a directory or file with ``idx`` in its
    file names is IDX; any other directory is an image folder (one subfolder per class).
    """
    source = str(source)
    source_path, subset = _split_subset(source)
    if source_path == "digits":
        dataset = load_digits_dataset()
        return dataset if subset is None else take_subset(dataset, subset, source)
    fmt, path = _split_prefix(source_path)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory; give --dataset digits or an existing path")
    if not path.is_dir():
        check_file(path, "dataset")  # a FIFO or a device would hang or never end the reader
    fmt = fmt or detect_format(path)
    if fmt == "idx":
        from hostside.train.read_idx import read_idx_dataset as reader
    elif fmt == "cifar":
        from hostside.train.read_cifar import read_cifar_dataset as reader
    elif fmt == "npz":
        from hostside.train.read_npz import read_npz_dataset as reader
    else:
        from hostside.train.read_images import read_image_folder as reader
    dataset = reader(path, source)
    return dataset if subset is None else take_subset(dataset, subset, source)


def _split_subset(source: str) -> Tuple[str, Optional[int]]:
    head, sep, query = source.rpartition("?")
    if not sep:
        return source, None
    key, eq, value = query.partition("=")
    if key != "subset" or not eq or not value.isdigit():
        raise UserError(f"{source!r}: unknown dataset option {query!r}; the only one is ?subset=N (N examples)")
    return head, int(value)


@functools.lru_cache(maxsize=2)
def cached_dataset(source: str) -> Dataset:
    """:func:`load_dataset`, kept per process, so a worker that trains many candidates
    reads and decodes the files once. Safe to share because datasets are read-only."""
    return load_dataset(source)


def _split_prefix(source: str) -> Tuple[Optional[str], Path]:
    head, sep, rest = source.partition(":")
    if sep and head in FORMATS and head != "digits":
        return head, Path(rest).expanduser()
    if sep and head == "digits":
        raise UserError(f"{source!r}: digits takes no path; use --dataset digits")
    return None, Path(source).expanduser()


def detect_format(path: Path) -> str:
    """Guess the format of ``path`` from names only (cheap, no reading)."""
    if path.is_file():
        if path.suffix == ".npz":
            return "npz"
        if "idx" in path.name:
            return "idx"
        raise UserError(
            f"{path}: unknown dataset file type; use a .npz file, an IDX file (*-images-idx3-ubyte[.gz]) "
            f"or a directory, or name the format with a prefix such as npz:{path}"
        )
    names = {p.name for p in path.iterdir()}
    if any(n.startswith("data_batch_") or n == "test_batch" for n in names) or {"train", "meta"} <= names:
        return "cifar"
    if any("idx" in n for n in names):
        return "idx"
    return "images"
