"""Real training on the real digits set: accuracy, ONNX parity, determinism, augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hostside.arch.build import build_module
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.train.augment import pad_with_fill, random_crop, random_hflip
from hostside.train.loop import TrainConfig, train_model
from hostside.train.onnx_eval import evaluate_onnx
from hostside.train.splits import make_split
from hostside.train.worker import train_and_export


def test_small_cnn_learns_digits_and_onnx_matches_torch(small_cnn_dict, digits, tmp_path):
    split = make_split(digits, 0)
    metrics = train_and_export(small_cnn_dict, "digits", split.to_dict(), {"epochs": 6, "seed": 0}, tmp_path)
    assert metrics["accuracy"] > 0.85
    assert metrics["onnx_accuracy"] == metrics["accuracy"]
    assert evaluate_onnx(tmp_path / "model.onnx", digits, split.test) == metrics["accuracy"]
    trained_params = sum(p.numel() for p in build_module(ArchSpec.from_dict(small_cnn_dict)).parameters())
    assert metrics["params"] == trained_params and metrics["macs"] > 0
    assert metrics["max_abs_diff"] < 1e-4
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["onnx_sha256"] == metrics["onnx_sha256"] and len(on_disk["history"]) == 6
    assert json.loads((tmp_path / "split.json").read_text())["test"] == split.test.tolist()


def test_same_seed_gives_identical_training(small_cnn_dict, digits):
    spec = ArchSpec.from_dict(small_cnn_dict)
    split = make_split(digits, 0)
    config = TrainConfig(epochs=2, seed=7, crop_padding=1)
    a, b = (train_model(spec, digits, split, config) for _ in range(2))
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    for pa, pb in zip(a.module.parameters(), b.module.parameters()):
        assert torch.equal(pa, pb)
    c = train_model(spec, digits, split, TrainConfig(epochs=2, seed=8, crop_padding=1))
    assert c.history[-1]["train_loss"] != a.history[-1]["train_loss"]


def test_training_leaves_global_torch_state_alone(small_cnn_dict, digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    train_model(ArchSpec.from_dict(small_cnn_dict), digits, make_split(digits, 0), TrainConfig(epochs=1, threads=1))
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_the_trained_module_comes_back_in_the_default_layout(small_cnn_dict, digits):
    """Training runs channels-last; what it returns (exported, saved, inherited) must not."""
    split = make_split(digits, 0)
    result = train_model(ArchSpec.from_dict(small_cnn_dict), digits, split, TrainConfig(epochs=1, threads=1))
    weights = [p for p in result.module.parameters() if p.dim() == 4]
    assert len(weights) >= 2 and all(p.is_contiguous() for p in weights)


def test_sgd_with_augmentation_and_constant_lr_trains(small_cnn_dict, digits):
    config = TrainConfig(epochs=3, optimizer="sgd", lr=0.05, cosine=False, crop_padding=1, hflip=True)
    result = train_model(ArchSpec.from_dict(small_cnn_dict), digits, make_split(digits, 1), config)
    assert result.history[-1]["lr"] == 0.05
    assert result.test_accuracy > 0.5  # well above chance (0.1) even with flips that hurt digits


def test_a_diverging_net_ends_early_instead_of_raising(digits):
    linear = ArchSpec.from_dict({"input_shape": [1, 8, 8], "num_classes": 10, "nodes": [
        {"id": "f", "op": "flatten", "inputs": ["input"]},
        {"id": "fc", "op": "linear", "inputs": ["f"], "out_features": 10}]})
    config = TrainConfig(epochs=5, optimizer="sgd", lr=1e38, momentum=0.0, cosine=False)
    result = train_model(linear, digits, make_split(digits, 0), config)
    assert result.diverged and len(result.history) < 5


def test_spec_for_other_data_is_refused(small_cnn_dict, digits):
    small_cnn_dict["num_classes"] = 3
    small_cnn_dict["nodes"] = small_cnn_dict["nodes"][:-1] + [
        {"id": "fc", "op": "linear", "inputs": ["d"], "out_features": 3}]
    with pytest.raises(UserError, match=r"num_classes 3 does not match dataset 'digits' \(10 classes\)"):
        train_model(ArchSpec.from_dict(small_cnn_dict), digits, make_split(digits, 0), TrainConfig(epochs=1))


def test_bad_config_values():
    with pytest.raises(UserError, match="optimizer must be one of sgd, adam"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(UserError, match="unknown key\\(s\\) epoch"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(UserError, match="lr must be a positive number"):
        TrainConfig(lr=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_user_error(small_cnn_dict, digits):
    with pytest.raises(UserError, match="no CUDA device"):
        train_model(ArchSpec.from_dict(small_cnn_dict), digits, make_split(digits, 0), TrainConfig(device="cuda"))


def test_random_crop_windows_come_from_the_padded_image():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    padded = pad_with_fill(x, 2, [-1.0, -2.0, -3.0])
    assert padded.shape == (2, 3, 8, 8)
    assert padded[0, 1, 0, 0] == -2.0 and torch.equal(padded[:, :, 2:6, 2:6], x)
    crops = random_crop(padded, 4, 4, torch.Generator().manual_seed(0))
    for n in range(2):
        windows = [padded[n, :, i:i + 4, j:j + 4] for i in range(5) for j in range(5)]
        assert any(torch.equal(crops[n], w) for w in windows)
    assert torch.equal(random_crop(pad_with_fill(x, 0, [0, 0, 0]), 4, 4, torch.Generator()), x)


def test_random_hflip_mirrors_about_half():
    x = torch.randn(400, 1, 3, 5)
    out = random_hflip(x, torch.Generator().manual_seed(0))
    flipped = np.array([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = np.array([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert (flipped | kept).all() and 150 < flipped.sum() < 250


def test_weights_npz_round_trip_evaluates_unchanged_and_continues_training(small_cnn_dict, digits, tmp_path):
    from hostside.arch.weights import load_weights, normalisation, sha256_of

    split = make_split(digits, 0)
    first = train_and_export(small_cnn_dict, "digits", split.to_dict(), {"epochs": 2, "seed": 0}, tmp_path / "a")
    weights = tmp_path / "a" / "weights.npz"
    assert first["weights_sha256"] == sha256_of(weights)
    state = load_weights(weights)
    assert normalisation(state) == (first["mean"], first["std"])
    assert any(k.endswith("/running_mean") for k in state)  # unfolded: batchnorm kept, trainable

    spec = ArchSpec.from_dict(small_cnn_dict)
    again = train_model(spec, digits, split, TrainConfig(epochs=0), init_state=state)
    assert again.history == [] and again.test_accuracy == first["accuracy"]  # evaluated unchanged

    config = TrainConfig(epochs=1, seed=0, cosine=False, lr=0.001)
    continued = train_model(spec, digits, split, config, init_state=state, data_seed=5)
    fresh = train_model(spec, digits, split, config, data_seed=5)
    assert continued.history[0]["train_loss"] < fresh.history[0]["train_loss"]
    other_order = train_model(spec, digits, split, config, init_state=state, data_seed=6)
    assert other_order.history[0]["train_loss"] != continued.history[0]["train_loss"]  # freshly shuffled
    subset = train_model(spec, digits, split, config, init_state=state, data_seed=5, train_fraction=0.5)
    assert subset.history[0]["train_loss"] != continued.history[0]["train_loss"]
    with pytest.raises(UserError, match="train_fraction"):
        train_model(spec, digits, split, config, train_fraction=0)
