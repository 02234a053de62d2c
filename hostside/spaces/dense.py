"""NeuroPower's DenseNet-style template (``--space dense``).

A genotype is one value per gene of the paper's table 1 (direct encoding, a fixed gene
order, so one-point crossover cuts the same string in both parents)::

    {"left": "swish", "right": "relu", "condense_layers": 2, "fels": 28, "kernel": 3,
     "optimizer": "adam"}

The network: ``condense_layers`` condense layers, each a run of feature-extraction layers
(FEL = batchnorm -> piecewise(left, right) activation -> kxk conv of ``growth`` channels ->
dropout) in which every FEL reads the concatenation of the condense layer's input and all
earlier FEL outputs (DenseNet connectivity); a 2x2 max pool after each condense layer while the
map is at least 2x2; flatten and a fully connected classifier. ``fels`` counts the FELs of the
whole network (DenseNet's depth), spread evenly over the condense layers (the first ones take
the remainder). The optimizer is a gene too and reaches the trainer through
``training_overrides``. Table 1 has no learning-rate gene (the rate is a setting of the run,
``[train] lr``); ``lr_gene = true`` adds one over ``learning_rates``, which makes the space five
times larger.

Scaling: the table's sizes (16-52 FELs of 12 channels, DenseNet-40's growth) are for 32x32
CIFAR images on a GPU. ``size_divisor`` divides the FEL counts and the growth; 0 (the default)
picks 4 for inputs of at most 16x16 pixels (the embedded digits default: 4/7/10/13 FELs of 3
channels, a few thousand parameters, seconds per epoch on one core) and 1 otherwise.

Node ids are ``c<layer>f<fel>_bn|_act|_conv|_drop`` and ``c<layer>_cat``/``c<layer>_pool``: a
FEL keeps its name when a gene elsewhere changes, so inherited weights map by node id.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hostside.arch.blocks import SpecBuilder, same_padding
from hostside.arch.ops.piecewise import HALVES
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

OPTIMIZERS = ("adam", "sgd", "adagrad", "adamax", "nadam")
#: The paper's table 1 lists no learning rates; these span the usual range of the optimizers above.
LEARNING_RATES = (0.0005, 0.001, 0.002, 0.005, 0.01)
#: Gene order of the direct encoding (the crossover point cuts this string): table 1's genes,
#: then the optional learning rate.
TABLE_GENES = ("left", "right", "condense_layers", "fels", "kernel", "optimizer")
GENES = TABLE_GENES + ("lr",)
SMALL_INPUT_PIXELS = 16 * 16


@dataclass
class DenseOptions:
    activations: list = setting(default_factory=lambda: list(HALVES), help="values of the left and the right "
                                "activation genes (the `piecewise` op)",
                                default_text="relu, elu, sigmoid, tanh, swish, selu, linear")
    condense_layers: list = setting(default_factory=lambda: [1, 2, 3, 4], help="values of the number of condense "
                                    "layers")
    fels: list = setting(default_factory=lambda: [16, 28, 40, 52], help="values of the number of "
                         "feature-extraction layers")
    kernels: list = setting(default_factory=lambda: [3, 5], help="values of the kernel size")
    optimizers: list = setting(default_factory=lambda: list(OPTIMIZERS), help="values of the optimizer gene",
                               default_text="adam, sgd, adagrad, adamax, nadam")
    learning_rates: list = setting(default_factory=lambda: list(LEARNING_RATES), help="values of the learning-rate "
                                   "gene, with `lr_gene = true` (the paper lists none)")
    lr_gene: bool = setting(False, "the learning rate as a gene over `learning_rates` (not in the paper's table 1; "
                            "makes the space 5x larger)")
    growth: int = setting(12, "channels each feature-extraction layer adds")
    dropout: float = setting(0.2, "dropout of each feature-extraction layer")
    size_divisor: int = setting(0, "divides the FEL counts and the growth; 0 picks 4 for inputs up to 16x16 pixels "
                                "(digits), else 1")

    def validate(self) -> None:
        def check(key: str, allowed: Optional[Tuple[Any, ...]], ok=lambda v: True) -> None:
            values = getattr(self, key)
            if not values:
                raise UserError(f"space 'dense' option {key!r}: give at least one value")
            for value in values:
                if (allowed is not None and value not in allowed) or not ok(value):
                    hint = f"choose from {', '.join(map(str, allowed))}" if allowed else "see the docs"
                    raise UserError(f"space 'dense' option {key!r}: {value!r} is not allowed; {hint}")
        check("activations", HALVES)
        check("optimizers", OPTIMIZERS)
        check("condense_layers", None, lambda v: isinstance(v, int) and 1 <= v <= 8)
        check("fels", None, lambda v: isinstance(v, int) and v >= 1)
        check("kernels", None, lambda v: isinstance(v, int) and v >= 1 and v % 2 == 1)
        check("learning_rates", None, lambda v: isinstance(v, (int, float)) and v > 0)
        if not isinstance(self.lr_gene, bool):
            raise UserError(f"space 'dense' option 'lr_gene': {self.lr_gene!r} is not allowed; give true or false")
        if self.growth < 1:
            raise UserError(f"space 'dense' option 'growth': {self.growth!r} is not allowed; give an integer >= 1")
        if not 0 <= self.dropout < 1:
            raise UserError(f"space 'dense' option 'dropout': {self.dropout!r} is not allowed; give a value in [0, 1)")
        if self.size_divisor < 0:
            raise UserError(f"space 'dense' option 'size_divisor': {self.size_divisor!r} is not allowed; "
                            f"give 0 (auto) or an integer >= 1")


@register_space("dense")
class DenseSpace(SearchSpace):
    """NeuroPower's template over the genes of table 1."""

    Options = DenseOptions

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, **options: Any):
        super().__init__(input_shape, num_classes)
        self.options = DenseOptions(**options)
        check_options(self.options)
        o = self.options
        self.choices: Dict[str, Tuple[Any, ...]] = {
            "left": tuple(o.activations), "right": tuple(o.activations),
            "condense_layers": tuple(o.condense_layers), "fels": tuple(o.fels), "kernel": tuple(o.kernels),
            "optimizer": tuple(o.optimizers), "lr": tuple(float(v) for v in o.learning_rates)}
        self.genes = GENES if o.lr_gene else TABLE_GENES
        self.mutation_operators = self.genes
        pixels = self.input_shape[1] * self.input_shape[2]
        self.divisor = o.size_divisor or (4 if pixels <= SMALL_INPUT_PIXELS else 1)

    def describe(self) -> Dict[str, Any]:
        from dataclasses import asdict

        return {**super().describe(), **asdict(self.options)}

    # -- genes ------------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genotype:
        return {gene: _plain(self.choices[gene][int(rng.integers(len(self.choices[gene])))]) for gene in self.genes}

    def check(self, genotype: Genotype) -> None:
        """UserError naming the gene whose value is not among the space's choices."""
        for gene in self.genes:
            if gene not in genotype:
                raise UserError(f"dense genotype: gene {gene!r} is missing")
            if genotype[gene] not in self.choices[gene]:
                raise UserError(f"dense genotype: gene {gene!r} = {genotype[gene]!r} is not allowed; choose from "
                                f"{', '.join(map(str, self.choices[gene]))}")

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """One-point mutation: one gene (``operator`` names it) takes another of its values."""
        open_genes = [g for g in self.genes if len(self.choices[g]) > 1]
        if operator is not None and operator not in self.genes:
            raise ValueError(f"dense has no mutation {operator!r}; choose from {', '.join(self.genes)}")
        if not open_genes:
            return copy.deepcopy(dict(genotype)), "none"
        gene = operator or open_genes[int(rng.integers(len(open_genes)))]
        others = [v for v in self.choices[gene] if v != genotype[gene]]
        child = copy.deepcopy(dict(genotype))
        if others:
            child[gene] = _plain(others[int(rng.integers(len(others)))])
        return child, gene

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """One-point crossover on the gene string: genes before the cut from ``first``."""
        cut = int(rng.integers(1, len(self.genes)))
        return {gene: copy.deepcopy((first if i < cut else second)[gene]) for i, gene in enumerate(self.genes)}

    def training_overrides(self, genotype: Genotype) -> Dict[str, Any]:
        """The optimizer gene, and the learning rate where the genotype has that gene (with
        ``lr_gene``, or journaled by a run made when it was always one)."""
        overrides: Dict[str, Any] = {"optimizer": str(genotype["optimizer"])}
        if "lr" in genotype:
            overrides["lr"] = float(genotype["lr"])
        return overrides

    # -- decoding ---------------------------------------------------------------------------

    def fels_per_layer(self, genotype: Genotype) -> List[int]:
        layers = int(genotype["condense_layers"])
        total = max(layers, int(genotype["fels"]) // self.divisor)
        return [total // layers + (1 if i < total % layers else 0) for i in range(layers)]

    def decode(self, genotype: Genotype) -> ArchSpec:
        self.check(genotype)
        growth = max(1, self.options.growth // self.divisor)
        kernel = int(genotype["kernel"])
        b = SpecBuilder(self.input_shape)
        x = "input"
        for layer, count in enumerate(self.fels_per_layer(genotype)):
            maps = [x]
            for fel in range(count):
                name = f"c{layer}f{fel}"
                src = maps[0] if len(maps) == 1 else b.add("concat", maps, f"{name}_in")
                y = b.add("batchnorm", src, f"{name}_bn")
                y = b.add("piecewise", y, f"{name}_act", left=genotype["left"], right=genotype["right"])
                y = b.add("conv2d", y, f"{name}_conv", out_channels=growth, kernel=kernel,
                          padding=same_padding(kernel), bias=False)
                if self.options.dropout:
                    y = b.add("dropout", y, f"{name}_drop", p=self.options.dropout)
                maps.append(y)
            x = b.add("concat", maps, f"c{layer}_cat")
            _, h, w = b.shape(x)
            if h >= 2 and w >= 2:
                x = b.add("maxpool", x, f"c{layer}_pool", kernel=2)
        x = b.add("flatten", x, "flatten")
        b.add("linear", x, "classifier", out_features=self.num_classes)
        return b.build(self.num_classes, name="dense")


def _plain(value: Any) -> Any:
    """JSON-plain copy of a choice (numpy scalars never reach the journal)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    return str(value)
