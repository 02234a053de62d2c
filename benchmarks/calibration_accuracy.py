"""How well a calibration predicts the latency of architectures it never saw, and how fast.

Calibrates the ``local`` board (or takes ``--calibration FILE``), then measures a held-out
set that the suite's sampler cannot produce: classic CNNs written by hand (LeNet-, VGG-,
ResNet-, MobileNet-, inception-style at several widths and input sizes) plus
``random_spec``'s generic random family, and prints for every model type in the file
(the MACs+params baseline included) the share of predictions within ±10% / ±20% and the
Spearman rank correlation. Then the batched prediction throughput (median of repeats).

Targets (threads=1, this machine): >= 90% within ±20%, Spearman >= 0.95, >= 10,000 specs/s.

Run: python benchmarks/calibration_accuracy.py [--quick] [--calibration FILE] [--work DIR]
Measurements are kept under --work (default $HOSTSIDE_HOME/calibration-benchmark), so a
rerun only measures what is missing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

from hostside.arch.random_specs import random_spec
from hostside.arch.spec import INPUT, ArchSpec

Shape = Tuple[int, int, int]


class _Seq:
    """A tiny helper to write classic networks as ArchSpec node lists."""

    def __init__(self) -> None:
        self.nodes: List[Dict[str, Any]] = []

    def add(self, op: str, inputs: Any, **attrs: Any) -> str:
        node_id = f"n{len(self.nodes)}"
        sources = inputs if isinstance(inputs, list) else [inputs]
        self.nodes.append({"id": node_id, "op": op, "inputs": sources, **attrs})
        return node_id

    def cbr(self, x: str, out: int, k: int, stride: int = 1, groups: int = 1, act: str = "relu",
            bn: bool = True) -> str:
        """conv (+ batchnorm) (+ activation), the building block of every classic family."""
        x = self.add("conv2d", x, out_channels=out, kernel=k, stride=stride, padding=k // 2, groups=groups,
                     bias=not bn)
        if bn:
            x = self.add("batchnorm", x)
        return self.add(act, x) if act else x

    def spec(self, name: str, shape: Shape, head_from: str, gap: bool = True) -> ArchSpec:
        x = self.add("global_avgpool", head_from) if gap else head_from
        x = self.add("flatten", x)
        self.add("linear", x, out_features=10)
        return ArchSpec.from_dict({"name": name, "input_shape": list(shape), "num_classes": 10, "nodes": self.nodes})


def _w(base: int, width: float) -> int:
    return max(2, int(round(base * width)))


def lenet(width: float, shape: Shape) -> ArchSpec:
    s = _Seq()
    x = s.add("conv2d", INPUT, out_channels=_w(6, width), kernel=5, padding=2)
    x = s.add("avgpool", s.add("tanh", x), kernel=2)
    x = s.add("conv2d", x, out_channels=_w(16, width), kernel=5, padding=2 if shape[1] < 16 else 0)
    x = s.add("avgpool", s.add("tanh", x), kernel=2)
    x = s.add("flatten", x)
    x = s.add("tanh", s.add("linear", x, out_features=_w(120, width)))
    x = s.add("tanh", s.add("linear", x, out_features=_w(84, width)))
    s.add("linear", x, out_features=10)
    return ArchSpec.from_dict({"name": f"lenet-w{width}-{shape[1]}", "input_shape": list(shape), "num_classes": 10,
                               "nodes": s.nodes})


def vgg(width: float, shape: Shape) -> ArchSpec:
    s, x, size = _Seq(), INPUT, shape[1]
    for out, convs in ((64, 2), (128, 2), (256, 3)):
        for _ in range(convs):
            x = s.cbr(x, _w(out, width), 3)
        if size >= 2:
            x, size = s.add("maxpool", x, kernel=2), size // 2
    x = s.add("flatten", x)
    x = s.add("relu", s.add("linear", x, out_features=_w(256, width)))
    x = s.add("dropout", x, p=0.5)
    s.add("linear", x, out_features=10)
    return ArchSpec.from_dict({"name": f"vgg-w{width}-{shape[1]}", "input_shape": list(shape), "num_classes": 10,
                               "nodes": s.nodes})


def resnet(width: float, shape: Shape, blocks: int = 2) -> ArchSpec:
    s = _Seq()
    x = s.cbr(INPUT, _w(16, width), 3)
    channels = _w(16, width)
    for stage, base in enumerate((16, 32, 64)):
        for block in range(blocks):
            out = _w(base, width)
            stride = 2 if stage > 0 and block == 0 else 1
            y = s.cbr(x, out, 3, stride)
            y = s.cbr(y, out, 3, act="")
            shortcut = s.cbr(x, out, 1, stride, act="") if stride > 1 or out != channels else x
            x = s.add("relu", s.add("add", [y, shortcut]))
            channels = out
    return s.spec(f"resnet{6 * blocks + 2}-w{width}-{shape[1]}", shape, x)


def mobilenet(width: float, shape: Shape) -> ArchSpec:
    s = _Seq()
    channels = _w(32, width)
    x = s.cbr(INPUT, channels, 3, 2 if shape[1] >= 32 else 1, act="relu6")
    for out, stride in ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)):
        x = s.cbr(x, channels, 3, stride, groups=channels, act="relu6")
        channels = _w(out, width)
        x = s.cbr(x, channels, 1, act="relu6")
    return s.spec(f"mobilenet-w{width}-{shape[1]}", shape, x)


def mobilenet_v2(width: float, shape: Shape) -> ArchSpec:
    s = _Seq()
    channels = _w(16, width)
    x = s.cbr(INPUT, channels, 3, 2 if shape[1] >= 32 else 1, act="relu6")
    for out, stride, expand in ((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6), (64, 2, 6)):
        out = _w(out, width)
        hidden = channels * expand
        y = s.cbr(x, hidden, 1, act="relu6") if expand > 1 else x
        y = s.cbr(y, hidden, 3, stride, groups=hidden, act="relu6")
        y = s.cbr(y, out, 1, act="")
        x = s.add("add", [y, x]) if stride == 1 and out == channels else y
        channels = out
    x = s.cbr(x, _w(256, width), 1, act="hardswish")
    return s.spec(f"mobilenetv2-w{width}-{shape[1]}", shape, x)


def inception(width: float, shape: Shape) -> ArchSpec:
    s = _Seq()
    x = s.cbr(INPUT, _w(32, width), 3)
    for module in range(2):
        b1 = s.cbr(x, _w(16, width), 1)
        b2 = s.cbr(s.cbr(x, _w(24, width), 1), _w(32, width), 3)
        b3 = s.cbr(s.cbr(x, _w(4, width), 1), _w(8, width), 5)
        b4 = s.cbr(s.add("maxpool", x, kernel=3, stride=1, padding=1), _w(8, width), 1)
        x = s.add("concat", [b1, b2, b3, b4])
        if module == 0 and shape[1] >= 4:
            x = s.add("maxpool", x, kernel=2)
    return s.spec(f"inception-w{width}-{shape[1]}", shape, x)


CLASSIC_FAMILIES = {"lenet": lenet, "vgg": vgg, "resnet": resnet, "mobilenet": mobilenet,
                    "mobilenet_v2": mobilenet_v2, "inception": inception}
HELD_OUT_SHAPES: Tuple[Shape, ...] = ((1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64))
HELD_OUT_WIDTHS = (0.25, 0.5, 1.0)
#: Held-out networks above this are skipped: they would take seconds per measurement.
MAX_MACS = 400_000_000


def held_out_specs() -> List[ArchSpec]:
    """The hand-written classic families at every width and input size, plus 24 random specs."""
    specs = []
    for family, make in CLASSIC_FAMILIES.items():
        for shape in HELD_OUT_SHAPES:
            for width in HELD_OUT_WIDTHS:
                spec = make(width, shape)
                if spec.cost.macs <= MAX_MACS:
                    specs.append(spec)
    for seed in range(24):
        shape = HELD_OUT_SHAPES[seed % len(HELD_OUT_SHAPES)]
        spec = random_spec(90_000 + seed, 4, 14, shape, 10)
        specs.append(ArchSpec.from_dict({**spec.to_dict(), "name": f"random-{seed}-{shape[1]}"}))
    return specs


def _family(name: str) -> str:
    return name.split("-")[0]


def _progress(done: int, total: int) -> None:
    print(f"\r  measured {done}/{total}", end="", flush=True)


def _throughput(calibration: Any, specs: List[ArchSpec], repeats: int) -> float:
    rates = []
    batch = (specs * (10_000 // len(specs) + 1))[:10_000]
    for _ in range(repeats):
        start = time.perf_counter()
        calibration.predict_many(batch)
        rates.append(len(batch) / (time.perf_counter() - start))
    return statistics.median(rates)


def main() -> int:
    from hostside.boards.board import open_board
    from hostside.boards.pool import BoardPool
    from hostside.calibration import load_calibration
    from hostside.calibration.calibrate import TARGET_COLUMN, calibrate, protocol_kwargs
    from hostside.calibration.measure import measure_suite
    from hostside.calibration.models import score
    from hostside.paths import hostside_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, help="score this calibration file instead of calibrating now")
    parser.add_argument("--quick", action="store_true", help="calibrate with the quick suite (~60 models)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, help="where measurements are kept "
                                                  "(default $HOSTSIDE_HOME/calibration-benchmark)")
    parser.add_argument("--repeats", type=int, default=5, help="throughput repeats; the median is printed")
    args = parser.parse_args()
    args.work = args.work or hostside_home() / "calibration-benchmark"

    board = open_board("local")
    if args.calibration:
        calibration = load_calibration(args.calibration)
    else:
        print(f"calibrating the local board ({'quick' if args.quick else 'full'} suite, threads={args.threads}) ...")
        calibration = calibrate([board], args.work / "calibration", threads=args.threads, quick=args.quick,
                                progress=_progress)
        print()
    specs = held_out_specs()
    print(f"measuring {len(specs)} held-out architectures ...")
    pool = BoardPool([board])
    rows = measure_suite(specs, args.work / "held-out",
                         lambda paths: pool.measure_many(paths, **protocol_kwargs(args.threads)), board.name,
                         progress=_progress)
    print()
    measured = {r["spec_sha256"]: float(r[TARGET_COLUMN]) for r in rows}
    specs = [s for s in specs if s.content_hash() in measured]
    y = np.array([measured[s.content_hash()] for s in specs])
    families = np.array([_family(s.name) for s in specs])

    print(f"\nheld-out: {len(specs)} architectures, {y.min():.3f}..{y.max():.1f} ms measured; "
          f"chosen model: {calibration.chosen}")
    print(f"{'model':24s} {'within10':>9s} {'within20':>9s} {'spearman':>9s} {'MAPE':>7s}")
    for kind in calibration.model_kinds:
        predicted, _, _ = calibration.predict_many(specs, model=kind)
        s = score(y, predicted)
        print(f"{kind:24s} {s['within_10pct']:9.1%} {s['within_20pct']:9.1%} {s['spearman']:9.3f} {s['mape']:7.1%}")
    print("\nper family (chosen model):")
    predicted, lo, hi = calibration.predict_many(specs)
    for family in sorted(set(families)):
        mask = families == family
        s = score(y[mask], predicted[mask])
        covered = float(np.mean((y[mask] >= lo[mask]) & (y[mask] <= hi[mask])))
        print(f"  {family:14s} n={int(mask.sum()):3d} within10 {s['within_10pct']:6.1%} within20 "
              f"{s['within_20pct']:6.1%} spearman {s['spearman']:6.3f} interval coverage {covered:6.1%}")
    rate = _throughput(calibration, specs, args.repeats)
    print(f"\nbatched prediction throughput: {rate:,.0f} specs/s (median of {args.repeats}, 10,000 specs a batch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
