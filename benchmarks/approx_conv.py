"""Approximate-multiplier convolution vs the float layer: time ratio and exactness.

    python3 benchmarks/approx_conv.py [--multipliers mul8u_QKX,...] [--repeats 7]

For each circuit: the median time of one training step (forward + backward) and of one
forward of an ``approx_conv2d`` layer divided by that of the same ``nn.Conv2d``, timed
alternately with it (target: under 3x), the rank of its error expansion, the evaluation
forward by each exact method (the full-rank expansion, one table read per product; the layer
uses the faster, chosen by ``GATHER_ABOVE_RANK``), and exactness: the float64 layer's integer
sums against a direct per-product table lookup on random integer operands (``mismatches``
must be 0).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hostside.approx import conv  # noqa: E402
from hostside.approx.conv import TRAIN_RANK, ApproxConv2d, lookup_conv2d, truncation_bound  # noqa: E402
from hostside.approx.expansion import expansion  # noqa: E402
from hostside.approx.library import DEFAULT_LIBRARY, get_multiplier  # noqa: E402


def _ratio(fn, reference, repeats: int) -> float:
    """median time of ``fn`` / median time of ``reference``, the two timed alternately so that
    a machine whose speed drifts (turbo, a neighbour's load) shifts both alike."""
    fn()
    reference()
    times, reference_times = [], []
    for _ in range(repeats):
        for run, into in ((fn, times), (reference, reference_times)):
            start = time.perf_counter()
            run()
            into.append(time.perf_counter() - start)
    return statistics.median(times) / statistics.median(reference_times)


def _median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _step(layer, x):
    def run():
        layer.zero_grad(set_to_none=True)
        layer(x).sum().backward()
    return run


def _forward(layer, x):
    def run():
        with torch.no_grad():
            layer(x)
    return run


def _mismatches(name: str) -> int:
    rng = np.random.default_rng(0)
    qa = rng.integers(-255, 256, size=(2, 8, 6, 6))
    qw = rng.integers(-255, 256, size=(4, 8, 3, 3))
    table = get_multiplier(name).table.astype(np.int64)
    cols = np.lib.stride_tricks.sliding_window_view(qa, (3, 3), axis=(2, 3))     # (n, c, 4, 4, 3, 3)
    a = cols[:, None]                                                            # (n, 1, c, y, x, kh, kw)
    b = qw[None, :, :, None, None]                                               # (1, o, c, 1, 1, kh, kw)
    want = (np.sign(a) * np.sign(b) * table[np.abs(a), np.abs(b)]).sum(axis=(2, 5, 6))
    got = lookup_conv2d(torch.from_numpy(qa).double(), torch.from_numpy(qw).double(), name)
    return int(np.sum(np.rint(got.numpy()).astype(np.int64) != want))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--multipliers", default=",".join(DEFAULT_LIBRARY))
    parser.add_argument("--shape", default="64,16,32,8", help="batch,in_channels,out_channels,size (3x3 conv)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    n, cin, cout, size = (int(v) for v in args.shape.split(","))
    torch.manual_seed(0)
    x = torch.relu(torch.randn(n, cin, size, size))
    ref = torch.nn.Conv2d(cin, cout, 3, padding=1)
    t_step = _median_seconds(_step(ref, x), args.repeats)
    t_fwd = _median_seconds(_forward(ref, x), args.repeats)
    print(f"layer 3x3 conv {cin}->{cout} on {n}x{cin}x{size}x{size}; float step {t_step * 1e3:.2f} ms, "
          f"forward {t_fwd * 1e3:.2f} ms (medians of {args.repeats}); load {os.getloadavg()[0]:.1f}")
    print(f"step = training (error rank capped at {TRAIN_RANK}; 'train bound' = max per-product deviation), "
          f"fwd = evaluation (full rank, every product exact)")
    print(f"{'multiplier':<12} {'pJ':>7} {'rank':>5} {'step x':>7} {'fwd x':>7} {'expand x':>8} {'gather x':>8} "
          f"{'mismatches':>10} {'train bound':>11}")
    chosen = conv.GATHER_ABOVE_RANK
    for name in args.multipliers.split(","):
        layer = ApproxConv2d(cin, cout, 3, padding=1, multiplier=name)
        layer.load_state_dict(ref.state_dict())
        step = _ratio(_step(layer.train(), x), _step(ref, x), args.repeats)
        fwd = _ratio(_forward(layer.eval(), x), _forward(ref, x), args.repeats)
        by_method = []
        for threshold in (10 ** 9, -1):  # force the expansion, then the table reads
            conv.GATHER_ABOVE_RANK = threshold
            by_method.append(_ratio(_forward(layer, x), _forward(ref, x), args.repeats) if expansion(name).rank
                             else float("nan"))
        conv.GATHER_ABOVE_RANK = chosen
        print(f"{name:<12} {get_multiplier(name).energy_per_mult_pj:>7.4f} {expansion(name).rank:>5} "
              f"{step:>7.2f} {fwd:>7.2f} {by_method[0]:>8.2f} {by_method[1]:>8.2f} {_mismatches(name):>10} "
              f"{truncation_bound(name):>11.1f}")


if __name__ == "__main__":
    main()
