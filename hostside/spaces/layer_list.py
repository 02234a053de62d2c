"""The variable-length layer list of evolutionary CNN design.

A genotype is ``{"layers": [...], "head": int, "lr": float}``. Each layer is either a
convolution ``{"type": "conv", "kernel", "filters", "stride", "padding"}`` (decoded as
conv -> batchnorm -> ReLU) or a pooling layer ``{"type": "pool", "kind": "max"|"avg",
"size", "stride"}``; then flatten, an optional hidden fully connected layer of ``head``
units with ReLU (0 means none) and the classifier. Softmax is not a node: the loss and the
argmax at inference apply it, and leaving it out keeps the exported logits exact.

Mutation adds, removes or modifies one layer, changes the head width or the learning rate;
one-point crossover joins a prefix of one parent with a suffix of the other. Every operator
checks the result against the input size (no layer may shrink the feature map below 1x1)
and retries, so only valid networks leave this module.

Node identity: every layer carries a ``uid`` drawn when the layer is created and kept by
every operator, and its nodes are named after it (``conv<uid>``, ``bn<uid>``, ``relu<uid>``,
``pool<uid>``), so a layer keeps its name when others are inserted or removed before it and
weight inheritance maps tensors layer by layer (``hostside.arch.weights``). Genotypes written
before uids existed decode exactly as then (the position is the uid), and get their
positions as uids the first time an operator touches them. Fresh uids are drawn at or above
``FIRST_RANDOM_UID``, so they never meet a position.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

KERNELS = (1, 3, 5)
FILTERS = (4, 8, 16, 24, 32, 48, 64)
CONV_STRIDES = (1, 2)
POOL_KINDS = ("max", "avg")
POOL_SIZES = (2, 3)
POOL_STRIDES = (1, 2)
HEADS = (0, 16, 32, 64, 128)
LEARNING_RATES = (0.001, 0.002, 0.003, 0.005, 0.01)
MUTATIONS = ("add_layer", "remove_layer", "modify_layer", "modify_head", "modify_lr")
MAX_TRIES = 50
FIRST_RANDOM_UID = 1000
UID_LIMIT = 2 ** 31


@dataclass
class LayerListOptions:
    min_layers: int = setting(1, "fewest conv/pool layers", minimum=1)
    max_layers: int = setting(6, "most conv/pool layers", minimum=1)

    def validate(self) -> None:
        if self.min_layers > self.max_layers:
            raise UserError(f"option 'min_layers': {self.min_layers} exceeds max_layers {self.max_layers}; "
                            f"give at most max_layers")


@register_space("layer_list")
class LayerListSpace(SearchSpace):
    """Conv/pool layer lists of ``min_layers``..``max_layers`` layers."""

    Options = LayerListOptions
    mutation_operators = MUTATIONS

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, min_layers: int = 1,
                 max_layers: int = 6):
        super().__init__(input_shape, num_classes)
        check_options(LayerListOptions(min_layers, max_layers))
        self.min_layers = min_layers
        self.max_layers = max_layers

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "min_layers": self.min_layers, "max_layers": self.max_layers}

    # -- validity -------------------------------------------------------------------------

    def spatial_sizes(self, layers: Sequence[Dict[str, Any]]) -> Optional[List[Tuple[int, int]]]:
        """Feature-map size after each layer, or None when one would drop below 1x1."""
        h, w = self.input_shape[1], self.input_shape[2]
        sizes = []
        for layer in layers:
            if layer["type"] == "conv":
                k, s, p = layer["kernel"], layer["stride"], layer["padding"]
            else:
                k, s, p = layer["size"], layer["stride"], 0
            h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if h < 1 or w < 1:
                return None
            sizes.append((h, w))
        return sizes

    def is_valid(self, genotype: Genotype) -> bool:
        layers = genotype["layers"]
        return (self.min_layers <= len(layers) <= self.max_layers
                and any(layer["type"] == "conv" for layer in layers)
                and self.spatial_sizes(layers) is not None)

    # -- random parts ---------------------------------------------------------------------

    def _random_layer(self, rng: np.random.Generator, position: int) -> Dict[str, Any]:
        uid = int(rng.integers(FIRST_RANDOM_UID, UID_LIMIT))
        # The first layer is always a convolution: pooling raw pixels only throws data away.
        if position == 0 or rng.random() < 0.7:
            kernel = int(rng.choice(KERNELS))
            return {"type": "conv", "kernel": kernel, "filters": int(rng.choice(FILTERS)),
                    "stride": int(rng.choice(CONV_STRIDES, p=(0.8, 0.2))),
                    "padding": kernel // 2 if rng.random() < 0.8 else 0, "uid": uid}
        return {"type": "pool", "kind": str(rng.choice(POOL_KINDS)), "size": int(rng.choice(POOL_SIZES)),
                "stride": int(rng.choice(POOL_STRIDES, p=(0.3, 0.7))), "uid": uid}

    def _retry(self, make, what: str) -> Genotype:
        for _ in range(MAX_TRIES):
            genotype = make()
            if genotype is not None and self.is_valid(genotype):
                return genotype
        raise RuntimeError(f"layer_list: no valid {what} in {MAX_TRIES} tries for input {list(self.input_shape)}")

    def sample(self, rng: np.random.Generator) -> Genotype:
        def make() -> Genotype:
            n = int(rng.integers(self.min_layers, self.max_layers + 1))
            return {"layers": [self._random_layer(rng, i) for i in range(n)],
                    "head": int(rng.choice(HEADS)), "lr": float(rng.choice(LEARNING_RATES))}
        return self._retry(make, "sample")

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """One mutation (``operator`` forces one of ``MUTATIONS``); layers keep their uids."""
        if operator is not None and operator not in MUTATIONS:
            raise ValueError(f"layer_list has no mutation {operator!r}; choose from {', '.join(MUTATIONS)}")
        genotype = with_uids(genotype)
        chosen: List[str] = []

        def make() -> Optional[Genotype]:
            child = copy.deepcopy(genotype)
            layers = child["layers"]
            op = operator or str(rng.choice(MUTATIONS))
            chosen[:] = [op]
            if op == "add_layer":
                if len(layers) >= self.max_layers:
                    return None
                position = int(rng.integers(0, len(layers) + 1))
                layers.insert(position, self._random_layer(rng, position))
            elif op == "remove_layer":
                if len(layers) <= self.min_layers:
                    return None
                del layers[int(rng.integers(0, len(layers)))]
            elif op == "modify_layer":
                position = int(rng.integers(0, len(layers)))
                layers[position] = self._modified(layers[position], rng)
            elif op == "modify_head":
                child["head"] = int(rng.choice([h for h in HEADS if h != child["head"]]))
            else:
                child["lr"] = float(rng.choice([lr for lr in LEARNING_RATES if not math.isclose(lr, child["lr"])]))
            return child if child != genotype else None

        child = self._retry(make, "mutation")
        return child, chosen[0]

    def _modified(self, layer: Dict[str, Any], rng: np.random.Generator) -> Dict[str, Any]:
        """The same kind of layer with one attribute redrawn."""
        layer = dict(layer)
        if layer["type"] == "conv":
            key = str(rng.choice(("kernel", "filters", "stride", "padding")))
            if key == "kernel":
                layer["kernel"] = int(rng.choice(KERNELS))
                layer["padding"] = min(layer["padding"], layer["kernel"] // 2)
            elif key == "filters":
                layer["filters"] = int(rng.choice(FILTERS))
            elif key == "stride":
                layer["stride"] = int(rng.choice(CONV_STRIDES))
            else:
                layer["padding"] = 0 if layer["padding"] else layer["kernel"] // 2
        else:
            key = str(rng.choice(("kind", "size", "stride")))
            choices = {"kind": POOL_KINDS, "size": POOL_SIZES, "stride": POOL_STRIDES}[key]
            value = rng.choice(choices)
            layer[key] = str(value) if key == "kind" else int(value)
        return layer

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        first, second = with_uids(first), with_uids(second)

        def make() -> Genotype:
            cut_a = int(rng.integers(1, len(first["layers"]) + 1))
            cut_b = int(rng.integers(0, len(second["layers"]) + 1))
            take_head_from = first if rng.random() < 0.5 else second
            take_lr_from = first if rng.random() < 0.5 else second
            layers = copy.deepcopy(first["layers"][:cut_a] + second["layers"][cut_b:])
            seen = set()
            for layer in layers:  # a layer both parents inherited from one ancestor: keep one name
                while layer["uid"] in seen:
                    layer["uid"] = int(rng.integers(FIRST_RANDOM_UID, UID_LIMIT))
                seen.add(layer["uid"])
            return {"layers": layers, "head": take_head_from["head"], "lr": take_lr_from["lr"]}
        try:
            return self._retry(make, "crossover")
        except RuntimeError:
            # Parents too different to join at any tried point: the first parent is valid.
            return copy.deepcopy(first)

    # -- decoding -------------------------------------------------------------------------

    def decode(self, genotype: Genotype) -> ArchSpec:
        nodes: List[Dict[str, Any]] = []
        src = "input"
        for position, layer in enumerate(genotype["layers"]):
            i = layer.get("uid", position)
            if layer["type"] == "conv":
                nodes += [
                    {"id": f"conv{i}", "op": "conv2d", "inputs": [src], "out_channels": layer["filters"],
                     "kernel": layer["kernel"], "stride": layer["stride"], "padding": layer["padding"],
                     "bias": False},
                    {"id": f"bn{i}", "op": "batchnorm", "inputs": [f"conv{i}"]},
                    {"id": f"relu{i}", "op": "relu", "inputs": [f"bn{i}"]},
                ]
                src = f"relu{i}"
            else:
                nodes.append({"id": f"pool{i}", "op": f"{layer['kind']}pool", "inputs": [src],
                              "kernel": layer["size"], "stride": layer["stride"]})
                src = f"pool{i}"
        nodes.append({"id": "flatten", "op": "flatten", "inputs": [src]})
        src = "flatten"
        if genotype["head"]:
            nodes += [{"id": "hidden", "op": "linear", "inputs": [src], "out_features": genotype["head"]},
                      {"id": "hidden_relu", "op": "relu", "inputs": ["hidden"]}]
            src = "hidden_relu"
        nodes.append({"id": "classifier", "op": "linear", "inputs": [src], "out_features": self.num_classes})
        return ArchSpec(self.input_shape, self.num_classes, nodes)

    def training_overrides(self, genotype: Genotype) -> Dict[str, Any]:
        return {"lr": float(genotype["lr"])}


def with_uids(genotype: Genotype) -> Genotype:
    """The genotype with every layer's uid set (a pre-uid genotype: its positions, as it decodes)."""
    if all("uid" in layer for layer in genotype["layers"]):
        return genotype
    genotype = copy.deepcopy(dict(genotype))
    for position, layer in enumerate(genotype["layers"]):
        layer.setdefault("uid", position)
    return genotype
