"""EA4CNN's chromosome (Badan & Sekanina 2019, section 3.2) and its variation operators MO1-MO6.

A genotype is a header and a variable-length list of layer genes::

    {"id": "3fa9c1d2", "age": 0, "lr": 0.01,
     "layers": [{"uid": "0a1b2c3d", "type": "conv", "kernel": 3, "filters": 8, "stride": 1, "padding": 1},
                {"uid": "4e5f6071", "type": "pool", "kind": "max", "size": 2, "stride": 2}],
     "head": {"uid": "8c9dae0f", "units": 50}}

A conv gene decodes to conv (no bias) -> batchnorm -> ReLU, always; a pool gene to a max or
average pool. The flatten, the fully connected layer of ``head.units`` neurons (with ReLU)
and the classifier are fixed and not layer genes, as in the paper's Fig. 1; softmax is left
to the loss and the argmax, so the exported logits stay exact.

Every layer gene (and the head) carries a ``uid`` that becomes its node ids (``conv<uid>``,
``bn<uid>``, ``relu<uid>``, ``pool<uid>``, ``fc<uid>``): a layer keeps its name when others
are inserted before it or removed, so weights are inherited layer by layer
(``hostside.arch.weights.inherit``). MO1 (weight reset) is exactly a new uid for one layer:
nothing in a parent has its name, so it starts freshly initialised. The header's ``age`` is
the age the genotype was born with; the age a candidate reaches after training is a strategy
attribute (``ea4cnn.age``), because the same genotype ages while it is trained again.

Table 1 of the paper gives the initial settings: random networks of 1-8 layers, new conv
layers with at most 12 filters (20 for CIFAR-10), pools of size at most 4, 50 neurons in the
fully connected layer, batches of 32. Only valid networks leave this module: every operator
checks that no layer shrinks the feature map below 1x1 and retries.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec, SpecError
from hostside.errors import UserError
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

#: MO1..MO6 in the paper's order; ``mutate(operator=...)`` takes these names.
OPERATORS = ("MO1", "MO2", "MO3", "MO4", "MO5", "MO6")
OPERATOR_NAMES = {
    "MO1": "weight reset", "MO2": "add layer", "MO3": "remove layer", "MO4": "modify layer",
    "MO5": "change the fully connected layer's width", "MO6": "change the learning rate",
}
KERNELS = (1, 3, 5)
CONV_STRIDES = (1, 2)
POOL_KINDS = ("max", "avg")
LR_RANGE = (1e-5, 1.0)
MAX_TRIES = 60
BN_EPS = 1e-5


@dataclass
class Ea4cnnSpaceOptions:
    max_initial_layers: int = setting(8, "layers of a random initial network: 1..this", minimum=1)
    max_layers: int = setting(12, "most layers MO2 (add layer) may grow a network to", minimum=1)
    max_new_filters: int = setting(12, "filters of a new conv layer: 1..this (paper: 12 MNIST, 20 CIFAR-10)",
                                   minimum=1)
    max_filters: int = setting(128, "MO4 may double or halve a layer's filters up to this", minimum=1)
    max_pool_size: int = setting(4, "largest pooling window", minimum=1)
    head_units: int = setting(50, "width of the fully connected layer of a new network (paper: 50 MNIST, 70 "
                              "CIFAR-10)", minimum=1)
    min_head_units: int = setting(4, "MO5's lower bound for that width", minimum=1)
    max_head_units: int = setting(1024, "MO5's upper bound", minimum=1)
    lr: float = setting(0.01, "learning rate of a new network (the genotype carries it, MO6 changes it; the "
                        "paper's 0.1 is for TinyDNN's plain SGD; 0.01 suits Adam on one-epoch exercises: on "
                        "digits it beat 0.003 and 0.03)")
    batch_size: int = setting(32, "training batch size", minimum=1)

    def validate(self) -> None:
        if self.max_initial_layers > self.max_layers:
            raise UserError(f"option 'max_initial_layers': {self.max_initial_layers} exceeds max_layers "
                            f"{self.max_layers}; give at most max_layers")
        if self.max_new_filters > self.max_filters:
            raise UserError(f"option 'max_new_filters': {self.max_new_filters} exceeds max_filters {self.max_filters}")
        if not self.min_head_units <= self.head_units <= self.max_head_units:
            raise UserError(f"option 'head_units': {self.head_units} must lie in "
                            f"[min_head_units, max_head_units] = [{self.min_head_units}, {self.max_head_units}]")
        if not (isinstance(self.lr, (int, float)) and LR_RANGE[0] <= self.lr <= LR_RANGE[1]):
            raise UserError(f"option 'lr': {self.lr!r} is not allowed; give a learning rate in {list(LR_RANGE)}")


def new_uid(rng: np.random.Generator) -> str:
    """A fresh layer/network identity: 32 random bits as 8 hex digits (collisions are checked)."""
    return f"{int(rng.integers(0, 2 ** 32)):08x}"


@register_space("ea4cnn")
class Ea4cnnSpace(SearchSpace):
    """The EA4CNN layer list for one input shape."""

    Options = Ea4cnnSpaceOptions
    mutation_operators = OPERATORS

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, **options: Any):
        super().__init__(input_shape, num_classes)
        self.options = Ea4cnnSpaceOptions(**options)
        check_options(self.options)

    def describe(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return {**super().describe(), **asdict(self.options)}

    # -- validity -------------------------------------------------------------------------

    def spatial_sizes(self, layers: Sequence[Mapping[str, Any]]) -> Optional[List[Tuple[int, int]]]:
        """Feature-map size after each layer, or None when one would not fit its input."""
        h, w = self.input_shape[1], self.input_shape[2]
        sizes = []
        for layer in layers:
            if layer["type"] == "conv":
                k, s, p = layer["kernel"], layer["stride"], layer["padding"]
            else:
                k, s, p = layer["size"], layer["stride"], 0
            if k > h + 2 * p or k > w + 2 * p:
                return None
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            sizes.append((h, w))
        return sizes

    def is_valid(self, genotype: Mapping[str, Any]) -> bool:
        layers = genotype["layers"]
        uids = [layer["uid"] for layer in layers] + [genotype["head"]["uid"]]
        return (1 <= len(layers) <= self.options.max_layers
                and len(set(uids)) == len(uids)
                and any(layer["type"] == "conv" for layer in layers)
                and self.spatial_sizes(layers) is not None)

    def _retry(self, make: Callable[[], Optional[Genotype]], what: str) -> Genotype:
        for _ in range(MAX_TRIES):
            genotype = make()
            if genotype is not None and self.is_valid(genotype):
                return genotype
        raise SpecError(f"ea4cnn: no valid {what} in {MAX_TRIES} tries for input {list(self.input_shape)}")

    # -- random parts ---------------------------------------------------------------------

    def random_conv(self, rng: np.random.Generator) -> Dict[str, Any]:
        kernel = int(rng.choice(KERNELS))
        return {"uid": new_uid(rng), "type": "conv", "kernel": kernel,
                "filters": int(rng.integers(1, self.options.max_new_filters + 1)),
                "stride": int(rng.choice(CONV_STRIDES, p=(0.8, 0.2))),
                "padding": kernel // 2 if rng.random() < 0.7 else 0}

    def random_pool(self, rng: np.random.Generator) -> Dict[str, Any]:
        size = int(rng.integers(2, self.options.max_pool_size + 1))
        return {"uid": new_uid(rng), "type": "pool", "kind": str(rng.choice(POOL_KINDS)), "size": size,
                "stride": int(rng.integers(1, size + 1))}

    def random_layer(self, rng: np.random.Generator, position: int) -> Dict[str, Any]:
        # The first layer is a convolution: pooling raw pixels only throws information away.
        return self.random_conv(rng) if position == 0 or rng.random() < 0.6 else self.random_pool(rng)

    def sample(self, rng: np.random.Generator) -> Genotype:
        def make() -> Genotype:
            n = int(rng.integers(1, self.options.max_initial_layers + 1))
            return {"id": new_uid(rng), "age": 0, "lr": float(self.options.lr),
                    "layers": [self.random_layer(rng, i) for i in range(n)],
                    "head": {"uid": new_uid(rng), "units": int(self.options.head_units)}}
        return self._retry(make, "random network")

    # -- mutation (MO1..MO6) --------------------------------------------------------------

    def applicable(self, genotype: Mapping[str, Any], operator: str) -> bool:
        """Whether ``operator`` can change this genotype at all (MO3 needs two layers, ...)."""
        n = len(genotype["layers"])
        if operator == "MO2":
            return n < self.options.max_layers
        if operator == "MO3":
            return n > 1
        return True

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """One mutation option; ``operator`` (MO1..MO6) forces which, else drawn uniformly among
        the applicable ones (the EA4CNN strategy draws with the paper's probabilities)."""
        if operator is None:
            operator = str(rng.choice([op for op in OPERATORS if self.applicable(genotype, op)]))
        if operator not in OPERATORS:
            raise ValueError(f"unknown mutation {operator!r}; one of {', '.join(OPERATORS)}")
        apply = getattr(self, f"_{operator.lower()}")

        def make() -> Optional[Genotype]:
            child = copy.deepcopy(dict(genotype))
            apply(child, rng)
            return child if child != genotype else None

        return self._retry(make, f"{operator} ({OPERATOR_NAMES[operator]}) result"), operator

    def _mo1(self, child: Genotype, rng: np.random.Generator) -> None:
        """Weight reset: one layer with weights (a conv or the fully connected layer) is renamed,
        so no parent tensor maps onto it and it is initialised afresh."""
        convs = [layer for layer in child["layers"] if layer["type"] == "conv"]
        choice = int(rng.integers(0, len(convs) + 1))
        target = child["head"] if choice == len(convs) else convs[choice]
        target["uid"] = new_uid(rng)

    def _mo2(self, child: Genotype, rng: np.random.Generator) -> None:
        if len(child["layers"]) >= self.options.max_layers:
            return
        position = int(rng.integers(0, len(child["layers"]) + 1))
        child["layers"].insert(position, self.random_layer(rng, position))

    def _mo3(self, child: Genotype, rng: np.random.Generator) -> None:
        if len(child["layers"]) > 1:
            del child["layers"][int(rng.integers(0, len(child["layers"])))]

    def _mo4(self, child: Genotype, rng: np.random.Generator) -> None:
        """Modify one layer: redraw one of its hyperparameters (its uid stays: the weights that
        still fit are inherited, the rest cut off or freshly added)."""
        layer = child["layers"][int(rng.integers(0, len(child["layers"])))]
        if layer["type"] == "conv":
            key = str(rng.choice(("kernel", "filters", "stride", "padding")))
            if key == "kernel":
                layer["kernel"] = int(rng.choice([k for k in KERNELS if k != layer["kernel"]]))
                layer["padding"] = layer["kernel"] // 2 if layer["padding"] else 0
            elif key == "filters":
                factor = float(np.exp(rng.uniform(-math.log(2), math.log(2))))
                layer["filters"] = int(np.clip(round(layer["filters"] * factor), 1, self.options.max_filters))
            elif key == "stride":
                layer["stride"] = 2 if layer["stride"] == 1 else 1
            else:
                layer["padding"] = 0 if layer["padding"] else layer["kernel"] // 2
        else:
            key = str(rng.choice(("kind", "size", "stride")))
            if key == "kind":
                layer["kind"] = "avg" if layer["kind"] == "max" else "max"
            elif key == "size":
                layer["size"] = int(rng.integers(2, self.options.max_pool_size + 1))
                layer["stride"] = min(layer["stride"], layer["size"])
            else:
                layer["stride"] = int(rng.integers(1, layer["size"] + 1))

    def _mo5(self, child: Genotype, rng: np.random.Generator) -> None:
        """Increase or decrease the fully connected layer's neurons by up to a half."""
        units = child["head"]["units"]
        step = max(1, int(round(units * rng.uniform(0.1, 0.5))))
        units = units + step if rng.random() < 0.5 else units - step
        child["head"]["units"] = int(np.clip(units, self.options.min_head_units, self.options.max_head_units))

    def _mo6(self, child: Genotype, rng: np.random.Generator) -> None:
        """Multiply the learning rate by a log-uniform factor in [1/2, 2]."""
        factor = float(np.exp(rng.uniform(-math.log(2), math.log(2))))
        child["lr"] = float(np.clip(child["lr"] * factor, *LR_RANGE))

    # -- crossover ------------------------------------------------------------------------

    def crossover_pair(self, first: Genotype, second: Genotype,
                       rng: np.random.Generator) -> Tuple[Genotype, Genotype]:
        """One-point crossover (Algorithm 1, line 7): both children of one cut in each parent,
        ``first[:i] + second[j:]`` and ``second[:j] + first[i:]``. Each child keeps the header
        and the fully connected layer of the parent its front part comes from. A uid that both
        parts bring (a shared ancestor's layer) is renamed in the back part, so node ids stay
        unique; if no cut gives two valid networks the parents come back unchanged."""
        a, b = first["layers"], second["layers"]
        for _ in range(MAX_TRIES):
            i = int(rng.integers(1, len(a) + 1))
            j = int(rng.integers(0, len(b) + 1)) if i < len(a) else int(rng.integers(0, len(b)))
            children = (self._joined(first, a[:i], b[j:], rng), self._joined(second, b[:j], a[i:], rng))
            if all(self.is_valid(c) for c in children) and (children[0] != first or children[1] != second):
                return children
        return copy.deepcopy(dict(first)), copy.deepcopy(dict(second))

    def _joined(self, front_parent: Mapping[str, Any], front: Sequence[Mapping[str, Any]],
                back: Sequence[Mapping[str, Any]], rng: np.random.Generator) -> Genotype:
        child = copy.deepcopy(dict(front_parent))
        layers = copy.deepcopy(list(front) + list(back))
        seen = {child["head"]["uid"]}
        for layer in layers:
            while layer["uid"] in seen:
                layer["uid"] = new_uid(rng)
            seen.add(layer["uid"])
        child["layers"] = layers
        return child

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        return self.crossover_pair(first, second, rng)[0]

    # -- decoding -------------------------------------------------------------------------

    def decode(self, genotype: Mapping[str, Any]) -> ArchSpec:
        nodes: List[Dict[str, Any]] = []
        src = "input"
        for layer in genotype["layers"]:
            uid = layer["uid"]
            if layer["type"] == "conv":
                nodes += [
                    {"id": f"conv{uid}", "op": "conv2d", "inputs": [src], "out_channels": layer["filters"],
                     "kernel": layer["kernel"], "stride": layer["stride"], "padding": layer["padding"],
                     "bias": False},
                    {"id": f"bn{uid}", "op": "batchnorm", "inputs": [f"conv{uid}"], "eps": BN_EPS},
                    {"id": f"relu{uid}", "op": "relu", "inputs": [f"bn{uid}"]},
                ]
                src = f"relu{uid}"
            elif layer["type"] == "pool":
                nodes.append({"id": f"pool{uid}", "op": f"{layer['kind']}pool", "inputs": [src],
                              "kernel": layer["size"], "stride": layer["stride"]})
                src = f"pool{uid}"
            else:
                raise SpecError(f"ea4cnn: layer {uid!r} has unknown type {layer['type']!r}")
        head = genotype["head"]["uid"]
        nodes += [
            {"id": "flatten", "op": "flatten", "inputs": [src]},
            {"id": f"fc{head}", "op": "linear", "inputs": ["flatten"], "out_features": genotype["head"]["units"]},
            {"id": f"fc{head}_relu", "op": "relu", "inputs": [f"fc{head}"]},
            {"id": "classifier", "op": "linear", "inputs": [f"fc{head}_relu"], "out_features": self.num_classes},
        ]
        return ArchSpec(self.input_shape, self.num_classes, nodes, name=f"ea4cnn-{genotype['id']}")

    def training_overrides(self, genotype: Mapping[str, Any]) -> Dict[str, Any]:
        # A constant rate within each exercise, as TinyDNN's SGD trains: a cosine schedule would
        # anneal to zero at the end of every one-epoch exercise of a long-lived network.
        return {"lr": float(genotype["lr"]), "cosine": False, "batch_size": self.options.batch_size}

    # -- seeding from an existing network ---------------------------------------------------

    def encode(self, spec: ArchSpec) -> Genotype:
        return self.encode_state(spec, None)[0]

    def encode_state(self, spec: ArchSpec, weights: Optional[Mapping[str, np.ndarray]]
                     ) -> Tuple[Genotype, Dict[str, np.ndarray]]:
        """The genotype of a network made of EA4CNN's parts, and its weights re-keyed to the
        genotype's node ids (for seeding a search with a trained model).

        Accepted: a chain of conv [-> batchnorm] -> ReLU and max/avg pools without padding,
        then flatten -> linear -> ReLU -> linear (the classifier). A conv with a bias and no
        batchnorm (torch's exporter folds the batchnorm into it) gets a batchnorm that
        reproduces the bias exactly in eval mode: scale 1, shift = the bias, mean 0, variance
        1 - eps. Anything else is a ``SpecError`` naming the node that does not fit.
        """
        if tuple(spec.input_shape) != self.input_shape or spec.num_classes != self.num_classes:
            raise SpecError(f"the seed takes {list(spec.input_shape)} with {spec.num_classes} classes; this "
                            f"search has {list(self.input_shape)} with {self.num_classes} classes")
        nodes = list(spec.nodes)
        state: Dict[str, np.ndarray] = {}
        w = weights or {}
        layers: List[Dict[str, Any]] = []
        i = 0

        def expect(position: int, ops: Sequence[str], what: str):
            if position >= len(nodes) or nodes[position].op not in ops:
                node = nodes[min(position, len(nodes) - 1)]
                raise SpecError(f"node {node.id!r} ({node.op}) does not fit EA4CNN's genotype: expected {what}")
            return nodes[position]

        while i < len(nodes) and nodes[i].op in ("conv2d", "maxpool", "avgpool"):
            node = nodes[i]
            uid = f"s{len(layers)}"
            if node.op == "conv2d":
                a = node.attrs
                if (a["kernel"][0] != a["kernel"][1] or a["stride"][0] != a["stride"][1]
                        or a["padding"][0] != a["padding"][1] or a["dilation"] != (1, 1) or a["groups"] != 1):
                    raise SpecError(f"node {node.id!r} (conv2d) does not fit EA4CNN's genotype: it needs square "
                                    f"kernels, strides and paddings, no dilation and no groups")
                layers.append({"uid": uid, "type": "conv", "kernel": a["kernel"][0], "filters": a["out_channels"],
                               "stride": a["stride"][0], "padding": a["padding"][0]})
                conv_weight = w.get(f"{node.id}/weight")
                if conv_weight is not None:
                    state[f"conv{uid}/weight"] = conv_weight
                i += 1
                if i < len(nodes) and nodes[i].op == "batchnorm":
                    bn = nodes[i]
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        if f"{bn.id}/{name}" in w:
                            state[f"bn{uid}/{name}"] = w[f"{bn.id}/{name}"]
                    if a["bias"] and weights is not None:
                        # conv bias b then batchnorm: fold b into the running mean (x + b - mean).
                        state[f"bn{uid}/running_mean"] = w[f"{bn.id}/running_mean"] - w[f"{node.id}/bias"]
                    i += 1
                elif weights is not None:
                    channels = a["out_channels"]
                    bias = w.get(f"{node.id}/bias", np.zeros(channels, np.float32))
                    state.update({f"bn{uid}/weight": np.ones(channels, np.float32),
                                  f"bn{uid}/bias": np.asarray(bias, np.float32),
                                  f"bn{uid}/running_mean": np.zeros(channels, np.float32),
                                  f"bn{uid}/running_var": np.full(channels, 1 - BN_EPS, np.float32)})
                expect(i, ("relu",), "a ReLU after each conv (EA4CNN's conv -> batchnorm -> ReLU)")
                i += 1
            else:
                a = node.attrs
                if a["kernel"][0] != a["kernel"][1] or a["stride"][0] != a["stride"][1] or any(a["padding"]):
                    raise SpecError(f"node {node.id!r} ({node.op}) does not fit EA4CNN's genotype: it needs a "
                                    f"square window and stride and no padding")
                layers.append({"uid": uid, "type": "pool", "kind": node.op[:3], "size": a["kernel"][0],
                               "stride": a["stride"][0]})
                i += 1
        if not layers:
            raise SpecError(f"node {nodes[0].id!r} ({nodes[0].op}) does not fit EA4CNN's genotype: expected a conv")
        expect(i, ("flatten",), "flatten after the conv/pool layers")
        hidden = expect(i + 1, ("linear",), "flatten -> linear -> ReLU -> linear")
        expect(i + 2, ("relu",), "a ReLU after the fully connected layer")
        classifier = expect(i + 3, ("linear",), "the classifier (linear) last")
        if i + 4 != len(nodes) or not hidden.attrs["bias"] or not classifier.attrs["bias"]:
            node = nodes[min(i + 4, len(nodes) - 1)]
            raise SpecError(f"node {node.id!r} ({node.op}) does not fit EA4CNN's genotype: it ends with "
                            f"flatten -> linear (with bias) -> ReLU -> linear (with bias)")
        genotype = {"id": "seed", "age": 0, "lr": float(self.options.lr), "layers": layers,
                    "head": {"uid": "s", "units": hidden.attrs["out_features"]}}
        for src, dst in ((hidden.id, "fcs"), (classifier.id, "classifier")):
            for name in ("weight", "bias"):
                if f"{src}/{name}" in w:
                    state[f"{dst}/{name}"] = w[f"{src}/{name}"]
        for key in ("input/mean", "input/std"):
            if key in w:
                state[key] = w[key]
        if not self.is_valid(genotype):
            raise SpecError("the seed's layers do not fit EA4CNN's genotype (too many layers or an invalid size)")
        state = {k: np.asarray(v, np.float32) for k, v in state.items()}
        for layer in layers:
            if layer["type"] == "conv" and weights is not None:
                state[f"bn{layer['uid']}/num_batches_tracked"] = np.array(0, dtype=np.int64)
        return genotype, state
