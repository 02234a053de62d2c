"""How well calibrations predict latency of CNN families they never saw, on this machine.

One command does it all, in one session so that every figure sees the same conditions:

1. a fresh calibration of the ``local`` board (full suite, or ``--quick``; or ``--calibration
   FILE`` to score an existing one);
2. a held-out set no calibration ever fits on: classic CNNs (LeNet, VGG, ResNet, MobileNet v1/v2,
   inception) at several widths and input sizes, ``random_spec``'s generic family, and families
   the suite's sampler cannot produce (kernels 2/4/7, non-square kernels, very narrow and very
   wide layers, depthwise stacks, DenseNet-style concat blocks with pre-activation batchnorms,
   bottleneck residuals), inputs 8x8..96x96, latencies ~10 µs..50 ms;
3. those held-out models timed by an independent onnxruntime loop in this process (not the
   device agent), interleaved with the calibration's own measuring: after every chunk of suite
   models, the next few held-out ones, so both see the same load;
4. with ``--transfer``: the threads=1 calibration transferred to threads=2 from 10 samples, and a
   full threads=2 calibration, both scored on the held-out set timed at 2 threads; with
   ``--arm BOARD`` also to an emulated ARM board (calibrations into a scratch directory).

Printed: per calibration and model kind the share within ±10 % / ±20 %, Spearman, MAPE and the
90 % interval's coverage; per family (held-out families marked ``*``); the share for models
under 0.1 ms; load averages; the predicted-vs-measured PNG (held-out families marked).

Targets (threads=1): full >= 95 % within ±10 %, quick >= 90 %, on the unseen families (classic
CNNs, random families, NB201 networks); transfer >= 80 % within ±20 %, Spearman >= 0.95.

Latency figures need a quiet machine. First printed: the load average and the machine's noise
floor, the share of models on which two interleaved independent timing loops (two sessions of
one model, run alternately) agree within ±10 %: no prediction can be judged finer than that, so
every accuracy is printed beside it. Above a 1-minute load of 0.5 the benchmark refuses to run
(``--force`` runs it anyway, for a correctness check only).

Run: python benchmarks/calibration_accuracy.py [--quick] [--transfer] [--arm BOARD]
     [--calibration FILE] [--work DIR] [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from hostside.arch.blocks import SpecBuilder
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import INPUT, ArchSpec, SpecError

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

HELD_OUT_SHAPES: Tuple[Shape, ...] = ((1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 96, 96))
HELD_OUT_WIDTHS = (0.25, 0.5, 1.0)
#: Held-out networks above this are skipped: ~50 ms single-threaded on a desktop core.
MAX_MACS = 400_000_000
MIN_TIME_S = 0.3
WARMUP = 5
MIN_RUNS = 10
REPEAT_MODELS = 30
#: Held-out models the noise floor is measured on (spread over the latency range).
NOISE_MODELS = 16
MAX_LOAD = 0.5
NB201_HELD_OUT = 16


# -- families the calibration suite cannot produce ------------------------------------------

def _odd_kernels(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x, size = INPUT, shape[1]
    for _ in range(int(rng.integers(2, 5))):
        k = int(rng.choice([2, 4, 7]))
        x = b.conv_bn_act(x, int(rng.choice([8, 12, 24, 40])), k, padding=k // 2 if k % 2 else 0,
                          act=str(rng.choice(["relu", "relu6"])))
        size = b.shape(x)[1]
        if size >= 8:
            x = b.pool(x, "max", 2)
    b.head(x, 10, global_pool=True)
    return b


def _non_square(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = INPUT
    width = int(rng.choice([8, 16, 24, 32]))
    for _ in range(int(rng.integers(2, 5))):
        for kernel in ([1, 3], [3, 1]) if rng.random() < 0.5 else ([1, 5], [5, 1]):
            x = b.conv_bn_act(x, width, kernel)
        if b.shape(x)[1] >= 8 and rng.random() < 0.6:
            x = b.pool(x, "avg", 2)
        width = min(width * 2, 128)
    b.head(x, 10, global_pool=True)
    return b


def _narrow(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = INPUT
    for i in range(int(rng.integers(5, 11))):
        x = b.conv_bn_act(x, int(rng.integers(2, 5)), 3, act="relu")
        if i % 3 == 2 and b.shape(x)[1] >= 8:
            x = b.pool(x, "max", 2)
    b.head(x, 10, global_pool=bool(rng.random() < 0.5))
    return b


def _wide(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = b.conv_bn_act(INPUT, int(rng.choice([64, 128])), 3)
    if b.shape(x)[1] > 16:
        x = b.pool(x, "max", 2)
    if b.shape(x)[1] > 16:
        x = b.pool(x, "max", 2)
    for _ in range(int(rng.integers(1, 3))):
        x = b.conv_bn_act(x, int(rng.choice([256, 384, 512])), int(rng.choice([1, 3])))
    b.head(x, 10, global_pool=True)
    return b


def _depthwise_stack(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = b.conv_bn_act(INPUT, int(rng.choice([16, 32, 48])), 3, stride=2 if shape[1] >= 32 else 1)
    for _ in range(int(rng.integers(4, 9))):
        channels = b.channels(x)
        k = int(rng.choice([3, 5]))
        x = b.conv_bn_act(x, channels, k, stride=2 if b.shape(x)[1] >= 16 and rng.random() < 0.3 else 1,
                          groups=channels, act="relu6")
    b.head(x, 10, global_pool=True)
    return b


def _dense(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = b.conv_bn_act(INPUT, 16, 3)
    for stage in range(int(rng.integers(1, 3))):
        x = b.dense_block(x, int(rng.integers(2, 5)), int(rng.choice([8, 12, 16])), bottleneck=int(rng.choice([0, 4])))
        if b.shape(x)[1] >= 4:
            x = b.transition(x, max(8, b.channels(x) // 2))
    b.head(x, 10, global_pool=True)
    return b


def _bottleneck(rng: np.random.Generator, shape: Shape) -> SpecBuilder:
    b = SpecBuilder(shape)
    x = b.conv_bn_act(INPUT, 32, 3, stride=2 if shape[1] >= 48 else 1)
    for _ in range(int(rng.integers(2, 5))):
        out = int(rng.choice([32, 64, 128]))
        stride = 2 if b.shape(x)[1] >= 8 and rng.random() < 0.4 else 1
        x = b.bottleneck(x, out, max(8, out // 4), stride=stride)
    b.head(x, 10, global_pool=True)
    return b


NEW_FAMILIES: Dict[str, Callable[[np.random.Generator, Shape], SpecBuilder]] = {
    "odd_kernels": _odd_kernels, "non_square": _non_square, "narrow": _narrow, "wide": _wide,
    "depthwise_stack": _depthwise_stack, "dense_concat": _dense, "bottleneck": _bottleneck,
}
NEW_PER_FAMILY = 10


def held_out_specs() -> List[Tuple[str, ArchSpec]]:
    """(family, spec) of the whole held-out set, the same on every run."""
    out: List[Tuple[str, ArchSpec]] = []
    for family, make in CLASSIC_FAMILIES.items():
        for shape in HELD_OUT_SHAPES[:4]:
            for width in HELD_OUT_WIDTHS:
                spec = make(width, shape)
                if spec.cost.macs <= MAX_MACS:
                    out.append((family, spec))
    out += nb201_specs(NB201_HELD_OUT)
    for seed in range(20):
        shape = HELD_OUT_SHAPES[seed % len(HELD_OUT_SHAPES)]
        spec = random_spec(90_000 + seed, 4, 14, shape, 10)
        out.append(("random", ArchSpec.from_dict({**spec.to_dict(), "name": f"random-{seed}-{shape[1]}"})))
    rng = np.random.default_rng(31_337)
    for family, make in NEW_FAMILIES.items():
        made = 0
        for attempt in range(20 * NEW_PER_FAMILY):
            if made == NEW_PER_FAMILY:
                break
            shape = HELD_OUT_SHAPES[int(rng.integers(len(HELD_OUT_SHAPES)))]
            try:
                spec = make(rng, shape).build(name=f"{family}-{made}-{shape[1]}")
            except SpecError:
                continue
            if spec.cost.macs <= MAX_MACS:
                out.append((family, spec))
                made += 1
    return out


def nb201_specs(count: int, seed: int = 201) -> List[Tuple[str, ArchSpec]]:
    """``count`` NAS-Bench-201 networks of random connected cells (CIFAR input)."""
    from hostside.arch.nb201 import NB201_OPS, format_arch_str, is_connected, nb201_spec

    rng = np.random.default_rng(seed)
    out: List[Tuple[str, ArchSpec]] = []
    while len(out) < count:
        ops = [NB201_OPS[int(i)] for i in rng.integers(len(NB201_OPS), size=6)]
        if is_connected(ops):
            out.append(("nb201", nb201_spec(format_arch_str(ops))))
    return out


# -- the independent timing loop ------------------------------------------------------------

def _session(path: Path, threads: int) -> Tuple[Any, Dict[str, np.ndarray]]:
    """An onnxruntime session with the agent's settings (sequential, all graph optimisations,
    no spinning) and a random input for it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([1] + list(inp.shape[1:])).astype(np.float32)
    return session, {inp.name: x}


