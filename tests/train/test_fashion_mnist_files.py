"""Fashion-MNIST as released: labels, shapes, the official train/test split, and every bad
copy of it (missing, truncated, mismatched files; a subset too large) refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hostside.errors import UserError
from hostside.train.datasets import load_dataset
from hostside.train.splits import Split, make_split
from tests.train.builders import random_images, write_idx


def test_sixty_thousand_training_and_ten_thousand_test_images(fashion):
    assert len(fashion) == 70_000 and fashion.official_test == 10_000
    assert fashion.input_shape == (1, 28, 28) and fashion.num_classes == 10
    assert fashion.x.min() == 0 and fashion.x.max() == 255
    # The release is balanced: 6,000 training and 1,000 test images per class.
    np.testing.assert_array_equal(np.bincount(fashion.y[:60_000]), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(fashion.y[60_000:]), [1000] * 10)
    # The first labels of train-labels and t10k-labels as the README's files hold them.
    assert fashion.y[:5].tolist() == [9, 0, 0, 3, 0]
    assert fashion.y[60_000:60_005].tolist() == [9, 2, 1, 1, 6]


def test_split_takes_the_official_test_set_and_validation_from_training(fashion, tmp_path):
    split = make_split(fashion, seed=3, val_fraction=0.1)
    np.testing.assert_array_equal(split.test, np.arange(60_000, 70_000))
    assert len(split.val) == 6_000 and len(split.train) == 54_000
    assert split.val.max() < 60_000 and split.train.max() < 60_000
    assert len(np.intersect1d(split.train, split.val)) == 0
    np.testing.assert_array_equal(np.bincount(fashion.y[split.val]), [600] * 10)
    split.save(tmp_path / "split.json")
    recorded = json.loads((tmp_path / "split.json").read_text())
    assert recorded["test_part"] == "official" and recorded["official_test_examples"] == 10_000
    Split.load(tmp_path / "split.json").check(fashion)


def test_subset_keeps_official_test_images_only_in_its_test_part(fashion):
    part = load_dataset("/usr/share/datasets/fashion-mnist?subset=2000")
    assert len(part) == 2000 and part.official_test == 286
    split = make_split(part)
    assert split.meta["test_part"] == "official" and len(split.test) == 286
    official_test = {row.tobytes() for row in fashion.x[60_000:]}
    assert all(part.x[i].tobytes() in official_test for i in split.test[:50])


@pytest.fixture
def fashion_copy(tmp_path, fashion_dir):
    target = tmp_path / "fashion"
    shutil.copytree(fashion_dir, target)
    return target


def _search_error(dataset: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hostside.cli", "search", "--dataset", dataset, "--budget", "1",
         "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
    )


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-1000])


def _drop(path):
    path.unlink()


@pytest.mark.parametrize("name, damage, message", [
    ("t10k-images-idx3-ubyte.gz", _truncate, "t10k-images-idx3-ubyte.gz: cannot read as gzip"),
    ("t10k-images-idx3-ubyte.gz", _drop, "t10k-labels-idx1-ubyte.gz: no images file t10k-images-idx3-ubyte.gz"),
    ("train-labels-idx1-ubyte.gz", _drop, "train-images-idx3-ubyte.gz: no labels file train-labels-idx1-ubyte.gz"),
])
def test_damaged_copy_is_one_line(fashion_copy, name, damage, message):
    damage(fashion_copy / name)
    with pytest.raises(UserError, match=message):
        load_dataset(str(fashion_copy))


def test_test_images_of_another_size_are_refused(fashion_copy):
    rng = np.random.default_rng(0)
    write_idx(fashion_copy / "t10k-images-idx3-ubyte.gz", random_images(rng, 10, (32, 32)))
    write_idx(fashion_copy / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    with pytest.raises(UserError, match=r"images of shape \[1, 32, 32\] but train-images-idx3-ubyte.gz has \[1, 28, 28\]"):
        load_dataset(str(fashion_copy))


@pytest.mark.parametrize("case", ["truncated", "subset"])
def test_cli_bad_input_is_one_line_and_non_zero(fashion_copy, tmp_path, case):
    if case == "truncated":
        _truncate(fashion_copy / "train-labels-idx1-ubyte.gz")
        dataset, message = str(fashion_copy), "train-labels-idx1-ubyte.gz: cannot read as gzip"
    else:
        dataset, message = f"{fashion_copy}?subset=80000", "subset of 80000 examples is larger than the 70000"
    proc = _search_error(dataset, tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "journal.sqlite").exists()
