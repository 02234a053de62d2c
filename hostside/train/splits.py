"""Seeded, stratified train/validation/test splits, saved as the indices themselves.

A split is stored as index lists (``split.json``) rather than as a seed alone, so a model
can be re-evaluated on exactly its test examples even after the splitting code or the
library doing it changes. scikit-learn's ``train_test_split`` does the stratification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np

from hostside.errors import UserError
from hostside.train.datasets import Dataset

FORMAT = "hostside.split"
VERSION = 1
PARTS = ("train", "val", "test")
#: What a model can be trained on: the train part, or the train and validation parts together
#: (the whole of an official training part, as published results are trained).
TRAINING_DATA = ("train", "train+val")


@dataclass
class Split:
    """Index arrays into a dataset's order, plus how they were drawn."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    meta: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, **self.meta,
            "train": self.train.tolist(), "val": self.val.tolist(), "test": self.test.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "split") -> "Split":
        if not isinstance(data, Mapping) or data.get("format", FORMAT) != FORMAT:
            raise UserError(f"{where}: not a split file (format {FORMAT!r} with train/val/test index lists)")
        parts = []
        for key in PARTS:
            values = data.get(key)
            valid = isinstance(values, list) and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
            )
            if not valid:
                raise UserError(f"{where}: {key!r} must be a list of non-negative integer indices")
            parts.append(np.asarray(values, dtype=np.int64))
        if not len(parts[0]):
            raise UserError(f"{where}: the train part is empty")
        joined = np.concatenate(parts)
        if len(np.unique(joined)) != len(joined):
            raise UserError(
                f"{where}: an index appears more than once across train/val/test; the parts must be disjoint"
            )
        meta = {k: v for k, v in data.items() if k not in PARTS and k not in ("format", "version")}
        return cls(parts[0], parts[1], parts[2], meta)

    def for_training_on(self, data: str) -> "Split":
        """This split, or with ``data = "train+val"`` its validation part moved into the train part.

        Why: once validation figures have chosen the models, nothing is left for them to choose,
        and a final training that also learns from them trains on what published figures train
        on. The validation part is then empty (the trained model has no validation accuracy) and
        ``meta["val_in_train"]`` says so; the test part is untouched.
        """
        if data not in TRAINING_DATA:
            raise UserError(f"training data {data!r} is unknown; choose one of {', '.join(TRAINING_DATA)}")
        if data == "train":
            return self
        train = np.sort(np.concatenate([self.train, self.val]))
        return Split(train, np.empty(0, dtype=np.int64), self.test, {**self.meta, "val_in_train": True})

    def save(self, path: Union[str, Path]) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: Union[str, Path]) -> "Split":
        from hostside.safe_io import refuse_special_file

        refuse_special_file(path, "split file")
        try:
            data = json.loads(Path(path).read_text())
        except OSError as exc:
            raise UserError(f"{path}: cannot read ({exc.strerror})") from None
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))

    def check(self, dataset: Dataset, where: str = "split") -> None:
        """Refuse a split drawn from other data: a recorded fingerprint or size must match."""
        recorded = self.meta.get("dataset_sha256")
        if recorded is not None and recorded != dataset.fingerprint():
            raise UserError(
                f"{where}: was drawn from different data than {dataset.name!r} (fingerprint mismatch); "
                f"use the dataset it was made for or drop the split to draw a new one"
            )
        top = max(int(p.max()) for p in (self.train, self.val, self.test) if len(p))
        if top >= len(dataset):
            raise UserError(f"{where}: index {top} is out of range for {dataset.name!r} with {len(dataset)} examples")


def make_split(dataset: Dataset, seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15) -> Split:
    """Stratified split of ``dataset`` into sorted train/val/test indices, reproducible for a seed.

    A dataset with an official test set (``Dataset.official_test``: the IDX t10k files, the
    CIFAR test batch) keeps it as the test part, so test accuracies compare with published
    ones; ``test_fraction`` is then not used and validation takes ``val_fraction`` of the
    official training part. ``split.json`` records which it was (``test_part``).
    """
    from sklearn.model_selection import train_test_split

    if not (0 <= val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise UserError(
            f"split fractions val={val_fraction}, test={test_fraction}: need 0 <= val, 0 < test and val + test < 1"
        )
    official = dataset.official_test
    n_train_part = len(dataset) - official
    y = dataset.y
    counts = np.bincount(y[:n_train_part] if official else y)
    stratify_ok = counts[counts > 0].min() >= 3
    try:
        if official:
            rest, test = np.arange(n_train_part), np.arange(n_train_part, len(dataset))
            val_share = val_fraction
        else:
            indices = np.arange(len(dataset))
            rest, test = train_test_split(indices, test_size=test_fraction, random_state=seed,
                                          stratify=y if stratify_ok else None)
            val_share = val_fraction / (1 - test_fraction)
        val: Any = np.empty(0, dtype=np.int64)
        if val_fraction > 0:
            rest, val = train_test_split(rest, test_size=val_share, random_state=seed + 1,
                                         stratify=y[rest] if stratify_ok else None)
    except ValueError as exc:
        raise UserError(
            f"{dataset.name}: cannot split {len(dataset)} examples ({exc}); use more data or smaller fractions"
        ) from None
    meta = {
        "dataset": dataset.name, "dataset_source": dataset.source, "dataset_sha256": dataset.fingerprint(),
        "num_examples": len(dataset), "seed": seed, "val_fraction": val_fraction,
        "test_fraction": round(official / len(dataset), 6) if official else test_fraction,
        "stratified": bool(stratify_ok),
        "test_part": "official" if official else "drawn",
    }
    if official:
        meta["official_test_examples"] = official
        meta["val_of"] = "official training part"
    return Split(np.sort(rest).astype(np.int64), np.sort(val).astype(np.int64), np.sort(test).astype(np.int64), meta)
