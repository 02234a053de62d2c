"""How many ArchSpecs per second the analytic cost model judges, on one core.

The pre-training filter computes the cost of every candidate a search proposes, so this is
the speed that bounds how many untrained architectures can be screened. Specs are generated
first (excluded from the timing); the figure is the median of several repeats.

Run: python benchmarks/cost_model.py [--specs N] [--repeats R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from hostside.arch.cost import analyze
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import ArchSpec


def _rate(fn, items, min_seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while True:
        for item in items:
            fn(item)
        done += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=500, help="distinct random specs (default 500)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is printed")
    parser.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per repeat")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the target says

    shapes = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 96, 96)]
    specs = [random_spec(seed, 5, 15, input_shape=shapes[seed % len(shapes)]) for seed in range(args.specs)]
    dicts = [s.to_dict() for s in specs]
    nodes = sum(len(s.nodes) for s in specs) / len(specs)

    analyze_rates = [_rate(analyze, specs, args.seconds) for _ in range(args.repeats)]
    parse_rates = [_rate(ArchSpec.from_dict, dicts, args.seconds) for _ in range(args.repeats)]
    print(f"specs: {len(specs)} random, 5-15 layers, {nodes:.1f} nodes on average, inputs {shapes}")
    print(f"cost model: {statistics.median(analyze_rates):,.0f} specs/s "
          f"(analyze a built spec; repeats {', '.join(f'{r:,.0f}' for r in analyze_rates)})")
    print(f"parse + validate + cost: {statistics.median(parse_rates):,.0f} specs/s (ArchSpec.from_dict of JSON dicts)")


if __name__ == "__main__":
    main()
