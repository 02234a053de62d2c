"""The Cartesian GP grid of the CGP NAS with approximate multipliers (Pinos, Mrazek & Sekanina).

A genotype is ``{"rows": n_r, "cols": n_c, "levels_back": L, "nodes": [...], "output": k,
"multiplier": I_m}``. ``nodes`` holds the n_r x n_c grid column by column: node k sits in column
k // n_r and is ``{"f": FUNCTION, "in": [a, b], "p": {parameters}}``, where an input address 0
is the network input and k + 1 is node k. A node of column c reads only from columns c-L .. c-1
(column -1 being the input), the L-back rule. Functions: CONV (conv-BN-ReLU, ``filters``,
``kernel``), MAX / AVG (2x2 pooling), SUM (two inputs; the ``add`` op aligns them CGP-style by
max-pooling the larger map and zero-padding the narrower one), INC (inception: 1x1, 1x1->3x3,
1x1->5x5 and pool->1x1 branches, concatenated), RES (NxN conv-BN-ReLU at stride n, MxM
conv-BN-ReLU, a parallel 1x1 conv-BN at stride n, summed, ReLU) and RES-B (1x1 conv-BN-ReLU at
stride n, NxN conv-BN-ReLU, 1x1 conv-BN, a parallel 1x1 conv-BN at stride n, summed, ReLU), all
built with ``hostside.arch.blocks``. The paper leaves n open; it is a node parameter in
``STRIDES``.
The paper's template fixes which columns hold what: the last column holds FC nodes (linear +
ReLU, after a flatten, or a global average pool of maps larger than 4x4), every other column
feature-map functions, and the first column convolutions. ``output`` names the FC node of the
last column the classifier reads; only nodes on a path to it (the active nodes) are decoded.

``multiplier`` indexes the multiplier library (``multipliers``); every convolution of the
network is an ``approx_conv2d`` with that circuit. A library of one circuit fixes it
(scenarios S3 and S4).

Node ids are grid positions (``n<k>_<op><j>``, j counting within the node), so a node that
stays active through a mutation keeps its ids and its weights (inheritance by node id).

Mutation, as the paper has it: a randomly chosen node (the output among them) loses its
incoming edges and gets new ones to random nodes of the L previous columns (the output: to a
random FC node of the last column); functions and parameters never change. Draws that hit an
inactive node stay in the child and the mutation goes on until an active node's inputs changed,
so the child is never functionally identical to its parent. With probability ``p_mult`` (the
paper's 1.0) the multiplier gene is re-drawn.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from hostside.approx.library import DEFAULT_LIBRARY, check_names
from hostside.arch.blocks import SpecBuilder
from hostside.arch.ops.base import INPUT, SpecError
from hostside.arch.spec import ArchSpec
from hostside.errors import UserError
from hostside.options import check_options, setting
from hostside.spaces.base import Genotype, SearchSpace, register_space

MAP_FUNCTIONS = ("CONV", "MAX", "AVG", "SUM", "INC", "RES", "RES-B")
FILTERS = (8, 16, 32, 64)
KERNELS = (1, 3, 5)
STRIDES = (1, 2)  # n of RES and RES-B
FC_UNITS = (32, 64, 128)
MAX_TRIES = 200
GLOBAL_POOL_ABOVE = 16  # FC nodes reading maps larger than 4x4 average them first


@dataclass
class CgpOptions:
    rows: int = setting(6, "n_r, rows of the grid", minimum=1)
    cols: int = setting(23, "n_c, columns of the grid: feature-map columns, then the FC column", minimum=2,
                        note="a grid of fewer is too small to reach the output")
    levels_back: int = setting(5, "L: a node reads from the L previous columns", minimum=1)
    multipliers: List[str] = setting(default_factory=lambda: list(DEFAULT_LIBRARY), help="the library the "
                                     "multiplier gene indexes",
                                     default_text="14 EvoApproxLib circuits, `mul8u_1JFF` (exact) among them")
    p_mult: float = setting(1.0, "probability a mutation re-draws the multiplier gene (the paper's 1.0)",
                            minimum=0, maximum=1)
    fixed_multiplier: str = setting("", "one circuit of `multipliers` every network uses (the gene is not "
                                    "evolved): scenarios S3, S4")

    def validate(self) -> None:
        check_names(self.multipliers)
        if self.fixed_multiplier and self.fixed_multiplier not in self.multipliers:
            raise UserError(f"fixed_multiplier {self.fixed_multiplier!r} is not in multipliers {self.multipliers}")


class _GridBuilder(SpecBuilder):
    """A SpecBuilder naming nodes after the grid position being built and making every
    convolution an approximate one with the genotype's circuit."""

    def __init__(self, input_shape: Sequence[int], multiplier: str):
        super().__init__(input_shape)
        self.multiplier = multiplier
        self.prefix = ""
        self.local = 0

    def at(self, position: int) -> None:
        self.prefix, self.local = f"n{position}_", 0

    def add(self, op: str, inputs: Any, id: Optional[str] = None, **attrs: Any) -> str:
        if op == "conv2d":
            op, attrs = "approx_conv2d", {**attrs, "multiplier": self.multiplier}
        if id is None:
            id = f"{self.prefix}{op}{self.local}"
            self.local += 1
        return super().add(op, inputs, id, **attrs)


