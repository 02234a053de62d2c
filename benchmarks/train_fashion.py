"""Training proxies on Fashion-MNIST, measured: epoch time, data loading, and proxy rank fidelity.

Run: ``python benchmarks/train_fashion.py [--dataset PATH] [--models 10] [--proxy-fraction 0.2]
[--proxy-epochs 1] [--final-epochs 5]``. Prints

1. loading: seconds to decode the IDX files, to get them again from the per-process cache
   (what every candidate after a worker's first pays), and seconds/bytes of the per-training
   tensor copy of the train part;
2. seconds per epoch of the README's "2 Conv <100K" reference CNN (median over epochs), at 1
   thread, on the full official training part;
3. the Spearman rank correlation between proxy accuracy (``--proxy-fraction`` of the training
   part, the same random subset for all, ``--proxy-epochs``; validation accuracy, as the search
   sees it) and final accuracy (all of the training part, ``--final-epochs``; official test
   accuracy) of ``--models`` networks sampled from the layer_list space with at most
   ``--max-params`` parameters.

Figures taken while other work loads the CPU are noisy: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

FASHION = "/usr/share/datasets/fashion-mnist"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=FASHION)
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--proxy-fraction", type=float, default=0.2)
    parser.add_argument("--proxy-epochs", type=int, default=1)
    parser.add_argument("--final-epochs", type=int, default=5)
    parser.add_argument("--reference-epochs", type=int, default=2)
    parser.add_argument("--max-params", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from scipy.stats import spearmanr

    from hostside.arch.cost import analyze
    from hostside.spaces.layer_list import LayerListSpace
    from hostside.train.datasets import cached_dataset
    from hostside.train.loop import TrainConfig, train_model
    from hostside.train.splits import make_split
    from fashion_mnist import two_conv_100k

    started = time.perf_counter()
    dataset = cached_dataset(args.dataset)
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    cached_dataset(args.dataset)
    cached_s = time.perf_counter() - started
    split = make_split(dataset, args.seed)
    started = time.perf_counter()
    copy = np.ascontiguousarray(dataset.x[split.train])
    copy_s = time.perf_counter() - started
    print(f"{dataset.name}: {len(split.train)} train / {len(split.val)} val / {len(split.test)} test "
          f"({split.meta['test_part']} test part); loadavg {loadavg()}")
    print(f"loading: decode {decode_s:.2f} s once per worker process, cached {1e3 * cached_s:.3f} ms per later "
          f"candidate, dataset {dataset.x.nbytes / 2**20:.0f} MiB shared read-only; per-training train-part "
          f"copy {copy_s:.3f} s ({copy.nbytes / 2**20:.0f} MiB)")
    del copy

    reference = two_conv_100k()
    result = None
    if args.reference_epochs:
        result = train_model(reference, dataset, split, TrainConfig(epochs=args.reference_epochs, threads=1))
    if result is not None:
        epochs = [row["seconds"] for row in result.history]
        print(f"{reference.name} ({analyze(reference).params} params): {statistics.median(epochs):.1f} s per epoch "
              f"(median of {len(epochs)}, 1 thread, {len(split.train)} images), test accuracy "
              f"{result.test_accuracy:.4f} after {args.reference_epochs} epochs; loadavg {loadavg()}", flush=True)

    space = LayerListSpace(dataset.input_shape, dataset.num_classes, max_layers=5)
    rng = np.random.default_rng(args.seed)
    specs = []
    while len(specs) < args.models:
        genotype = space.sample(rng)
        spec = space.decode(genotype)
        if analyze(spec).params <= args.max_params:
            specs.append((spec, space.training_overrides(genotype)))
    proxy, final = [], []
    for i, (spec, overrides) in enumerate(specs):
        config = {"threads": 1, "seed": args.seed, **overrides}
        p = train_model(spec, dataset, split, TrainConfig(epochs=args.proxy_epochs, **config),
                        data_seed=args.seed + 1, train_fraction=args.proxy_fraction)
        f = train_model(spec, dataset, split, TrainConfig(epochs=args.final_epochs, **config))
        proxy.append(p.val_accuracy)
        final.append(f.test_accuracy)
        print(f"  model {i}: {analyze(spec).params:6d} params, proxy val {p.val_accuracy:.4f} "
              f"({p.train_seconds:.0f} s), final test {f.test_accuracy:.4f} ({f.train_seconds:.0f} s)", flush=True)
    rho, p_value = spearmanr(proxy, final)
    print(f"Spearman rank correlation proxy ({args.proxy_fraction:g} of train, {args.proxy_epochs} epoch(s)) vs "
          f"final ({args.final_epochs} epochs, all of train): rho {rho:.3f} (p {p_value:.3g}) over "
          f"{len(specs)} models; loadavg {loadavg()}")


if __name__ == "__main__":
    main()
