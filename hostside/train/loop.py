"""Training and torch-side evaluation of one ArchSpec on an in-memory dataset.

Tensors are built once per training (normalised with the train part's statistics, which
the exported ONNX model then carries inside) and batches are taken by index, with no
DataLoader: for datasets that fit in memory its worker processes and per-item collation
cost more than the tiny networks of a search take to train.

Images and weights are kept channels-last (NHWC) during training: oneDNN's convolutions,
batch norms and ReLUs run 1.03-1.6x faster per training step that way on one CPU thread for
the reference network of every narrow family (plain, ResNet, DenseNet, MobileNet, Inception;
approximate-multiplier convolutions: no measurable difference). The module goes back to the
default layout before it is returned, so export and saved weights are unchanged.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hostside.arch.build import build_module
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.train.augment import pad_with_fill, random_crop, random_hflip
from hostside.train.datasets import Dataset
from hostside.train.splits import Split

OPTIMIZERS = ("sgd", "adam", "adagrad", "adamax", "nadam")
DEVICES = ("cpu", "cuda", "auto")
EVAL_BATCH = 1024


@dataclass
class TrainConfig:
    """How to train; plain values only, so it crosses process boundaries as a dict."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    lr: float = 0.003
    weight_decay: float = 0.0
    momentum: float = 0.9
    cosine: bool = True
    crop_padding: int = 0
    hflip: bool = False
    device: str = "cpu"
    seed: int = 0
    threads: int = 1
    #: Whether the trained module is also judged on the test split. A search turns it off for
    #: every candidate it trains, so the test split cannot enter any choice; only the models
    #: re-trained after the search (the final front) and stand-alone trainings report it.
    evaluate_test: bool = True

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and not isinstance(self.epochs, bool) and self.epochs >= 0,
             "epochs must be an integer >= 0 (0 evaluates the initial weights)"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size must be an integer >= 1"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
             "lr must be a positive number"),
            (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0, "weight_decay must be >= 0"),
            (isinstance(self.momentum, (int, float)) and 0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (isinstance(self.crop_padding, int) and self.crop_padding >= 0, "crop_padding must be an integer >= 0"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (isinstance(self.threads, int) and self.threads >= 1, "threads must be an integer >= 1"),
            (isinstance(self.seed, int), "seed must be an integer"),
            (isinstance(self.evaluate_test, bool), "evaluate_test must be true or false"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"training config: {message}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Optional[Mapping[str, Any]]) -> "TrainConfig":
        data = dict(data or {})
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"training config: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class TrainResult:
    """The trained module (on the CPU, eval mode) and what the training measured
    (``test_accuracy`` is NaN when the config did not ask for it)."""

    module: nn.Module
    val_accuracy: float
    test_accuracy: float
    train_seconds: float
    mean: List[float]
    std: List[float]
    history: List[Dict[str, float]] = field(default_factory=list)
    diverged: bool = False


def resolve_device(name: str) -> torch.device:
    """The torch device for "cpu", "cuda" (the current CUDA device) or "auto" (CUDA when torch sees one)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda: torch sees no CUDA device here; use --device cpu or --device auto")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def check_compatible(spec: ArchSpec, dataset: Dataset, where: str = "architecture") -> None:
    """The spec must take the dataset's input shape and predict at least its classes."""
    if tuple(spec.input_shape) != dataset.input_shape:
        raise UserError(
            f"{where}: input_shape {list(spec.input_shape)} does not match dataset {dataset.name!r} "
            f"{list(dataset.input_shape)}; set input_shape to {list(dataset.input_shape)}"
        )
    if spec.num_classes != dataset.num_classes:
        raise UserError(
            f"{where}: num_classes {spec.num_classes} does not match dataset {dataset.name!r} "
            f"({dataset.num_classes} classes); set num_classes to {dataset.num_classes}"
        )


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``module`` on already-normalised ``x``; NaN for an empty set."""
    if len(y) == 0:
        return float("nan")
    module.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(y), EVAL_BATCH):
            logits = module(x[start:start + EVAL_BATCH])
            correct += int((logits.argmax(1) == y[start:start + EVAL_BATCH]).sum())
    return correct / len(y)


def _tensors(dataset: Dataset, indices: np.ndarray, mean: Sequence[float], std: Sequence[float], device: torch.device):
    shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    x = (torch.from_numpy(dataset.x[indices]) - shift) / scale
    return _channels_last(x.to(device)), torch.from_numpy(dataset.y[indices]).to(device)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


def _optimizer(module: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(module.parameters(), lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    others = {"adagrad": torch.optim.Adagrad, "adamax": torch.optim.Adamax, "nadam": torch.optim.NAdam}
    optimizer = others.get(config.optimizer, torch.optim.Adam)
    return optimizer(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train_model(spec: ArchSpec, dataset: Dataset, split: Split, config: TrainConfig,
                progress: Optional[Callable[[Dict[str, float]], None]] = None,
                init_state: Optional[Mapping[str, np.ndarray]] = None, data_seed: Optional[int] = None,
                train_fraction: float = 1.0) -> TrainResult:
    """Train a module for ``spec`` on ``split.train``; report val and (with
    ``config.evaluate_test``) test accuracy.

    The module starts from ``init_state`` (a ``hostside.arch.weights`` state of exactly this
    network: inherited or imported weights) or, without one, from a fresh initialisation.
    ``data_seed`` (default: ``config.seed``) orders the batches, so each training exercise
    of a lineage can see a freshly shuffled training part; ``train_fraction`` < 1 trains on a
    subset of it drawn with the same seed. The input normalisation is the one ``init_state``
    was trained under (its ``input/mean``, ``input/std``) or else the whole train part's
    statistics, so a network trained in several exercises sees one input scale. ``epochs`` 0
    only evaluates the initial weights.

    Deterministic on the CPU for a given seed and thread count: weight init, shuffling,
    augmentation and dropout all draw from generators seeded here, and the caller's global
    torch RNG and thread count are restored afterwards. A loss that turns NaN or infinite
    ends training early with ``diverged=True`` instead of raising, so one bad candidate
    does not stop a search. ``progress`` is called after each epoch with its history row.
    """
    check_compatible(spec, dataset)
    split.check(dataset)
    if not 0 < train_fraction <= 1:
        raise UserError(f"training config: train_fraction {train_fraction!r} must be in (0, 1]")
    device = resolve_device(config.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else [], device_type="cuda"):
            torch.manual_seed(config.seed)
            return _train(spec, dataset, split, config, device, progress, init_state,
                          config.seed if data_seed is None else data_seed, train_fraction)
    finally:
        torch.set_num_threads(previous_threads)


def _train(spec: ArchSpec, dataset: Dataset, split: Split, config: TrainConfig, device: torch.device,
           progress: Optional[Callable[[Dict[str, float]], None]], init_state: Optional[Mapping[str, np.ndarray]],
           data_seed: int, train_fraction: float) -> TrainResult:
    from hostside.arch.weights import load_state, normalisation

    started = time.perf_counter()
    module = build_module(spec)
    if init_state is not None:
        load_state(module, init_state)
    module = module.to(device, memory_format=torch.channels_last)
    mean, std = (normalisation(init_state) if init_state is not None else None) or dataset.channel_stats(split.train)
    train_indices = split.train
    if train_fraction < 1:
        count = max(1, int(round(train_fraction * len(train_indices))))
        train_indices = np.sort(np.random.default_rng(data_seed).choice(train_indices, size=count, replace=False))
    x_train, y_train = _tensors(dataset, train_indices, mean, std, device)
    x_val, y_val = _tensors(dataset, split.val, mean, std, device)
    if config.crop_padding:
        x_train = pad_with_fill(x_train, config.crop_padding, [-m / s for m, s in zip(mean, std)])
    height, width = dataset.input_shape[1:]
    optimizer = _optimizer(module, config)
    steps_per_epoch = math.ceil(len(y_train) / config.batch_size)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * steps_per_epoch)
                 if config.cosine and config.epochs else None)
    generator = torch.Generator().manual_seed(data_seed)
    history: List[Dict[str, float]] = []
    diverged = False
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        module.train()
        order = torch.randperm(len(y_train), generator=generator).to(device)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            idx = order[start:start + config.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if config.crop_padding:
                xb = random_crop(xb, height, width, generator)
            if config.hflip:
                xb = random_hflip(xb, generator)
            logits = module(_channels_last(xb))
            loss = F.cross_entropy(logits, yb)
            if not torch.isfinite(loss):
                diverged = True
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        row = {
            "epoch": epoch,
            "train_loss": loss_sum / len(y_train) if not diverged else float("nan"),
            "train_accuracy": correct / len(y_train),
            "val_accuracy": accuracy(module, x_val, y_val),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": time.perf_counter() - epoch_start,
        }
        history.append(row)
        if progress is not None:
            progress(row)
        if diverged:
            break
    val_accuracy = history[-1]["val_accuracy"] if history else accuracy(module, x_val, y_val)
    test_accuracy = accuracy(module, *_tensors(dataset, split.test, mean, std, device)) if config.evaluate_test \
        else float("nan")
    train_seconds = time.perf_counter() - started
    module = module.to("cpu", memory_format=torch.contiguous_format).eval()
    return TrainResult(module, val_accuracy, test_accuracy, train_seconds, mean, std, history, diverged)
