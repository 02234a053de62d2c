"""Every dataset format, read from tiny files built here, and every bad input refused with
one clear message naming the file."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from hostside.errors import UserError
from hostside.train.datasets import cached_dataset, load_dataset
from tests.train.builders import random_images, write_cifar_batch, write_idx


def test_digits_is_raw_1x8x8_with_ten_classes(digits):
    assert digits.input_shape == (1, 8, 8)
    assert digits.x.dtype == np.float32 and digits.y.dtype == np.int64
    assert len(digits) == 1797 and digits.num_classes == 10
    assert digits.x.min() == 0 and digits.x.max() == 16
    assert digits.class_names == [str(i) for i in range(10)]


def test_channel_stats_follow_the_given_indices(digits):
    mean_all, std_all = digits.channel_stats()
    mean_part, _ = digits.channel_stats(np.arange(100))
    assert mean_all[0] == pytest.approx(float(digits.x.mean()), rel=1e-6)
    assert std_all[0] == pytest.approx(float(digits.x.std()), rel=1e-5)
    assert mean_part[0] == pytest.approx(float(digits.x[:100].mean()), rel=1e-6)


def test_datasets_are_read_only_so_the_cache_can_share_them(digits):
    with pytest.raises(ValueError):
        digits.x[0, 0, 0, 0] = 1.0
    assert cached_dataset("digits") is cached_dataset("digits")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_pairs_in_a_folder_are_joined(tmp_path, suffix):
    rng = np.random.default_rng(0)
    train_x, test_x = random_images(rng, 12, (28, 28)), random_images(rng, 5, (28, 28))
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train_x)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", np.arange(12) % 10)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test_x)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", np.arange(5))
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (1, 28, 28) and len(ds) == 17 and ds.num_classes == 10
    # Training pairs first, then the t10k pair: the trailing 5 are the official test set.
    np.testing.assert_array_equal(ds.x[12:, 0], test_x.astype(np.float32))
    np.testing.assert_array_equal(ds.y[:12], np.arange(12) % 10)
    assert ds.official_test == 5


def test_idx_images_file_finds_its_labels(tmp_path):
    images = write_idx(tmp_path / "train-images-idx3-ubyte.gz", random_images(np.random.default_rng(1), 4, (6, 6)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 2, 1]))
    ds = load_dataset(str(images))
    assert ds.input_shape == (1, 6, 6) and ds.num_classes == 3


def test_idx_wrong_magic_names_the_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 4, 4)), magic=b"\x1f\x00\x08\x03")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2))
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte: not an IDX file: magic 0x1f000803"):
        load_dataset(str(tmp_path))


def test_idx_label_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2))
    with pytest.raises(UserError, match=r"train-labels-idx1-ubyte.gz: 2 labels for 3 images"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_truncated_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    path.write_bytes(path.read_bytes()[:-5])
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(UserError, match="does not match its header shape"):
        load_dataset(str(tmp_path))


def test_idx_without_labels_file(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    with pytest.raises(UserError, match="no labels file train-labels-idx1-ubyte"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_batches_and_names(tmp_path, protocol):
    rng = np.random.default_rng(2)
    data1, data2, test = (random_images(rng, n, (3072,)) for n in (6, 4, 3))
    write_cifar_batch(tmp_path / "data_batch_1", data1, [0, 1, 2, 3, 4, 5], protocol=protocol)
    write_cifar_batch(tmp_path / "data_batch_2", data2, [6, 7, 8, 9], protocol=protocol)
    write_cifar_batch(tmp_path / "test_batch", test, [9, 9, 0], protocol=protocol)
    names = [f"class{i}".encode() for i in range(10)]
    with (tmp_path / "batches.meta").open("wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=protocol)
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (3, 32, 32) and len(ds) == 13 and ds.num_classes == 10
    assert ds.class_names[3] == "class3"
    np.testing.assert_array_equal(ds.x[0], data1[0].reshape(3, 32, 32).astype(np.float32))
    np.testing.assert_array_equal(ds.y[-3:], [9, 9, 0])
    assert ds.official_test == 3


def test_cifar100_uses_fine_labels(tmp_path):
    rng = np.random.default_rng(3)
    write_cifar_batch(tmp_path / "train", random_images(rng, 5, (3072,)), [0, 50, 99, 3, 4], "fine_labels")
    write_cifar_batch(tmp_path / "test", random_images(rng, 2, (3072,)), [1, 2], "fine_labels")
    with (tmp_path / "meta").open("wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                     b"coarse_label_names": [b"c"] * 20}, f, protocol=2)
    ds = load_dataset(str(tmp_path))
    assert ds.num_classes == 100 and len(ds) == 7 and ds.class_names[99] == "f99"
    np.testing.assert_array_equal(ds.y, [0, 50, 99, 3, 4, 1, 2])
    assert ds.official_test == 2


class _Exploit:
    """Unpickling this would run a shell command; the restricted unpickler must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_cifar_batch_with_foreign_global_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with (tmp_path / "data_batch_1").open("wb") as f:
        pickle.dump({b"data": _Exploit(), b"labels": [0]}, f, protocol=2)
    with pytest.raises(UserError, match=r"data_batch_1: not a CIFAR python batch \(refusing global (posix|os)\.system"):
        load_dataset(str(tmp_path))
    assert not (tmp_path / "pwned").exists()


