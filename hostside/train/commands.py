"""``hostside train``: train one ArchSpec, export it to ONNX and write its metrics.

Heavy imports (torch, sklearn, onnx) happen inside the handler so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence

from hostside.errors import UserError

AUGMENTATIONS = ("none", "crop", "flip", "crop+flip")
CURVES_FILE = "training.png"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train", help="train an architecture and export it to ONNX",
        description="Train ARCH.json on a dataset, export DIR/model.onnx (normalisation inside) and write "
                    "DIR/metrics.json, DIR/split.json and DIR/training.png (learning curves).",
    )
    parser.add_argument("arch", metavar="ARCH.json", help="ArchSpec JSON file")
    parser.add_argument("--dataset", default="digits",
                        help="'digits' (default) or a path: IDX folder/file, CIFAR batch folder, .npz with x/y, "
                             "image folder; a prefix idx:/cifar:/npz:/images: forces the format")
    parser.add_argument("--epochs", type=int, default=10,
                        help="training epochs (0 evaluates --init-weights unchanged)")
    parser.add_argument("--init-weights", metavar="WEIGHTS.npz", default=None,
                        help="start from these weights (a weights.npz of `hostside train`, a search candidate "
                             "or `hostside arch import`) instead of a fresh initialisation")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling")
    parser.add_argument("--lr", type=float, default=0.003, help="initial learning rate")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (Nesterov)")
    parser.add_argument("--no-cosine", action="store_true", help="keep the learning rate constant")
    parser.add_argument("--augment", choices=AUGMENTATIONS, default="none",
                        help="random crop with padding and/or horizontal flip (default none)")
    parser.add_argument("--crop-padding", type=int, default=None,
                        help="padding for --augment crop (default: an eighth of the image side, at least 1)")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    # One thread by default: the small nets of this project gain little from more, and on a
    # busy machine torch's spinning thread pool made 2 threads 10x slower than 1 (benchmark).
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--split", metavar="SPLIT.json", default=None,
                        help="reuse a recorded split instead of drawing one from --seed")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.set_defaults(handler=run_train)


def _config(args: argparse.Namespace, image_side: int) -> Dict[str, Any]:
    crop = "crop" in args.augment
    padding = args.crop_padding if args.crop_padding is not None else max(1, image_side // 8)
    return {
        "epochs": args.epochs, "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
        "weight_decay": args.weight_decay, "momentum": args.momentum, "cosine": not args.no_cosine,
        "crop_padding": padding if crop else 0, "hflip": "flip" in args.augment, "device": args.device,
        "seed": args.seed, "threads": args.threads,
    }


def training_memory_bytes(params: int, activation_bytes: int, batch_size: int) -> int:
    """What training a network needs at least, from the analytic cost alone: the float32
    weights four times (weights, gradients, Adam's two moments) and the peak activations of a
    batch twice (kept for the backward pass, and their gradients). Python integers do not
    overflow, so an absurd spec (10^30 filters) gives an absurd figure, not a wrapped one."""
    return 4 * 4 * params + 2 * batch_size * activation_bytes


def available_memory_bytes() -> int:
    """Memory this process could still get: MemAvailable (Linux), else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(spec: Any, batch_size: int, where: str) -> None:
    """Refuse, before anything is built, a network whose training cannot fit in memory."""
    cost = spec.cost
    needed = training_memory_bytes(cost.params, cost.activation_bytes, batch_size)
    available = available_memory_bytes()
    if needed > available:
        raise UserError(
            f"{where}: {_magnitude(cost.params)} parameters and {_magnitude(cost.activation_bytes)} bytes of "
            f"activations per example need about {_magnitude(needed)} bytes to train at batch size {batch_size}, "
            f"but only {_magnitude(available)} bytes are available; make the network smaller (or lower --batch-size)"
        )


def _magnitude(n: int) -> str:
    """A count for a message: 3 significant digits, also for integers too big for a float."""
    digits = len(str(n))
    return f"{n:.3g}" if digits < 300 else f"~1e+{digits - 1}"


def run_train(args: argparse.Namespace) -> int:
    from hostside.arch.spec import ArchSpec
    from hostside.train.datasets import load_dataset
    from hostside.train.loop import TrainConfig, check_compatible, resolve_device, train_model
    from hostside.train.plots import plot_history
    from hostside.train.splits import Split, make_split
    from hostside.train.worker import export_and_measure

    spec = ArchSpec.load(args.arch)
    check_memory(spec, args.batch_size, args.arch)
    init_state = _initial_weights(spec, args.init_weights)
    dataset = load_dataset(args.dataset)
    check_compatible(spec, dataset, args.arch)
    config = TrainConfig.from_dict(_config(args, min(dataset.input_shape[1:])))
    resolve_device(config.device)
    if args.split:
        split = Split.load(args.split)
        split.check(dataset, args.split)
    else:
        split = make_split(dataset, args.seed, args.val_fraction, args.test_fraction)
    with written_only_on_success(Path(args.out)):
        out_dir = _output_folder(args.out)
        print(f"training on {dataset.name}: {len(split.train)} train / {len(split.val)} val / "
              f"{len(split.test)} test, {config.epochs} epochs", file=sys.stderr)

        def show(row: Dict[str, float]) -> None:
            print(f"epoch {row['epoch']}/{config.epochs}  loss {row['train_loss']:.4f}  "
                  f"train acc {row['train_accuracy']:.3f}  val acc {row['val_accuracy']:.3f}  "
                  f"{row['seconds']:.2f} s", file=sys.stderr)

        result = train_model(spec, dataset, split, config, progress=show, init_state=init_state)
        metrics = export_and_measure(spec, dataset, split, config, result, out_dir)
        title = f"{spec.name or Path(args.arch).stem} on {dataset.name}"
        curves = plot_history(result.history, out_dir / CURVES_FILE, title)
    _print_summary(metrics)
    print(f"wrote {curves}")
    if result.diverged:
        print("hostside: warning: the loss became NaN/infinite and training stopped early; "
              "lower --lr", file=sys.stderr)
    return 0


def _initial_weights(spec: Any, path: Optional[str]) -> Optional[Dict[str, Any]]:
    """The --init-weights state, checked against the spec before any data is read: the first
    tensor that is missing or has another shape is one line naming it."""
    if path is None:
        return None
    from hostside.arch.build import build_module
    from hostside.arch.weights import load_state, load_weights

    state = load_weights(path)
    # The recorded input normalisation ("input/mean", "input/std") is not a tensor of the network.
    load_state(build_module(spec), {k: v for k, v in state.items() if not k.startswith("input/")},
               f"--init-weights {path}")
    return state


@contextlib.contextmanager
def written_only_on_success(folder: Path, names: Optional[Sequence[str]] = None) -> Iterator[None]:
    """Files a command writes into ``folder`` (with ``names``: only those entries) stay only
    when the command succeeds.

    Why: a command that fails half-way (a full disk, a board that stopped answering) left
    half-written files, a truncated split.json among them, which broke or blocked the next
    try. What was there before stays; a folder the command created goes entirely."""
    folder = Path(folder)
    made = next((p for p in reversed([folder, *folder.parents]) if not p.exists()), None)
    before = set() if made is not None or not folder.is_dir() else {entry.name for entry in folder.iterdir()}
    try:
        yield
    except BaseException:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        elif folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in before and (names is None or entry.name in names):
                    _remove(entry)
        raise


def _remove(entry: Path) -> None:
    with contextlib.suppress(OSError):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _output_folder(path: str) -> Path:
    """Create ``--out`` before training, so a bad path fails in a second, not after the training."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {path}: cannot create the folder ({exc.strerror}); choose a writable folder") from None
    return out


def _print_summary(m: Dict[str, Any]) -> None:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{100 * v:.2f}%"

    print(f"params {m['params']:,}  macs {m['macs']:,}  activation {m['activation_bytes']:,} bytes")
    print(f"test accuracy {pct(m['accuracy'])} (onnxruntime {pct(m['onnx_accuracy'])}), "
          f"val accuracy {pct(m['val_accuracy'])}, trained in {m['train_seconds']:.1f} s")
    print(f"wrote {m['onnx']} ({m['onnx_size_bytes']:,} bytes, sha256 {m['onnx_sha256'][:12]}...)")
