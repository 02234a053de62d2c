"""Seeded stratified splits, recorded as indices and refused on other data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.train.datasets import make_dataset
from hostside.train.splits import Split, make_split


def test_split_is_disjoint_complete_and_stratified(digits):
    split = make_split(digits, seed=3, val_fraction=0.2, test_fraction=0.1)
    joined = np.concatenate([split.train, split.val, split.test])
    assert sorted(joined.tolist()) == list(range(len(digits)))
    assert len(split.test) == pytest.approx(0.1 * len(digits), abs=2)
    assert len(split.val) == pytest.approx(0.2 * len(digits), abs=2)
    overall = np.bincount(digits.y) / len(digits)
    for part in (split.train, split.val, split.test):
        assert np.abs(np.bincount(digits.y[part], minlength=10) / len(part) - overall).max() < 0.02


def test_same_seed_same_split_other_seed_other_split(digits):
    a, b, c = make_split(digits, 1), make_split(digits, 1), make_split(digits, 2)
    np.testing.assert_array_equal(a.test, b.test)
    np.testing.assert_array_equal(a.val, b.val)
    assert not np.array_equal(a.test, c.test)


def test_save_writes_the_index_lists_and_load_round_trips(digits, tmp_path):
    split = make_split(digits, 0)
    split.save(tmp_path / "split.json")
    data = json.loads((tmp_path / "split.json").read_text())
    assert data["test"] == split.test.tolist() and data["train"] == split.train.tolist()
    assert data["dataset"] == "digits" and data["seed"] == 0 and data["num_examples"] == 1797
    loaded = Split.load(tmp_path / "split.json")
    np.testing.assert_array_equal(loaded.val, split.val)
    loaded.check(digits)


def test_training_on_train_and_val_moves_validation_into_train_and_leaves_test(digits):
    split = make_split(digits, 0)
    assert split.for_training_on("train") is split
    merged = split.for_training_on("train+val")
    assert merged.train.tolist() == sorted(split.train.tolist() + split.val.tolist())
    assert len(merged.val) == 0 and merged.test.tolist() == split.test.tolist()
    assert merged.meta["val_in_train"] is True and "val_in_train" not in split.meta
    Split.from_dict(merged.to_dict()).check(digits)  # still a valid, disjoint split of the same data
    with pytest.raises(UserError, match="training data 'everything' is unknown; choose one of train, train\\+val"):
        split.for_training_on("everything")


def test_split_from_other_data_is_refused(digits):
    split = make_split(digits, 0)
    other = make_dataset("other", digits.x + 1, digits.y, None, "other")
    with pytest.raises(UserError, match="drawn from different data"):
        split.check(other, "split.json")


def test_bad_split_files(tmp_path, digits):
    path = tmp_path / "split.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="split.json: not valid JSON"):
        Split.load(path)
    path.write_text(json.dumps({"train": [0, 1], "val": [1], "test": []}))
    with pytest.raises(UserError, match="must be disjoint"):
        Split.load(path)
    path.write_text(json.dumps({"train": [0, "1"], "val": [], "test": []}))
    with pytest.raises(UserError, match="'train' must be a list of non-negative integer indices"):
        Split.load(path)
    path.write_text(json.dumps({"train": [0, 5000], "val": [], "test": [1]}))
    with pytest.raises(UserError, match="index 5000 is out of range"):
        Split.load(path).check(digits, str(path))


def test_bad_fractions(digits):
    with pytest.raises(UserError, match="val \\+ test < 1"):
        make_split(digits, 0, val_fraction=0.5, test_fraction=0.5)
