"""Kernel probes: small networks each dominated by one kind of kernel, measured beside the suite.

Why: the suite's networks mix kernels the way real networks do (a depthwise conv always sits
between pointwise ones, a pool after a conv), so in a fit over whole-network latencies the cost
of one kernel kind is confounded with the kernels that travel with it, and refitting on a fresh
measurement of the same suite moved a whole family's predictions by 35 %. nn-Meter's remedy is to
measure kernels one at a time; here each probe is still a whole network (so layout changes,
fusions and the per-inference floor are what the runtime really does), but a stack of one kernel
kind behind a minimal stem and head, so that kind's cost per unit is identifiable. A probe costs
a few milliseconds to measure.

Kinds: depthwise stacks, pointwise stacks, k x k convs (k = 3, 5, 7), stems reading 1-3 input
channels, grouped convs, chains of unfused activations, stride-1 pools, residual adds,
concatenations and MLPs (weights from a few KB to tens of MB, for the cache cliff).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.blocks import SpecBuilder
from hostside.arch.spec import INPUT, ArchSpec, SpecError
from hostside.calibration.suite import aligned_width

Shape = Tuple[int, int, int]
#: Probes per suite: as many as the suite has models, at most MAX_PROBES (a quick calibration
#: then measures 60 probes, a full one 120; each costs a few milliseconds).
MAX_PROBES = 120
#: The slowest probe stays near 10 ms on a desktop core; the heaviest MLP holds 25 M params.
MAX_PROBE_MACS = 60_000_000
MAX_PROBE_PARAMS = 25_000_000
_SEED_OFFSET = 1_000_003
_NUM_CLASSES = 10
_UNFUSED_ACTIVATIONS = ("elu", "selu", "sigmoid", "tanh", "silu", "hardswish", "relu6")


def _depth(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))


def _depthwise(rng: np.random.Generator, b: SpecBuilder) -> str:
    width, kernel = aligned_width(rng, 8, 256), int(rng.choice([3, 3, 5]))
    act = str(rng.choice(["relu", "relu6", "identity"]))
    x = b.conv_bn_act(INPUT, width, 1)
    for _ in range(_depth(rng, 2, 7)):
        x = b.conv_bn_act(x, width, kernel, groups=width, act=act)
    return x


def _pointwise(rng: np.random.Generator, b: SpecBuilder) -> str:
    x = b.conv_bn_act(INPUT, aligned_width(rng, 4, 192), 3)
    for _ in range(_depth(rng, 2, 6)):
        x = b.conv_bn_act(x, aligned_width(rng, 4, 256), 1, act=str(rng.choice(["relu", "identity"])))
    return x


def _square(rng: np.random.Generator, b: SpecBuilder) -> str:
    kernel, width = int(rng.choice([3, 5, 7])), aligned_width(rng, 4, 128)
    x = INPUT
    for _ in range(_depth(rng, 2, 5)):
        x = b.conv_bn_act(x, width, kernel)
    return x


def _stem(rng: np.random.Generator, b: SpecBuilder) -> str:
    return b.conv_bn_act(INPUT, aligned_width(rng, 8, 256), int(rng.choice([1, 3, 5, 7])),
                         act=str(rng.choice(["relu", "identity"])))


def _grouped(rng: np.random.Generator, b: SpecBuilder) -> str:
    groups = int(rng.choice([2, 4]))
    width = groups * max(2, aligned_width(rng, 8, 128) // groups)
    x = b.conv_bn_act(INPUT, width, 3)
    for _ in range(_depth(rng, 2, 5)):
        x = b.conv_bn_act(x, width, int(rng.choice([1, 3])), groups=groups)
    return x


def _activations(rng: np.random.Generator, b: SpecBuilder) -> str:
    x = b.conv_bn_act(INPUT, aligned_width(rng, 8, 128), 3, act="identity")
    if rng.random() < 0.5:
        x = b.add("relu", x)
    for _ in range(_depth(rng, 2, 7)):
        x = b.add(str(rng.choice(_UNFUSED_ACTIVATIONS)), x)
    return x


def _pools(rng: np.random.Generator, b: SpecBuilder) -> str:
    x = b.conv_bn_act(INPUT, aligned_width(rng, 8, 128), 3)
    for _ in range(_depth(rng, 2, 7)):
        x = b.pool(x, str(rng.choice(["max", "avg"])), kernel=3, stride=1, padding=1)
    return x


def _adds(rng: np.random.Generator, b: SpecBuilder) -> str:
    width = aligned_width(rng, 8, 128)
    x = b.conv_bn_act(INPUT, width, 3)
    for _ in range(_depth(rng, 2, 5)):
        y = b.conv_bn_act(x, width, int(rng.choice([1, 3])), act=str(rng.choice(["relu", "identity"])))
        x = b.merge("add", [x, y])
    return x


def _concats(rng: np.random.Generator, b: SpecBuilder) -> str:
    x = b.conv_bn_act(INPUT, aligned_width(rng, 4, 64), 3)
    for _ in range(_depth(rng, 2, 4)):
        x = b.merge("concat", [x, b.conv_bn_act(x, aligned_width(rng, 4, 64), 1)])
    return x


def _mlp(rng: np.random.Generator, b: SpecBuilder) -> Optional[str]:
    """Flatten and linear layers only; the classifier is part of the probe (no head)."""
    x = b.add("flatten", INPUT)
    for _ in range(_depth(rng, 1, 3)):
        x = b.add("linear", x, out_features=aligned_width(rng, 16, 2048))
        x = b.add(str(rng.choice(["relu", "relu", "sigmoid", "tanh"])), x)
    b.add("linear", x, out_features=_NUM_CLASSES)
    return None


PROBE_KINDS: Dict[str, Callable[[np.random.Generator, SpecBuilder], Optional[str]]] = {
    "depthwise": _depthwise, "pointwise": _pointwise, "square": _square, "stem": _stem, "grouped": _grouped,
    "activations": _activations, "pools": _pools, "adds": _adds, "concats": _concats, "mlp": _mlp,
}


def probe_count(suite_size: int) -> int:
    return min(suite_size, MAX_PROBES)


def kernel_probes(count: int, seed: int, input_shapes: Sequence[Shape]) -> List[ArchSpec]:
    """``count`` probes, kinds taken in turn, the same for the same arguments. A draw outside
    the MAC and parameter caps (or one the shapes do not allow) is drawn again, so at inputs
    far above the suite's (224x224) the conv stacks that never fit the cap are left out."""
    rng = np.random.default_rng(seed + _SEED_OFFSET)
    kinds = list(PROBE_KINDS)
    found: List[ArchSpec] = []
    for attempt in range(50 * count):
        if len(found) == count:
            break
        kind = kinds[attempt % len(kinds)]
        shape = tuple(input_shapes[int(rng.integers(len(input_shapes)))])
        builder = SpecBuilder(shape, id_format="n{index}_{op}")
        try:
            last = PROBE_KINDS[kind](rng, builder)
            if last is not None:
                builder.head(last, _NUM_CLASSES, global_pool=True)
            spec = builder.build(_NUM_CLASSES, name=f"probe-{kind}-{len(found)}")
        except SpecError:
            continue
        if spec.cost.macs <= MAX_PROBE_MACS and spec.cost.deployed_params <= MAX_PROBE_PARAMS:
            found.append(spec)
    if len(found) < count:
        raise RuntimeError(f"the kernel probe sampler found {len(found)} of {count} probes within the caps")
    return found