def interleaved_pair_ms(path: Path, threads: int) -> Tuple[float, float]:
    """Median latency (ms) of one model by two independent sessions whose runs alternate, so
    both see the same moments of the machine: how far apart they land is pure timing noise."""
    loops = [_session(path, threads) for _ in range(2)]
    for session, feed in loops:
        for _ in range(WARMUP):
            session.run(None, feed)
    samples: List[List[float]] = [[], []]
    deadline = time.perf_counter() + 2 * MIN_TIME_S
    while len(samples[1]) < MIN_RUNS or time.perf_counter() < deadline:
        for k, (session, feed) in enumerate(loops):
            start = time.perf_counter_ns()
            session.run(None, feed)
            samples[k].append((time.perf_counter_ns() - start) / 1e6)
    return float(statistics.median(samples[0])), float(statistics.median(samples[1]))


def noise_floor(items: List[Tuple[str, ArchSpec]], threads: int, count: int = NOISE_MODELS) -> Dict[str, Any]:
    """The share of ``count`` held-out models (spread over the list) on which two interleaved
    timing loops agree within ±10 % (and ±5 %)."""
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx

    picks = [items[i] for i in np.unique(np.linspace(0, len(items) - 1, min(count, len(items))).astype(int))]
    ratios = []
    with tempfile.TemporaryDirectory(prefix="noise-") as tmp:
        for _, spec in picks:
            path = Path(tmp) / "m.onnx"
            export_onnx(build_module(spec), path, check=False)
            a, b = interleaved_pair_ms(path, threads)
            ratios.append(a / b)
    change = np.abs(np.array(ratios) - 1.0)
    return {"models": len(ratios), "within_10pct": float(np.mean(change <= 0.10)),
            "within_5pct": float(np.mean(change <= 0.05)), "median_abs_change": float(np.median(change)),
            "load_1min": os.getloadavg()[0]}


