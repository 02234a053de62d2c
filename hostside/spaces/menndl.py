"""MENNDL's layer space: up to 32 switchable positions (the MENNDL paper, section III).

The genotype is a fixed list of 16 feature positions and 16 classifier positions; each
position carries a layer and an ``on`` switch, so a mutation can switch a layer off and a
later one switch it back on with its settings intact (MENNDL's encoding). Feature positions
hold one of convolution (kernel height and width drawn independently, so 20x3 is possible on
a large enough input), inception, pooling, activation or dropout; classifier positions one
of fully connected, activation or dropout. Genotype (plain JSON)::

    {"features": [{"on": true, "uid": 17, "kind": "conv", "filters": 16, "kernel": [5, 3],
                   "stride": 1}, ...16],
     "classifier": [{"on": false, "uid": 4, "kind": "fc", "units": 64}, ...16],
     "lr": 0.003}

Invalid shape sequences are **repaired** in ``decode``, deterministically, before training:
a kernel larger than the current feature map is clipped to it, a pooling the map is too small
for is left out, and stacked activations / dropouts are kept (they are valid, if useless). What
cannot be repaired (the ArchSpec checks failing) raises ``SpecError`` and the engine journals
the proposal ``rejected`` without training it. Node ids carry the position's ``uid``
(``conv<uid>``, ``inc<uid>_b3``...), so weights could be inherited by node id. The paper does
not say whether children start from their parents' weights; ``--strategy menndl`` trains every
child from a fresh initialisation, a choice of ours that keeps each fitness independent of its
lineage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

POSITIONS = 16
FEATURE_KINDS = ("conv", "inception", "pool", "act", "dropout")
CLASSIFIER_KINDS = ("fc", "act", "dropout")
KERNEL_SIZES = (1, 2, 3, 5, 7, 9, 11, 20)
FILTERS = (4, 8, 16, 32)
BRANCH_WIDTHS = (4, 8, 16)
UNITS = (16, 32, 64, 128)
ACTIVATIONS = ("relu", "tanh", "elu", "sigmoid")
DROPOUTS = (0.1, 0.25, 0.5)
LEARNING_RATES = (1e-3, 3e-3, 1e-2, 3e-2)


@dataclass
class MenndlOptions:
    """Odds of a position being switched on in a sampled network (MENNDL starts small)."""
    feature_on: float = setting(0.25, "probability that a feature position is switched on in a sampled network",
                                minimum=0, maximum=1)
    classifier_on: float = setting(0.1, "probability that a classifier position is switched on in a sampled network",
                                   minimum=0, maximum=1)


@register_space("menndl")
class MenndlSpace(SearchSpace):
    Options = MenndlOptions
    mutation_operators = ("toggle", "modify", "replace", "modify_lr")

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, feature_on: float = 0.25,
                 classifier_on: float = 0.1):
        super().__init__(input_shape, num_classes)
        check_options(MenndlOptions(feature_on, classifier_on))
        self.feature_on = float(feature_on)
        self.classifier_on = float(classifier_on)

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "feature_on": self.feature_on, "classifier_on": self.classifier_on}

    # -- random layers ---------------------------------------------------------------------

    def _layer(self, kind: str, rng: np.random.Generator, on: bool, uid: int) -> Dict[str, Any]:
        layer: Dict[str, Any] = {"on": bool(on), "uid": int(uid), "kind": kind}
        if kind == "conv":
            layer.update(filters=int(rng.choice(FILTERS)),
                         kernel=[int(rng.choice(KERNEL_SIZES)), int(rng.choice(KERNEL_SIZES))],
                         stride=int(rng.choice((1, 1, 2))))
        elif kind == "inception":
            layer.update(branch1=int(rng.choice(BRANCH_WIDTHS)), branch3=int(rng.choice(BRANCH_WIDTHS)),
                         branch5=int(rng.choice(BRANCH_WIDTHS)), pool_proj=int(rng.choice(BRANCH_WIDTHS)))
        elif kind == "pool":
            layer.update(mode=str(rng.choice(("max", "avg"))), kernel=int(rng.choice((2, 3))))
        elif kind == "act":
            layer.update(fn=str(rng.choice(ACTIVATIONS)))
        elif kind == "dropout":
            layer.update(p=float(rng.choice(DROPOUTS)))
        elif kind == "fc":
            layer.update(units=int(rng.choice(UNITS)))
        return layer

    @staticmethod
    def _uid(rng: np.random.Generator) -> int:
        return int(rng.integers(1, 2 ** 31 - 1))

    def sample(self, rng: np.random.Generator) -> Genotype:
        features = [self._layer(str(rng.choice(FEATURE_KINDS)), rng, rng.random() < self.feature_on, self._uid(rng))
                    for _ in range(POSITIONS)]
        classifier = [self._layer(str(rng.choice(CLASSIFIER_KINDS)), rng, rng.random() < self.classifier_on,
                                  self._uid(rng)) for _ in range(POSITIONS)]
        return {"features": features, "classifier": classifier, "lr": float(rng.choice(LEARNING_RATES))}

    # -- operators ---------------------------------------------------------------------------

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """One position toggled, re-drawn within its kind, or replaced by another kind; or the lr."""
        child = copy.deepcopy(genotype)
        operator = operator or str(rng.choice(self.mutation_operators, p=[0.4, 0.3, 0.2, 0.1]))
        if operator not in self.mutation_operators:
            raise ValueError(f"unknown mutation operator {operator!r}; choose one of {self.mutation_operators}")
        if operator == "modify_lr":
            child["lr"] = float(rng.choice([lr for lr in LEARNING_RATES if lr != child["lr"]] or LEARNING_RATES))
            return child, operator
        part = "features" if rng.random() < 0.5 else "classifier"
        kinds = FEATURE_KINDS if part == "features" else CLASSIFIER_KINDS
        index = int(rng.integers(POSITIONS))
        layer = child[part][index]
        if operator == "toggle":
            layer["on"] = not layer["on"]
        elif operator == "modify":
            child[part][index] = self._layer(layer["kind"], rng, True, layer["uid"])
        else:
            child[part][index] = self._layer(str(rng.choice(kinds)), rng, True, self._uid(rng))
        return child, operator

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """One-point crossover over the 32 positions (each keeps its uid, so its node ids)."""
        cut = int(rng.integers(1, 2 * POSITIONS))
        positions = [(p, i) for p in ("features", "classifier") for i in range(POSITIONS)]
        child = copy.deepcopy(first)
        for n, (part, index) in enumerate(positions):
            if n >= cut:
                child[part][index] = copy.deepcopy(second[part][index])
        child["lr"] = first["lr"] if rng.random() < 0.5 else second["lr"]
        return child

    def training_overrides(self, genotype: Genotype) -> Dict[str, Any]:
        return {"lr": float(genotype["lr"])}

    # -- decode with repair ------------------------------------------------------------------

    def decode(self, genotype: Genotype) -> ArchSpec:
        nodes: List[Dict[str, Any]] = []
        shape = list(self.input_shape)  # [C, H, W]
        last = "input"

        def add(node: Dict[str, Any]) -> str:
            nodes.append(node)
            return node["id"]

        for layer in genotype["features"]:
            if not layer["on"]:
                continue
            uid, kind = layer["uid"], layer["kind"]
            if kind == "conv":
                kh, kw = min(layer["kernel"][0], shape[1]), min(layer["kernel"][1], shape[2])
                stride = layer["stride"] if min(shape[1], shape[2]) >= 2 * layer["stride"] else 1
                ph, pw = kh // 2, kw // 2
                last = add({"id": f"conv{uid}", "op": "conv2d", "inputs": [last], "out_channels": layer["filters"],
                            "kernel": [kh, kw], "stride": [stride, stride], "padding": [ph, pw]})
                last = add({"id": f"bn{uid}", "op": "batchnorm", "inputs": [last]})
                last = add({"id": f"relu{uid}", "op": "relu", "inputs": [last]})
                shape = [layer["filters"], (shape[1] + 2 * ph - kh) // stride + 1, (shape[2] + 2 * pw - kw) // stride + 1]
            elif kind == "inception":
                branches = []
                for name, width, kernel in (("b1", layer["branch1"], 1), ("b3", layer["branch3"], 3),
                                            ("b5", layer["branch5"], 5)):
                    x = last
                    if kernel > 1:
                        x = add({"id": f"inc{uid}_{name}r", "op": "conv2d", "inputs": [x], "out_channels": width,
                                 "kernel": [1, 1]})
                        x = add({"id": f"inc{uid}_{name}ra", "op": "relu", "inputs": [x]})
                    x = add({"id": f"inc{uid}_{name}", "op": "conv2d", "inputs": [x], "out_channels": width,
                             "kernel": [kernel, kernel], "padding": [kernel // 2, kernel // 2]})
                    branches.append(add({"id": f"inc{uid}_{name}a", "op": "relu", "inputs": [x]}))
                x = add({"id": f"inc{uid}_pool", "op": "maxpool", "inputs": [last], "kernel": [3, 3], "stride": [1, 1],
                         "padding": [1, 1]})
                x = add({"id": f"inc{uid}_pp", "op": "conv2d", "inputs": [x], "out_channels": layer["pool_proj"],
                         "kernel": [1, 1]})
                branches.append(add({"id": f"inc{uid}_ppa", "op": "relu", "inputs": [x]}))
                last = add({"id": f"inc{uid}", "op": "concat", "inputs": branches})
                shape = [layer["branch1"] + layer["branch3"] + layer["branch5"] + layer["pool_proj"], shape[1], shape[2]]
            elif kind == "pool":
                k = layer["kernel"]
                if shape[1] < k or shape[2] < k:
                    continue  # repair: the map is too small for this pooling
                last = add({"id": f"pool{uid}", "op": f"{layer['mode']}pool", "inputs": [last], "kernel": [k, k],
                            "stride": [2, 2]})
                shape = [shape[0], (shape[1] - k) // 2 + 1, (shape[2] - k) // 2 + 1]
            elif kind == "act":
                last = add({"id": f"act{uid}", "op": layer["fn"], "inputs": [last]})
            elif kind == "dropout":
                last = add({"id": f"drop{uid}", "op": "dropout", "inputs": [last], "p": layer["p"]})
        last = add({"id": "flatten", "op": "flatten", "inputs": [last]})
        for layer in genotype["classifier"]:
            if not layer["on"]:
                continue
            uid, kind = layer["uid"], layer["kind"]
            if kind == "fc":
                last = add({"id": f"fc{uid}", "op": "linear", "inputs": [last], "out_features": layer["units"]})
            elif kind == "act":
                last = add({"id": f"fcact{uid}", "op": layer["fn"], "inputs": [last]})
            elif kind == "dropout":
                last = add({"id": f"fcdrop{uid}", "op": "dropout", "inputs": [last], "p": layer["p"]})
        add({"id": "classifier", "op": "linear", "inputs": [last], "out_features": self.num_classes})
        return ArchSpec.from_dict({"format": "hostside.archspec", "version": 1, "input_shape": list(self.input_shape),
                                   "num_classes": self.num_classes, "nodes": nodes})