@register_space("cgp")
class CgpSpace(SearchSpace):
    """An n_r x n_c CGP grid with L-back connections and a multiplier gene."""

    Options = CgpOptions
    mutation_operators = ("mutate_node",)

    def __init__(self, input_shape: Tuple[int, int, int], num_classes: int, rows: int = 6, cols: int = 23,
                 levels_back: int = 5, multipliers: Sequence[str] = DEFAULT_LIBRARY, p_mult: float = 1.0,
                 fixed_multiplier: str = ""):
        super().__init__(input_shape, num_classes)
        options = CgpOptions(rows, cols, levels_back, list(multipliers), p_mult, fixed_multiplier)
        check_options(options)
        self.rows, self.cols, self.levels_back = rows, cols, levels_back
        self.multipliers = tuple(multipliers)
        self.p_mult = p_mult
        self.fixed_multiplier = fixed_multiplier

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "rows": self.rows, "cols": self.cols, "levels_back": self.levels_back,
                "multipliers": list(self.multipliers), "p_mult": self.p_mult,
                "fixed_multiplier": self.fixed_multiplier}

    # -- grid ---------------------------------------------------------------------------------

    def column(self, position: int) -> int:
        return position // self.rows

    def sources(self, position: int) -> List[int]:
        """Input addresses node ``position`` may read (L-back): 0 = the input, k + 1 = node k."""
        col = self.column(position)
        first = max(0, col - self.levels_back)
        addresses = list(range(first * self.rows + 1, col * self.rows + 1))
        if col - self.levels_back < 0:
            addresses.insert(0, 0)
        return addresses

    def fc_positions(self) -> List[int]:
        return list(range((self.cols - 1) * self.rows, self.cols * self.rows))

    def _function(self, position: int, rng: np.random.Generator, template: bool) -> Dict[str, Any]:
        col = self.column(position)
        if col == self.cols - 1:
            return {"f": "FC", "p": {"units": int(rng.choice(FC_UNITS))}}
        f = "CONV" if template and col == 0 else str(rng.choice(MAP_FUNCTIONS))
        p: Dict[str, Any] = {}
        if f in ("CONV", "INC", "RES", "RES-B"):
            p["filters"] = int(rng.choice(FILTERS))
        if f == "CONV":
            p["kernel"] = int(rng.choice(KERNELS))
        if f == "RES":
            p["kernel"], p["kernel2"] = int(rng.choice(KERNELS)), int(rng.choice(KERNELS))
        if f == "RES-B":
            p["kernel"] = int(rng.choice(KERNELS))
        if f in ("RES", "RES-B"):
            p["stride"] = int(rng.choice(STRIDES))
        return {"f": f, "p": p}

    def _edges(self, position: int, rng: np.random.Generator) -> List[int]:
        allowed = self.sources(position)
        return [int(rng.choice(allowed)) for _ in range(2)]

    # -- operators ----------------------------------------------------------------------------

    def sample(self, rng: np.random.Generator) -> Genotype:
        """The paper's template: convolutions first, FC nodes last, random connections."""
        for _ in range(MAX_TRIES):
            nodes = [{**self._function(k, rng, True), "in": self._edges(k, rng)}
                     for k in range(self.rows * self.cols)]
            genotype = {"rows": self.rows, "cols": self.cols, "levels_back": self.levels_back, "nodes": nodes,
                        "output": int(rng.choice(self.fc_positions())),
                        "multiplier": self._draw_multiplier(rng)}
            if self._valid(genotype):
                return genotype
        raise UserError(f"no valid CGP network found in {MAX_TRIES} samples for input {list(self.input_shape)}")

    def mutate(self, genotype: Genotype, rng: np.random.Generator,
               operator: Optional[str] = None) -> Tuple[Genotype, str]:
        """Re-draw the incoming edges of random nodes (or the output's source) until an active
        node's inputs changed, and the multiplier gene with probability ``p_mult``; the child is
        a valid network (else the parent is returned after ``MAX_TRIES``)."""
        self._check(genotype)
        before = self.active(genotype)
        output_gene = len(genotype["nodes"])
        for _ in range(MAX_TRIES):
            child = copy.deepcopy(genotype)
            changed = False
            for _ in range(MAX_TRIES * (output_gene + 1)):  # bounded: a tiny grid may have no other wiring
                k = int(rng.integers(output_gene + 1))
                if k == output_gene:
                    child["output"] = int(rng.choice(self.fc_positions()))
                    changed = child["output"] != genotype["output"]
                else:
                    node = child["nodes"][k]
                    node["in"] = self._edges(k, rng)
                    used = self.arity(node)
                    changed = k in before and node["in"][:used] != genotype["nodes"][k]["in"][:used]
                if changed:
                    break
            if not changed:
                break
            if not self.fixed_multiplier and rng.random() < self.p_mult:
                child["multiplier"] = self._draw_multiplier(rng)
            if self._valid(child):
                return child, "mutate_node"
        return copy.deepcopy(genotype), "mutate_node"

    def crossover(self, first: Genotype, second: Genotype, rng: np.random.Generator) -> Genotype:
        """CGP breeds by mutation only; a crossover keeps the first parent."""
        return copy.deepcopy(first)

    # -- decoding -----------------------------------------------------------------------------

    def _check(self, genotype: Genotype) -> None:
        if (genotype.get("rows"), genotype.get("cols")) != (self.rows, self.cols) or \
                len(genotype.get("nodes", ())) != self.rows * self.cols:
            raise SpecError(f"CGP genotype grid {genotype.get('rows')}x{genotype.get('cols')} does not fit the "
                            f"space's {self.rows}x{self.cols}")

    def arity(self, node: Dict[str, Any]) -> int:
        return 2 if node["f"] == "SUM" else 1

    def active(self, genotype: Genotype) -> Set[int]:
        """Grid positions on a path to the output."""
        seen: Set[int] = set()
        stack = [genotype["output"]]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            node = genotype["nodes"][k]
            stack.extend(a - 1 for a in node["in"][: self.arity(node)] if a > 0)
        return seen

    def _draw_multiplier(self, rng: np.random.Generator) -> int:
        if self.fixed_multiplier:
            return self.multipliers.index(self.fixed_multiplier)
        return int(rng.integers(len(self.multipliers)))

    def multiplier(self, genotype: Genotype) -> str:
        """The circuit the genotype's multiplier gene I_m names."""
        index = genotype.get("multiplier")
        if not isinstance(index, int) or not 0 <= index < len(self.multipliers):
            raise SpecError(f"CGP multiplier gene {index!r} is not an index into the {len(self.multipliers)}-circuit "
                            f"library")
        return self.multipliers[index]

    def _valid(self, genotype: Genotype) -> bool:
        try:
            self.decode(genotype)
        except SpecError:
            return False
        return True

    def decode(self, genotype: Genotype) -> ArchSpec:
        self._check(genotype)
        b = _GridBuilder(self.input_shape, self.multiplier(genotype))
        tensors: Dict[int, str] = {0: INPUT}
        for k in sorted(self.active(genotype)):
            node = genotype["nodes"][k]
            allowed = set(self.sources(k))
            if any(a not in allowed for a in node["in"][: self.arity(node)]):
                raise SpecError(f"CGP node {k}: inputs {node['in']} break the L-back rule (allowed {sorted(allowed)})")
            b.at(k)
            tensors[k + 1] = self._build_node(b, node, [tensors[a] for a in node["in"][: self.arity(node)]])
        b.at(self.rows * self.cols)
        out = b.add("linear", tensors[genotype["output"] + 1], id="classifier", out_features=self.num_classes)
        return b.build(self.num_classes, name="cgp", output=out)

    def _build_node(self, b: _GridBuilder, node: Dict[str, Any], xs: List[str]) -> str:
        f, p, x = node["f"], node["p"], xs[0]
        shape = b.shape(x)
        if f == "FC":
            if len(shape) == 3:
                x = b.add("global_avgpool", x) if shape[1] * shape[2] > GLOBAL_POOL_ABOVE else x
                x = b.add("flatten", x)
            return b.add("relu", b.add("linear", x, out_features=p["units"]))
        if len(shape) != 3:
            raise SpecError(f"CGP {f} node reads a feature vector")
        if f == "CONV":
            return b.conv_bn_act(x, p["filters"], p["kernel"])
        if f in ("MAX", "AVG"):
            return b.pool(x, f.lower(), 2) if min(shape[1:]) >= 2 else x
        if f == "SUM":
            other = b.shape(xs[1])
            if xs[1] == x or len(other) != 3 or shape[1] % other[1] and other[1] % shape[1]:
                return x  # nothing to add, or maps that pooling cannot align: the first input passes
            return b.merge("add", [x, xs[1]])
        filters = p["filters"]
        if f == "INC":
            return b.inception(x, branch1=filters // 2, branch3=(filters // 2, filters // 2),
                               branch5=(filters // 4, filters // 4), pool_proj=filters // 4)
        # A genotype journaled before RES / RES-B had a stride (and RES-B a kernel) decodes at
        # stride 1 with a 3x3 RES-B kernel, the values those nodes always had.
        stride = p.get("stride", 1)
        if f == "RES":
            y = b.conv_bn_act(x, filters, p["kernel"], stride=stride)
            y = b.conv_bn_act(y, filters, p["kernel2"])
            shortcut = b.conv_bn_act(x, filters, 1, stride=stride, act=None)
            return b.add("relu", b.merge("add", [y, shortcut]))
        mid = max(1, filters // 4)
        y = b.conv_bn_act(x, mid, 1, stride=stride)
        y = b.conv_bn_act(y, mid, p.get("kernel", 3))
        y = b.conv_bn_act(y, filters, 1, act=None)
        shortcut = b.conv_bn_act(x, filters, 1, stride=stride, act=None)
        return b.add("relu", b.merge("add", [y, shortcut]))
