"""The calibration suite: a seeded set of architectures to measure once per board.

Why stratified: a regression is only trusted where it has seen data. The suite therefore
draws many candidates from six families that cover what the search spaces build (plain conv
stacks with pooling, depthwise-separable blocks, residual adds, inception-style concat
blocks, FC-heavy heads, and ``random_spec``'s generic mix), each with log-uniform widths and
depths, and then picks from that pool so that log10(MACs) and log10(params) are each spread
evenly over at least four decades (greedy filling of the emptiest bins). Input shapes are
mixed from 1x8x8 to 3x96x96 unless the caller narrows them to one.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.blocks import SpecBuilder
from hostside.arch.random_specs import random_spec
from hostside.arch.spec import INPUT, ArchSpec, SpecError

DEFAULT_SIZE = 240
QUICK_SIZE = 60
DEFAULT_SEED = 2024
DEFAULT_INPUT_SHAPES: Tuple[Tuple[int, int, int], ...] = (
    (1, 8, 8), (1, 16, 16), (1, 28, 28), (3, 32, 32), (3, 48, 48), (3, 64, 64), (3, 96, 96),
)
#: log10 ranges the suite spreads over: MACs 10^3.7..10^8.2, params 10^2.3..10^6.7. The top of
#: the MAC range keeps the slowest model near 20 ms single-threaded on a desktop core, so a
#: quick calibration stays short; a Pi 3B+ runs it in ~0.5 s.
LOG_MACS_RANGE = (3.7, 8.2)
LOG_PARAMS_RANGE = (2.3, 6.7)
#: A separate share of the suite with 20..100 MB of float32 weights (FC-heavy heads), beyond
#: any board's last-level cache, so the fit sees where streaming the weights from DRAM starts
#: to dominate. Kept apart from the even spread: only FC-heavy networks get there, and
#: spreading over this range too would fill a third of the suite with them.
LARGE_WEIGHTS_LOG_PARAMS_RANGE = (6.7, 7.4)
LARGE_WEIGHTS_SHARE = 0.1
_BINS = 9
_POOL_FACTOR = 12
_ACTIVATIONS = ("relu", "relu", "relu", "relu6", "hardswish", "silu", "sigmoid", "tanh", "elu")


class _Net(SpecBuilder):
    """The shared block builder with this network's activation and batchnorm choice; not
    strict, so a draw that does not fit uses the same random numbers as one that does."""

    def __init__(self, rng: np.random.Generator, input_shape: Tuple[int, int, int]):
        super().__init__(input_shape, id_format="n{index}_{op}", strict=False)
        self.rng = rng
        self.act = str(rng.choice(_ACTIVATIONS))
        self.use_bn = bool(rng.random() < 0.6)

    def conv(self, src: str, out_channels: int, kernel: int, stride: int = 1, groups: int = 1,
             activate: bool = True) -> str:
        return self.conv_bn_act(src, out_channels, kernel, stride=stride, groups=groups, bn=self.use_bn,
                                act=self.act if activate else None)

    def random_pool(self, src: str) -> str:
        return self.pool(src, "max" if self.rng.random() < 0.6 else "avg", kernel=2, stride=2)

    def finish(self, src: str, num_classes: int, global_pool: bool) -> Dict[str, Any]:
        self.head(src, num_classes, global_pool=global_pool)
        return self.to_dict(num_classes)


def aligned_width(rng: np.random.Generator, low: float = 4, high: float = 192) -> int:
    """A log-uniform channel count; most are rounded to a multiple of 4, 8 or 16 as search
    spaces choose them, because runtimes take other kernels for aligned channel counts
    (onnxruntime's blocked layout on x86) and the suite must cover both paths."""
    width = max(2, int(round(np.exp(rng.uniform(np.log(low), np.log(high))))))
    if rng.random() < 0.6:
        step = int(rng.choice([4, 8, 16]))
        width = max(step, int(round(width / step)) * step)
    return width


def _plain(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    net = _Net(rng, shape)
    x, size, width = INPUT, shape[1], aligned_width(rng)
    for stage in range(int(rng.integers(1, 5))):
        for _ in range(int(rng.integers(1, 4))):
            x = net.conv(x, width, int(rng.choice([1, 3, 3, 5])))
        if size >= 4 and rng.random() < 0.8:
            x = net.random_pool(x) if rng.random() < 0.6 else net.conv(x, width, 3, stride=2)
            size //= 2
        width = min(int(width * rng.choice([1, 1.5, 2])), 512)
    return net.finish(x, num_classes, global_pool=bool(rng.random() < 0.6))


def _depthwise(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    net = _Net(rng, shape)
    net.act = str(rng.choice(["relu6", "relu", "hardswish"]))
    width = aligned_width(rng, 4, 96)
    x = net.conv(INPUT, width, 3, stride=2 if shape[1] >= 32 else 1)
    size = shape[1] // 2 if shape[1] >= 32 else shape[1]
    for _ in range(int(rng.integers(1, 7))):
        expand = int(rng.choice([1, 1, 3, 6]))
        stride = 2 if size >= 4 and rng.random() < 0.4 else 1
        out = min(int(width * rng.choice([1, 1, 1.5, 2])), 512)
        kernel = int(rng.choice([3, 3, 5]))
        residual = stride == 1 and out == width and rng.random() < 0.7
        x = net.inverted_residual(x, out, kernel, stride=stride, expand=expand, residual=residual, act=net.act,
                                  bn=net.use_bn)
        width, size = out, (size + 1) // 2 if stride == 2 else size
    if rng.random() < 0.5:
        x = net.conv(x, min(width * 4, 1024), 1)
    return net.finish(x, num_classes, global_pool=True)


def _residual(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    net = _Net(rng, shape)
    net.use_bn = True
    width = aligned_width(rng, 4, 128)
    x = net.conv(INPUT, width, int(rng.choice([3, 5, 7])), stride=2 if shape[1] >= 48 else 1)
    size = shape[1] // 2 if shape[1] >= 48 else shape[1]
    for _ in range(int(rng.integers(1, 6))):
        down = size >= 4 and rng.random() < 0.4
        out = min(width * 2, 512) if down else width
        x = net.residual(x, out, stride=2 if down else 1, act=net.act)
        width, size = out, (size + 1) // 2 if down else size
    return net.finish(x, num_classes, global_pool=True)


def _inception(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    net = _Net(rng, shape)
    width = aligned_width(rng, 4, 96)
    x = net.conv(INPUT, width, 3)
    size = shape[1]
    for _ in range(int(rng.integers(1, 4))):
        b = aligned_width(rng, 4, 96)
        five, pooled = rng.random() < 0.6, rng.random() < 0.6
        x = net.inception(x, branch1=b, branch3=(b, b), branch5=(max(b // 2, 2), b) if five else None,
                          pool_proj=b if pooled else None, act=net.act, bn=net.use_bn)
        if size >= 4 and rng.random() < 0.6:
            x, size = net.random_pool(x), size // 2
    return net.finish(x, num_classes, global_pool=bool(rng.random() < 0.7))


def _fc_heavy(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    net = _Net(rng, shape)
    x = INPUT
    if rng.random() < 0.6:
        x = net.conv(x, aligned_width(rng, 2, 32), 3)
        if shape[1] >= 16:
            x = net.random_pool(x)
        if shape[1] >= 48:
            x = net.random_pool(x)
    x = net.add("flatten", x)
    for _ in range(int(rng.integers(1, 4))):
        x = net.add("linear", x, out_features=aligned_width(rng, 16, 2048), bias=True)
        x = net.add(net.act, x)
        if rng.random() < 0.3:
            x = net.add("dropout", x, p=0.25)
    net.add("linear", x, out_features=num_classes)
    return net.to_dict(num_classes)


def _generic(rng: np.random.Generator, shape: Tuple[int, int, int], num_classes: int) -> Dict[str, Any]:
    return random_spec(int(rng.integers(2**31)), 3, 12, shape, num_classes).to_dict()


FAMILIES: Dict[str, Callable[[np.random.Generator, Tuple[int, int, int], int], Dict[str, Any]]] = {
    "plain": _plain,
    "depthwise": _depthwise,
    "residual": _residual,
    "inception": _inception,
    "fc_heavy": _fc_heavy,
    "generic": _generic,
}


def _candidates(rng: np.random.Generator, count: int, input_shapes: Sequence[Tuple[int, int, int]],
                num_classes: int) -> List[ArchSpec]:
    """Valid specs inside the suite's MAC and parameter ranges, families taken in turn."""
    names = list(FAMILIES)
    found: List[ArchSpec] = []
    attempts = 0
    while len(found) < count:
        attempts += 1
        if attempts > 50 * count:
            raise RuntimeError("the calibration suite sampler found too few specs in range")
        family = names[attempts % len(names)]
        shape = tuple(input_shapes[int(rng.integers(len(input_shapes)))])
        try:
            data = FAMILIES[family](rng, shape, num_classes)
            data["name"] = f"{family}-{len(found)}"
            spec = ArchSpec.from_dict(data)
        except SpecError:
            continue
        macs, params = spec.cost.macs, spec.cost.deployed_params
        if LOG_MACS_RANGE[0] <= np.log10(macs) <= LOG_MACS_RANGE[1] and \
                LOG_PARAMS_RANGE[0] <= np.log10(params) <= LARGE_WEIGHTS_LOG_PARAMS_RANGE[1]:
            found.append(spec)
    return found


def _bin(value: float, bounds: Tuple[float, float]) -> int:
    position = (value - bounds[0]) / (bounds[1] - bounds[0])
    return min(int(position * _BINS), _BINS - 1)


def calibration_suite(size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                      input_shapes: Optional[Sequence[Tuple[int, int, int]]] = None,
                      num_classes: int = 10) -> List[ArchSpec]:
    """``size`` specs, the same for the same arguments: ``LARGE_WEIGHTS_SHARE`` of them spread
    over the large-weights range of log params, the rest spread evenly over log MACs and log
    params (see ``_spread``)."""
    shapes = [tuple(s) for s in (input_shapes or DEFAULT_INPUT_SHAPES)]
    rng = np.random.default_rng(seed)
    pool = _candidates(rng, _POOL_FACTOR * size, shapes, num_classes)
    large = [s for s in pool if np.log10(s.cost.deployed_params) > LOG_PARAMS_RANGE[1]]
    chosen: List[ArchSpec] = []
    # For evenly spaced targets over the range, the closest candidate not yet taken.
    for target in np.linspace(*LARGE_WEIGHTS_LOG_PARAMS_RANGE, round(size * LARGE_WEIGHTS_SHARE)):
        if large:
            closest = min(range(len(large)), key=lambda i: abs(np.log10(large[i].cost.deployed_params) - target))
            chosen.append(large.pop(closest))
    regular = [s for s in pool if np.log10(s.cost.deployed_params) <= LOG_PARAMS_RANGE[1]]
    return chosen + _spread(regular, size - len(chosen))


def _spread(pool: List[ArchSpec], size: int) -> List[ArchSpec]:
    """``size`` distinct specs of ``pool`` spread evenly over log MACs and log params.

    Each pick takes a candidate from the emptiest MAC bin, preferring within it the emptiest
    parameter bin, so both marginals fill evenly as far as the candidates allow.
    """
    by_macs: Dict[int, List[ArchSpec]] = {}
    for spec in pool:
        by_macs.setdefault(_bin(np.log10(spec.cost.macs), LOG_MACS_RANGE), []).append(spec)
    mac_fill = {b: 0 for b in by_macs}
    param_fill = [0] * _BINS
    chosen: List[ArchSpec] = []
    seen = set()
    while len(chosen) < size and any(by_macs.values()):
        mac_bin = min((b for b in by_macs if by_macs[b]), key=lambda b: (mac_fill[b], b))
        options = by_macs[mac_bin]
        pick = min(range(len(options)),
                   key=lambda i: (param_fill[_bin(np.log10(options[i].cost.deployed_params), LOG_PARAMS_RANGE)], i))
        spec = options.pop(pick)
        digest = spec.content_hash()
        if digest in seen:
            continue
        seen.add(digest)
        mac_fill[mac_bin] += 1
        param_fill[_bin(np.log10(spec.cost.deployed_params), LOG_PARAMS_RANGE)] += 1
        chosen.append(spec)
    return chosen