def time_onnx(path: Path, threads: int) -> float:
    """Median batch-1 latency (ms) by a plain onnxruntime loop, with the agent's session
    settings (sequential, all graph optimisations, no spinning) but none of its code."""
    session, feed = _session(path, threads)
    for _ in range(WARMUP):
        session.run(None, feed)
    samples: List[float] = []
    deadline = time.perf_counter() + MIN_TIME_S
    while len(samples) < MIN_RUNS or time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return float(statistics.median(samples))


class HeldOut:
    """The held-out set's timings at one thread count, measured a few at a time (so they can
    be interleaved with a calibration) and kept in a JSON file of the work directory."""

    def __init__(self, items: List[Tuple[str, ArchSpec]], threads: int, path: Path,
                 timer: Optional[Callable[[Path], float]] = None):
        self.items, self.threads, self.path = items, threads, path
        self.timer = timer or (lambda p: time_onnx(p, threads))
        self.measured: Dict[str, Dict[str, Any]] = json.loads(path.read_text()) if path.exists() else {}

    def pending(self) -> List[Tuple[str, ArchSpec]]:
        return [(f, s) for f, s in self.items if s.content_hash() not in self.measured]

    def step(self, count: int) -> None:
        from hostside.arch.build import build_module
        from hostside.arch.export import export_onnx

        with tempfile.TemporaryDirectory(prefix="heldout-") as tmp:
            for family, spec in self.pending()[:count]:
                path = Path(tmp) / "m.onnx"
                export_onnx(build_module(spec), path, check=False)
                try:
                    latency = self.timer(path)
                except Exception as exc:  # a board error for one model: recorded, not fatal
                    print(f"\n  {spec.name}: not measured ({exc})", flush=True)
                    latency = float("nan")
                self.measured[spec.content_hash()] = {"family": family, "name": spec.name, "latency_ms": latency,
                                                      "load_1min": os.getloadavg()[0]}
        self.path.write_text(json.dumps(self.measured, indent=1))

    def interleave(self, chunks: int) -> Callable[[int, int], None]:
        """A calibration progress callback that times the next share of held-out models
        after each chunk the calibration measured."""
        per_chunk = max(1, -(-len(self.items) // max(chunks, 1)))
        last = [-1]

        def progress(done: int, total: int) -> None:
            print(f"\r  calibration {done}/{total}, held-out {len(self.measured)}/{len(self.items)}", end="",
                  flush=True)
            if done != last[0] and done > 0:
                self.step(per_chunk)
            last[0] = done

        return progress

    def arrays(self) -> Tuple[List[ArchSpec], np.ndarray, np.ndarray, np.ndarray]:
        specs, y, families, loads = [], [], [], []
        for family, spec in self.items:
            entry = self.measured.get(spec.content_hash())
            if entry and np.isfinite(entry["latency_ms"]):
                specs.append(spec)
                y.append(entry["latency_ms"])
                families.append(family)
                loads.append(entry["load_1min"])
        return specs, np.array(y), np.array(families), np.array(loads)


# -- scoring and printing -------------------------------------------------------------------

def _row(label: str, y: np.ndarray, predicted: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Dict[str, Any]:
    from hostside.calibration.models import score

    s = score(y, predicted)
    s["interval_coverage"] = float(np.mean((y >= lo) & (y <= hi)))
    s["label"] = label
    return s


def _print_rows(title: str, rows: List[Dict[str, Any]], floor: Optional[float] = None) -> None:
    print(f"\n{title}")
    print(f"  {'':34s} {'n':>4s} {'±10%':>7s} {'noise floor':>11s} {'±20%':>7s} {'Spearman':>9s} {'MAPE':>7s} "
          f"{'90%-interval':>13s}")
    shown = f"{floor:11.1%}" if floor is not None else f"{'-':>11s}"
    for r in rows:
        print(f"  {r['label']:34s} {r['count']:4d} {r['within_10pct']:7.1%} {shown} {r['within_20pct']:7.1%} "
              f"{r['spearman']:9.3f} {r['mape']:7.1%} {r['interval_coverage']:13.1%}")


def score_calibration(name: str, calibration: Any, held: HeldOut, png: Optional[Path] = None,
                      floor: Optional[float] = None) -> Dict[str, Any]:
    """Print and return the figures of one calibration on the held-out timings, each share
    within ±10 % beside the noise floor (``floor``: the share two timing loops agree on)."""
    specs, y, families, loads = held.arrays()
    rows = []
    for kind in calibration.model_kinds:
        predicted, lo, hi = calibration.predict_many(specs, model=kind)
        mark = "*" if kind == calibration.chosen else " "
        rows.append(_row(f"{kind}{mark}", y, predicted, lo, hi))
    predicted, lo, hi = calibration.predict_many(specs)
    small = y < 0.1
    if small.sum() > 2:
        rows.append(_row("chosen, models < 0.1 ms", y[small], predicted[small], lo[small], hi[small]))
    new = np.isin(families, list(NEW_FAMILIES))
    rows.append(_row("chosen, held-out families only", y[new], predicted[new], lo[new], hi[new]))
    _print_rows(f"{name}: {len(y)} held-out models, {y.min():.3f}..{y.max():.1f} ms, threads={held.threads}, "
                f"1-min load {loads.min():.1f}..{loads.max():.1f} (median {np.median(loads):.1f}) while timed", rows,
                floor)
    family_rows = []
    for family in list(CLASSIC_FAMILIES) + ["random", "nb201"] + list(NEW_FAMILIES):
        mask = families == family
        if mask.sum():
            label = f"{'*' if family in NEW_FAMILIES else ' '} {family}"
            family_rows.append(_row(label, y[mask], predicted[mask], lo[mask], hi[mask]))
    _print_rows(f"{name}, per family (chosen model; * = a family the suite cannot produce)", family_rows, floor)
    if png is not None:
        _plot(name, y, predicted, families, png)
        print(f"  plot: {png}")
    return {"name": name, "rows": rows, "families": family_rows}


def _plot(title: str, y: np.ndarray, predicted: np.ndarray, families: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    lo, hi = float(y.min()) / 1.5, float(y.max()) * 1.5
    line = np.array([lo, hi])
    ax.fill_between(line, line / 1.2, line * 1.2, color="tab:green", alpha=0.12, label="±20%")
    ax.fill_between(line, line / 1.1, line * 1.1, color="tab:green", alpha=0.25, label="±10%")
    ax.plot(line, line, color="black", lw=0.8)
    colours = plt.get_cmap("tab20")
    for i, family in enumerate(list(CLASSIC_FAMILIES) + ["random"] + list(NEW_FAMILIES)):
        mask = families == family
        if mask.any():
            new = family in NEW_FAMILIES
            ax.scatter(y[mask], predicted[mask], s=28 if new else 14, marker="D" if new else "o",
                       edgecolors="black" if new else "none", linewidths=0.5, color=colours(i % 20),
                       label=f"{family} (held-out family)" if new else family)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured by the independent loop (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def repeatability(held: HeldOut, count: int = REPEAT_MODELS) -> Dict[str, Any]:
    """The ceiling any prediction can reach here: ``count`` held-out models (spread over the
    latency range) timed a second time by the same loop; the share whose two timings agree
    within ±10 % / ±20 % shows how much of a miss is the machine's noise, not the model's."""
    specs, y, families, _ = held.arrays()
    order = np.argsort(y)
    picks = order[np.unique(np.linspace(0, len(order) - 1, min(count, len(order))).astype(int))]
    again = HeldOut([(families[i], specs[i]) for i in picks], held.threads, held.path.with_suffix(".repeat.json"),
                    held.timer)
    again.step(len(picks))
    _, second, _, loads = again.arrays()
    ratio = second / y[picks][:len(second)]
    out = {"models": int(len(ratio)), "within_10pct": float(np.mean(np.abs(ratio - 1) <= 0.1)),
           "within_20pct": float(np.mean(np.abs(ratio - 1) <= 0.2)), "median_abs_change": float(np.median(
               np.abs(ratio - 1))), "load_1min_median": float(np.median(loads))}
    print(f"\nrepeatability of the independent loop itself ({out['models']} held-out models timed twice, 1-min "
          f"load {out['load_1min_median']:.1f}): {out['within_10pct']:.0%} agree within ±10 %, "
          f"{out['within_20pct']:.0%} within ±20 % (median change {out['median_abs_change']:.1%}); no model can "
          f"beat this ceiling on this machine now")
    return out


def _throughput(calibration: Any, specs: List[ArchSpec], repeats: int) -> float:
    rates = []
    batch = (specs * (10_000 // len(specs) + 1))[:10_000]
    for _ in range(repeats):
        start = time.perf_counter()
        calibration.predict_many(batch)
        rates.append(len(batch) / (time.perf_counter() - start))
    return statistics.median(rates)


def _chunks(size: int) -> int:
    from hostside.calibration.calibrate import REFINE_SHARE
    from hostside.calibration.measure import CHUNK

    return -(-(size + size // REFINE_SHARE) // CHUNK)


def calibrate_interleaved(board: Any, out: Path, threads: int, quick: bool, held: HeldOut,
                          allow_emulated: bool = False, size: Optional[int] = None) -> Tuple[Any, float]:
    """A fresh calibration with the held-out timings interleaved; (calibration, seconds the
    calibration itself spent measuring and fitting)."""
    from hostside.calibration.calibrate import calibrate
    from hostside.calibration.suite import DEFAULT_SIZE, QUICK_SIZE

    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    spent = [0.0]
    interleave = held.interleave(_chunks(size))

    def progress(done: int, total: int) -> None:
        start = time.perf_counter()
        interleave(done, total)
        spent[0] += time.perf_counter() - start

    start = time.perf_counter()
    calibration = calibrate([board], out, threads=threads, quick=quick, size=size, progress=progress,
                            allow_emulated=allow_emulated)
    print()
    return calibration, time.perf_counter() - start - spent[0]


def main() -> int:
    from hostside.boards.board import open_board
    from hostside.calibration import load_calibration
    from hostside.calibration.transfer import transfer
    from hostside.paths import hostside_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibration", type=Path, help="score this calibration file instead of calibrating now")
    parser.add_argument("--quick", action="store_true", help="calibrate with the quick suite")
    parser.add_argument("--transfer", action="store_true", help="also transfer to threads=2 from 10 samples and "
                                                               "compare with a threads=2 calibration (full, or "
                                                               "quick with --quick)")
    parser.add_argument("--arm", metavar="BOARD", help="also transfer to this emulated ARM board (scratch dirs)")
    parser.add_argument("--samples", type=int, default=10, help="transfer samples (default 10)")
    parser.add_argument("--work", type=Path, help="work directory (default: a new one under "
                                                  "$HOSTSIDE_HOME/calibration-benchmark)")
    parser.add_argument("--repeats", type=int, default=5, help="throughput repeats; the median is printed")
    parser.add_argument("--force", action="store_true", help=f"run even above a 1-minute load of {MAX_LOAD} "
                                                             f"(the figures then mean little)")
    args = parser.parse_args()
    load = os.getloadavg()
    print(f"load average {' '.join(f'{v:.2f}' for v in load)}")
    if load[0] > MAX_LOAD and not args.force:
        print(f"refusing: the 1-minute load {load[0]:.2f} is above {MAX_LOAD}, so timings would measure the other "
              f"work, not the models; run on a quiet machine or pass --force", file=sys.stderr)
        return 2
    items = held_out_specs()
    floor = noise_floor(items, 1)
    print(f"noise floor: two interleaved timing loops agree within ±10 % on {floor['within_10pct']:.0%} of "
          f"{floor['models']} models (±5 %: {floor['within_5pct']:.0%}; median change "
          f"{floor['median_abs_change']:.1%}); no accuracy below can be judged finer than that")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    work = args.work or hostside_home() / "calibration-benchmark" / stamp
    work.mkdir(parents=True, exist_ok=True)
    print(f"work directory {work}")
    new = sum(1 for f, _ in items if f in NEW_FAMILIES)
    print(f"held-out set: {len(items)} models ({new} of families the suite cannot produce)")

    board = open_board("local")
    held1 = HeldOut(items, 1, work / "held-out-threads1.json")
    summary: Dict[str, Any] = {"load_average_start": list(os.getloadavg()), "noise_floor": floor}
    within = floor["within_10pct"]
    if args.calibration:
        source = load_calibration(args.calibration)
        held1.step(len(items))
        name = f"calibration {args.calibration}"
    else:
        mode = "quick" if args.quick else "full"
        print(f"calibrating the local board ({mode} suite, threads=1), held-out timings interleaved ...")
        source, seconds = calibrate_interleaved(board, work / f"calibration-{mode}-threads1", 1, args.quick, held1)
        name = f"fresh {mode} calibration, threads=1 ({seconds:.0f} s measuring + fitting)"
        summary["calibration_seconds"] = seconds
    held1.step(len(items))
    summary["threads1"] = score_calibration(name, source, held1, work / "predicted_vs_measured_threads1.png", within)
    summary["repeatability"] = repeatability(held1)
    specs = held1.arrays()[0]
    print(f"\nbatched prediction throughput: {_throughput(source, specs, args.repeats):,.0f} specs/s "
          f"(median of {args.repeats}, 10,000 specs a batch)")

    if args.transfer:
        source_path = source.path
        held2 = HeldOut(items, 2, work / "held-out-threads2.json")
        print("\ntransfer to threads=2 from", args.samples, "samples ...")
        moved = transfer(board, source_path, work / "transfer-threads2", args.samples, threads=2)
        mode = "quick" if args.quick else "full"
        print(f"{mode} calibration at threads=2, held-out timings at 2 threads interleaved ...")
        target, seconds = calibrate_interleaved(board, work / f"calibration-{mode}-threads2", 2, args.quick, held2)
        held2.step(len(items))
        summary["transfer_threads2"] = score_calibration(f"transfer threads1 -> threads2 from {args.samples} samples",
                                                         moved, held2, work / "predicted_vs_measured_transfer2.png",
                                                         within)
        summary[f"{mode}_threads2"] = score_calibration(f"{mode} calibration at threads=2 ({seconds:.0f} s)", target,
                                                        held2, floor=within)
    if args.arm:
        arm = open_board(args.arm)
        # Emulated boards are slow: only the held-out models under ~2 ms natively.
        quick_items = [(f, s) for f, s in items if source.predict(s).latency_ms < 2.0]
        held_arm = HeldOut(quick_items, 1, work / f"held-out-{args.arm}.json",
                           timer=lambda p: _board_median(arm, p))
        print(f"\ntransfer to {args.arm} from {args.samples} samples ...")
        moved = transfer(arm, source.path, work / f"transfer-{args.arm}", args.samples, threads=1,
                         allow_emulated=True)
        print(f"quick calibration of {args.arm} (scratch directory), held-out timings interleaved ...")
        target, seconds = calibrate_interleaved(arm, work / f"calibration-quick-{args.arm}", 1, True, held_arm,
                                                allow_emulated=True)
        held_arm.step(len(quick_items))
        summary["transfer_arm"] = score_calibration(f"transfer to {args.arm} from {args.samples} samples", moved,
                                                    held_arm, work / f"predicted_vs_measured_{args.arm}.png")
        summary["quick_arm"] = score_calibration(f"quick calibration of {args.arm} ({seconds:.0f} s)", target,
                                                 held_arm)
    summary["load_average_end"] = list(os.getloadavg())
    (work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nload average at end {' '.join(f'{v:.2f}' for v in os.getloadavg())}; figures in {work / 'summary.json'}")
    return 0


def _board_median(board: Any, path: Path) -> float:
    """The board's own measurement (an emulated board cannot run our loop in this process)."""
    from hostside.calibration.calibrate import protocol_kwargs

    result = board.measure(path, timeout_s=300.0, **protocol_kwargs(1))
    if result.get("error"):
        raise RuntimeError(result["error"]["message"])
    return float(result["latency_ms"]["median"])


if __name__ == "__main__":
    sys.exit(main())
