"""Training speed on the default dataset: a small CNN on scikit-learn digits.

Run: ``python benchmarks/train_digits.py [--runs 5] [--epochs 10]``. Prints, per thread
count, the median (and min/max) over runs of the training seconds (module build, tensors,
all epochs, final evaluation), the median seconds per epoch, and the test accuracy. Searches
train dozens of such nets on 2 cores, so per-epoch overhead is what this watches.
"""

from __future__ import annotations

import argparse
import statistics

from hostside.arch.examples import digits_small_cnn
from hostside.arch.spec import ArchSpec
from hostside.train.datasets import load_dataset
from hostside.train.loop import TrainConfig, train_model
from hostside.train.splits import make_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    spec = ArchSpec.from_dict(digits_small_cnn())
    dataset = load_dataset("digits")
    split = make_split(dataset, 0)
    print(f"{spec.name} on digits: {len(split.train)} train / {len(split.test)} test, {args.epochs} epochs, "
          f"{args.runs} runs (seeds 0..{args.runs - 1})")
    train_model(spec, dataset, split, TrainConfig(epochs=1))  # warm-up: first-call allocations
    for threads in (1, 2):
        seconds, epoch_seconds, accuracies = [], [], []
        for seed in range(args.runs):
            result = train_model(spec, dataset, split, TrainConfig(epochs=args.epochs, seed=seed, threads=threads))
            seconds.append(result.train_seconds)
            epoch_seconds += [row["seconds"] for row in result.history]
            accuracies.append(result.test_accuracy)
        print(f"threads={threads}: train_seconds median {statistics.median(seconds):.2f} "
              f"(min {min(seconds):.2f}, max {max(seconds):.2f}), epoch median "
              f"{1000 * statistics.median(epoch_seconds):.0f} ms, test accuracy median "
              f"{statistics.median(accuracies):.4f} (min {min(accuracies):.4f}, max {max(accuracies):.4f})")


if __name__ == "__main__":
    main()