def test_cifar_label_count_mismatch(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1", np.zeros((3, 3072), np.uint8), [0, 1])
    with pytest.raises(UserError, match=r"data_batch_1: 2 labels for 3 images"):
        load_dataset(str(tmp_path))


def test_cifar_wrong_data_shape(tmp_path):
    write_cifar_batch(tmp_path / "data_batch_1", np.zeros((3, 100), np.uint8), [0, 1, 2])
    with pytest.raises(UserError, match=r"'data' must be a uint8 array of shape \(N, 3072\)"):
        load_dataset(str(tmp_path))


@pytest.mark.parametrize("layout", ["nhw", "nchw", "nhwc"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(4)
    nchw = rng.normal(size=(10, 3, 5, 5)).astype(np.float32)
    x = {"nhw": nchw[:, 0], "nchw": nchw, "nhwc": nchw.transpose(0, 2, 3, 1)}[layout]
    np.savez(tmp_path / "set.npz", x=x, y=np.arange(10) % 4, class_names=np.array(["a", "b", "c", "d"]))
    ds = load_dataset(str(tmp_path / "set.npz"))
    want = nchw[:, :1] if layout == "nhw" else nchw
    np.testing.assert_array_equal(ds.x, want)
    assert ds.class_names == ["a", "b", "c", "d"] and ds.num_classes == 4


def test_npz_prefix_forces_the_format(tmp_path):
    path = tmp_path / "set.bin"
    with path.open("wb") as f:
        np.savez(f, x=np.zeros((4, 2, 2)), y=np.array([0, 1, 0, 1]))
    assert len(load_dataset(f"npz:{path}")) == 4
    with pytest.raises(UserError, match="unknown dataset file type"):
        load_dataset(str(path))


def test_npz_with_object_arrays_is_refused(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([np.zeros(3), "text"], dtype=object), y=np.array([0, 1]))
    with pytest.raises(UserError, match=r"obj.npz: holds object arrays"):
        load_dataset(str(tmp_path / "obj.npz"))


def test_npz_label_mismatch_and_missing_arrays(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((5, 4, 4)), y=np.zeros(4, dtype=int))
    with pytest.raises(UserError, match=r"a.npz: 5 inputs but 4 labels"):
        load_dataset(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", images=np.zeros((5, 4, 4)))
    with pytest.raises(UserError, match=r"b.npz: missing array\(s\) x, y"):
        load_dataset(str(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 4, 4)), y=np.array([0.5, 1.0]))
    with pytest.raises(UserError, match=r"c.npz: labels must be a 1-D array of integers"):
        load_dataset(str(tmp_path / "c.npz"))
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4)), y=np.array([0, 3]), class_names=np.array(["a", "b"]))
    with pytest.raises(UserError, match=r"d.npz: label 3 but only 2 class names"):
        load_dataset(str(tmp_path / "d.npz"))


