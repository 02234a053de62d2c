"""Narrow spaces and sampling laws: how fast networks are judged without training, and what the
laws buy.

Prints (medians of several repeats, on one core):
- the time to sample, cost and predict the latency of 10,000 architectures (target < 2 s), for
  networks drawn from learned laws (the IoT-sized networks the elaboration judges) and for
  uniform samples of each whole space (mostly large networks);
- the time of one ``laws learn`` with the paper's defaults (n_init 100, n_steps 900, n_eval 10,
  k 10; target < 60 s);
- the share of samples inside the target interval for the learned laws vs uniform sampling.

Times are given as wall clock and as the CPU time the process got (``time.process_time``): on a
host shared with other work the wall clock includes the time the one core was given to others,
the CPU time does not.

Run: python benchmarks/narrow_space.py [--networks N] [--repeats R] [--family resnet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from hostside.calibration.artifact import load_calibration
from hostside.calibration.registry import CALIBRATION_DATA
from hostside.laws.ga import GASettings
from hostside.laws.law import Law
from hostside.laws.learn import learn_laws
from hostside.laws.metrics import make_metric
from hostside.laws.plots import plot_law_distributions
from hostside.laws.store import load_laws, save_laws
from hostside.spaces.narrow import FAMILY_NAMES, make_narrow



def judge_seconds(space, laws, n: int, calibration, seed: int):
    """(wall, CPU) seconds to draw n configurations (round-robin over the laws), build their
    ArchSpecs with the analytic cost, and predict their latency in one batch."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    cpu = time.process_time()
    per_law = -(-n // len(laws))
    configs = [c for law in laws for c in law.sample(space, per_law, rng)][:n]
    specs = [space.spec(c) for c in configs]
    params = np.array([s.cost.params for s in specs])
    latency = calibration.predict_many(specs)[0]
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    assert len(latency) == n and params.min() > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--family", default="resnet", help="family of the laws learn run (default resnet)")
    parser.add_argument("--target", nargs=2, type=float, default=(1e4, 2e4))
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--out", default="/tmp/narrow_space_benchmark", help="where laws.json/laws.png go")
    parser.add_argument("--calibration", help="calibration.json to predict with (default: the shipped one)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the targets say
    shape = tuple(int(v) for v in args.input_shape.split(","))
    calibration = load_calibration(args.calibration or sorted(CALIBRATION_DATA.glob("*/calibration.json"))[0])
    print(f"load before: {open('/proc/loadavg').read().split()[:3]}; input {list(shape)}; calibration "
          f"{calibration.board.get('name')} ({calibration.chosen})")

    space = make_narrow(args.family, shape, 10)
    metric = make_metric("params")
    tau1, tau2 = args.target
    # One learn run (about a minute): timed once, it is the figure the < 60 s target is about.
    start = time.perf_counter()
    cpu = time.process_time()
    body, samples = learn_laws(space, metric, tau1, tau2, GASettings())
    shares = [law["validation"]["share_inside"] for law in body["laws"]]
    plot_law_distributions(Path(args.out + ".png"), space.name, metric.label, (tau1, tau2), samples["laws"],
                           samples["uniform"], shares, body["uniform"]["share_inside"])
    learn_seconds, learn_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"laws learn {space.name} params [{tau1:g}, {tau2:g}] with defaults: {learn_seconds:.1f} s wall, "
          f"{learn_cpu:.1f} s CPU (GA {body['ga_seconds']:.1f} s wall, {body['networks_judged']} networks judged; "
          f"target < 60 s)")
    print(f"share inside [{tau1:g}, {tau2:g}]: best law {shares[0]:.0%}, mean of {len(shares)} laws "
          f"{np.mean(shares):.0%}, uniform sampling of the whole space {body['uniform']['share_inside']:.0%} "
          f"({body['uniform']['samples']} samples, median {body['uniform']['median']:.3g} params)")

    laws_file = save_laws(body, args.out + ".json")
    _, _, laws = load_laws(laws_file)
    runs = [judge_seconds(space, laws, args.networks, calibration, seed) for seed in range(args.repeats)]
    walls, cpus = [r[0] for r in runs], [r[1] for r in runs]
    print(f"sample + cost + predict latency of {args.networks:,} networks from the learned laws ({space.name}): "
          f"{statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU, medians of {args.repeats} "
          f"(CPU repeats {', '.join(f'{r:.2f}' for r in cpus)}; target < 2 s)")
    for family in FAMILY_NAMES:
        s = make_narrow(family, shape, 10)
        n = max(args.networks // 10, 100)
        runs = [judge_seconds(s, [Law.uniform(s)], n, calibration, seed) for seed in range(args.repeats)]
        per = statistics.median(r[1] for r in runs) / n
        print(f"  uniform samples of {s.name}: {per * 1e6:.0f} us CPU per network -> {per * args.networks:.2f} s "
              f"per {args.networks:,} (median of {args.repeats} x {n})")
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
