"""Precision analysis speed and the accuracy of trained digits CNNs per number format.

Run: ``python benchmarks/precision.py [--repeats 3] [--epochs 10]``. Trains five digits CNNs
(the reference CNN at five widths) with the project's trainer, then prints

- the seconds for the full 184-type T(w,t) grid (extrinsic rounding) of the reference CNN on
  its validation split, on one core: median of ``--repeats`` runs, wall and CPU seconds, with
  and without building the per-node sessions (target: under 10 s);
- a table of test accuracy under float, half, T(4,3), fx16 (extrinsic and EA4CNN's
  multiplication-only) and onnxruntime INT8, with the per-model best type.

Everything runs on one thread (onnxruntime intra-op 1, torch 1; the rounding is numpy
element-wise code). Wall times on a shared machine include waiting for the CPU; the CPU
seconds do not.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hostside.arch.examples import digits_small_cnn
from hostside.arch.spec import ArchSpec
from hostside.precision.analysis import analyze_model
from hostside.precision.emulate import OnnxEmulator
from hostside.precision.formats import FX16, grid, parse_format
from hostside.train.datasets import load_dataset
from hostside.train.loop import TrainConfig, train_model
from hostside.train.splits import make_split
from hostside.train.worker import export_and_measure

WIDTHS = ((4, 8), (8, 16), (16, 32), (24, 48), (32, 64))
REFERENCE = 2  # (16, 32): the reference digits CNN itself


def _spec(c1: int, c2: int) -> ArchSpec:
    data = digits_small_cnn()
    data["name"] = f"digits-cnn-{c1}-{c2}"
    data["nodes"][0]["out_channels"] = c1
    data["nodes"][3]["out_channels"] = c2
    return ArchSpec.from_dict(data)


def _time_grid(model: Path, x, y, repeats: int):
    formats = grid()
    walls, cpus, loop_walls = [], [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        emulator = OnnxEmulator(model)
        loop = time.perf_counter()
        for fmt in formats:
            emulator.evaluate(x, y, fmt)
        loop_walls.append(time.perf_counter() - loop)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), statistics.median(loop_walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    dataset = load_dataset("digits")
    split = make_split(dataset, 0)
    print(f"digits: {len(split.train)} train / {len(split.val)} val / {len(split.test)} test; "
          f"load before: {open('/proc/loadavg').read().split()[:3]}")
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for i, (c1, c2) in enumerate(WIDTHS):
            spec = _spec(c1, c2)
            config = TrainConfig(epochs=args.epochs, seed=i)
            result = train_model(spec, dataset, split, config)
            metrics = export_and_measure(spec, dataset, split, config, result, Path(tmp) / spec.name)
            models.append((spec.name, Path(metrics["onnx"])))

        name, reference = models[REFERENCE]
        wall, cpu, loop = _time_grid(reference, dataset.x[split.val], dataset.y[split.val], args.repeats)
        print(f"\nfull 184-type grid, {name}, {len(split.val)} validation images, one core, median of "
              f"{args.repeats}: {wall:.2f} s wall ({loop:.2f} s without building the sessions), "
              f"{cpu:.2f} s CPU; load after: {open('/proc/loadavg').read().split()[:3]}")

        print(f"\ntest accuracy (%) on {len(split.test)} images; best type = fewest bits within 1 point of float "
              f"(full grid)")
        header = ["model", "params", "float", "half", "T(4,3)", "fx16", "fx16 mult", "int8", "best type"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        named = [FX16, parse_format("int8")]  # half = T(5,10) and T(4,3) are grid rows
        for name, path in models:
            with tempfile.TemporaryDirectory() as out:
                analysis = analyze_model(path, dataset, split.test, grid() + named, train_indices=split.train,
                                         int8_path=Path(out) / "int8.onnx")
            rows = {r["format"]: r for r in analysis["formats"]}
            mult = OnnxEmulator(path).evaluate(dataset.x[split.test], dataset.y[split.test], FX16, "multiplication")
            best = analysis["best"]

            def pct(v):
                return "NaN" if v is None else f"{100 * v:.2f}"

            cells = [name, f"{analysis['params']:,}", pct(analysis["float"]["accuracy"]), pct(rows["T(5,10)"]["accuracy"]),
                     pct(rows["T(4,3)"]["accuracy"]), pct(rows["fx16"]["accuracy"]), pct(mult.to_dict()["accuracy"]),
                     pct(rows["int8"]["accuracy"]),
                     f"{best['format']} ({best['bits']} bit, {pct(best['accuracy'])})" if best else "none"]
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