def test_not_an_npz_file(tmp_path):
    (tmp_path / "bad.npz").write_text("hello")
    with pytest.raises(UserError, match=r"bad.npz: not a readable .npz file"):
        load_dataset(str(tmp_path / "bad.npz"))


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folder_gray(tmp_path):
    rng = np.random.default_rng(5)
    cat = random_images(rng, 2, (6, 7))
    for i, img in enumerate(cat):
        _png(tmp_path / "cat" / f"{i}.png", img)
    _png(tmp_path / "dog" / "0.png", random_images(rng, 1, (6, 7))[0])
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (1, 6, 7) and ds.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(ds.y, [0, 0, 1])
    np.testing.assert_array_equal(ds.x[1, 0], cat[1].astype(np.float32))


def test_image_folder_rgb(tmp_path):
    rng = np.random.default_rng(6)
    rgb = random_images(rng, 1, (4, 4, 3))[0]
    _png(tmp_path / "a" / "x.png", rgb)
    _png(tmp_path / "b" / "y.png", random_images(rng, 1, (4, 4, 3))[0])
    ds = load_dataset(f"images:{tmp_path}")
    assert ds.input_shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.x[0], rgb.transpose(2, 0, 1).astype(np.float32))


def test_image_folder_keeps_16_bit_values_and_reads_gray_palettes(tmp_path):
    deep = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)
    Image.fromarray(deep).save((tmp_path / "deep").mkdir() or tmp_path / "deep" / "a.png")
    palette = Image.fromarray(np.array([[0, 255], [128, 7]], np.uint8)).convert("P")
    palette.save((tmp_path / "pal").mkdir() or tmp_path / "pal" / "b.png")
    ds = load_dataset(str(tmp_path))
    assert ds.input_shape == (1, 2, 2)
    np.testing.assert_array_equal(ds.x[0, 0], deep.astype(np.float32))
    np.testing.assert_array_equal(ds.x[1, 0], [[0, 255], [128, 7]])


def test_empty_image_folder(tmp_path):
    with pytest.raises(UserError, match="no class subfolders"):
        load_dataset(str(tmp_path))
    (tmp_path / "cat").mkdir()
    with pytest.raises(UserError, match=r"cat: class folder has no images"):
        load_dataset(str(tmp_path))


def test_image_folder_sizes_must_agree_and_files_decode(tmp_path):
    _png(tmp_path / "a" / "1.png", np.zeros((4, 4), np.uint8))
    _png(tmp_path / "a" / "2.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(UserError, match=r"2.png: size 4x5 differs from 4x4"):
        load_dataset(str(tmp_path))
    (tmp_path / "a" / "2.png").write_text("not a png")
    with pytest.raises(UserError, match=r"2.png: cannot decode image"):
        load_dataset(str(tmp_path))


def test_missing_path_and_digits_with_a_path():
    with pytest.raises(UserError, match="no such file or directory"):
        load_dataset("/nonexistent/set.npz")
    with pytest.raises(UserError, match="digits takes no path"):
        load_dataset("digits:/tmp")


def test_a_subset_keeps_the_official_test_proportion(tmp_path):
    rng = np.random.default_rng(4)
    write_idx(tmp_path / "train-images-idx3-ubyte", random_images(rng, 40, (6, 6)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(40) % 4)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", random_images(rng, 10, (6, 6)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10) % 4)
    full = load_dataset(str(tmp_path))
    part = load_dataset(f"{tmp_path}?subset=20")
    assert len(part) == 20 and part.official_test == 4
    # Drawn with a fixed seed: the same source gives the same subset in every process.
    np.testing.assert_array_equal(part.x, load_dataset(f"{tmp_path}?subset=20").x)
    assert {tuple(r.ravel()) for r in part.x[16:]} <= {tuple(r.ravel()) for r in full.x[40:]}
    assert len(load_dataset("digits?subset=100")) == 100


@pytest.mark.parametrize("source, message", [
    ("digits?subset=5000", "subset of 5000 examples is larger than the 1797 examples"),
    ("digits?size=10", "unknown dataset option 'size=10'"),
    ("digits?subset=1", "subset must be at least 2 examples"),
])
def test_bad_subset_is_one_line(source, message):
    with pytest.raises(UserError, match=message):
        load_dataset(source)


def test_lone_labels_file_is_an_incomplete_dataset(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(2))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte: no images file t10k-images-idx3-ubyte"):
        load_dataset(str(tmp_path))
