"""How many ArchSpecs per second the analytic side judges, on one core.

The pre-training filter parses, validates and costs every candidate a search proposes, and
the narrow-space search judges tens of thousands of sampled architectures, so these rates
bound how many untrained architectures can be screened. Targets: the cost model
>= 100,000 specs/s and parse + validate (which includes the cost: shape inference is the
validation) >= 50,000 specs/s.

Figures are per CPU-second of this process (``time.process_time``), pinned to one core, so
they stay meaningful on a machine other jobs are loading (wall-clock rates are printed too,
with the load average); each is the median of several repeats. Specs are generated first
(excluded from the timing).

Run: python benchmarks/cost_model.py [--specs N] [--repeats R] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable, List, Sequence, Tuple

from hostside.arch.cost import analyze
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 96, 96)]


def _rates(fn: Callable, items: Sequence, min_seconds: float) -> Tuple[float, float]:
    """(items per CPU-second, items per wall-second) of ``fn`` over ``items``, repeated for
    at least ``min_seconds`` of CPU time."""
    done, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        cpu = time.process_time() - cpu0
        if cpu >= min_seconds:
            return done / cpu, done / (time.perf_counter() - wall0)


def _measure(label: str, fn: Callable, items: Sequence, repeats: int, seconds: float, target: float = 0) -> None:
    runs: List[Tuple[float, float]] = [_rates(fn, items, seconds) for _ in range(repeats)]
    cpu = statistics.median(r[0] for r in runs)
    wall = statistics.median(r[1] for r in runs)
    verdict = "" if not target else f"  [target {target:,.0f}: {'met' if cpu >= target else 'MISSED'}]"
    print(f"{label}: {cpu:,.0f} specs/s per CPU-second (wall {wall:,.0f}/s; repeats "
          f"{', '.join(f'{r[0]:,.0f}' for r in runs)}){verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=500, help="distinct random specs (default 500)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is printed")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum CPU seconds per repeat")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    specs = [random_spec(seed, 5, 15, input_shape=SHAPES[seed % len(SHAPES)]) for seed in range(args.specs)]
    dicts = [s.to_dict() for s in specs]
    built = [(s.input_shape, s.num_classes, list(s.nodes)) for s in specs]
    nodes = sum(len(s.nodes) for s in specs) / len(specs)
    print(f"specs: {len(specs)} random, 5-15 layers, {nodes:.1f} nodes on average, inputs {SHAPES}")
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())} (cores: {os.cpu_count()})")

    _measure("cost model (analyze a validated spec)", analyze, specs, args.repeats, args.seconds, 100_000)
    _measure("parse + validate + cost (ArchSpec.from_dict of JSON dicts)", ArchSpec.from_dict, dicts,
             args.repeats, args.seconds, 50_000)
    _measure("validate + cost of built nodes (ArchSpec of hostside.arch.blocks Node lists)",
             lambda b: ArchSpec(*b), built, args.repeats, args.seconds)


if __name__ == "__main__":
    main()
