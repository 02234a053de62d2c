"""The ArchSpec ops: one module per op family, one registry everything dispatches through.

Each op is an :class:`~hostside.arch.ops.base.Op` that defines, in one place, its attribute
schema, output shape, cost (params, deployed params, MACs), torch module, ONNX emission and
the neutral operators the calibration features read. ``hostside.arch.spec`` (parsing),
``hostside.arch.cost`` (analytic cost), ``hostside.arch.build`` (torch) and
``hostside.arch.export`` (ONNX) look an op up here and never name one themselves (apart from
the batchnorm folding, which is a property of ops too: ``absorbs_batchnorm``).

Adding an op (a piecewise activation, an approximate-multiplier conv, a precision emulation
step...) touches one place: a new module in this package.

1. Create ``hostside/arch/ops/<family>.py`` (a name not starting with ``_``: every such
   module of the package is imported when the registry loads). Never import torch, onnx or
   numpy (or a module that does) at module level: the parser and the cost model must stay
   light, and every CLI command imports them; import them inside
   ``torch_module`` / ``emit_onnx`` (torch ``nn.Module`` classes go in a module whose name
   starts with ``_``, like ``_torch.py``, which is only imported from there).
2. Subclass ``Op`` (or an existing op: ``class ApproxConv2d(Conv2d)`` inherits the shape
   and cost rules), set ``name``, ``family``, ``schema`` (``pos_int``, ``pair``,
   ``pad_pair``, ``boolean``, ``pos_float``, ``prob``, ``choice``, ``numbers`` from
   ``base``), ``min_inputs`` / ``max_inputs``, the flags (``shape_preserving``,
   ``absorbs_batchnorm``, ``conv_multiplications``) and ``shape_rule`` / ``cost_rule``.
3. Override ``infer`` (unless shape preserving), ``torch_module``, ``emit_onnx`` and
   ``calibration_ops``; ``loose_shape`` only if seeded generators may emit it invalidly.
   Declare in ``onnx_types`` the rows of the ONNX operator types the export writes that
   ``hostside.onnx.optypes`` lacks (``register`` adds them to that table, which every ONNX
   reader uses), and override ``from_onnx`` if ``arch import`` maps a type with attributes
   onto the op (``leaky_relu.py`` does both).
4. ``register(MyOp())`` at the bottom of the module.
5. Add rows to ``docs/ops.md`` and ``docs/archspec.md``, and an ``example``: the
   registry-wide tests (``tests/arch/test_ops.py``: analytic params == torch == ONNX
   read-back, onnxruntime == torch; ``tests/arch/test_op_registry.py``: every ONNX reader
   knows what the op exports) then run on it. ``python -m hostside.arch.ops`` prints the op table.

A new attribute on an existing op must be declared with ``omit_default=True``: specs written
before it keep their JSON and content hash. New activations must not be appended to
``hostside.arch.spec.ACTIVATIONS`` (the fixed set the random generators draw from).
"""

from __future__ import annotations

import importlib
import os
from typing import Dict, Tuple

from hostside.arch.ops.base import INPUT, REQUIRED, Attr, Op, SpecError
from hostside.onnx.optypes import declare

__all__ = ["INPUT", "REQUIRED", "Attr", "Op", "SpecError", "REGISTRY", "ALIASES", "register", "get_op",
           "op_names"]

#: op name -> Op, in registration order.
REGISTRY: Dict[str, Op] = {}
#: alternative spelling -> op name.
ALIASES: Dict[str, str] = {}


def register(op: Op) -> Op:
    """Add ``op`` to the registry (once per name), and the ONNX operator rows it declares
    (``op.onnx_types``) to ``hostside.onnx.optypes``; returns it, so a module may keep a handle."""
    if not op.name:
        raise ValueError(f"{type(op).__name__}: an op needs a name")
    for name in (op.name, *op.aliases):
        if name in REGISTRY or name in ALIASES:
            raise ValueError(f"op name {name!r} is registered twice")
    for row in op.onnx_types:
        declare(row, owner=f"op {op.name!r}")
    REGISTRY[op.name] = op
    for alias in op.aliases:
        ALIASES[alias] = op.name
    return op


def get_op(name: str) -> Op:
    """The op called ``name`` (or an alias of it); SpecError listing the known ops otherwise."""
    op = REGISTRY.get(ALIASES.get(name, name))
    if op is None:
        raise SpecError(f"unknown op {name!r}; known ops: {', '.join(REGISTRY)}")
    return op


def op_names() -> Tuple[str, ...]:
    return tuple(REGISTRY)


# The classic families first, so the registry (and error messages) list them in a familiar
# order; any other module of the package is an op family too and is picked up after them.
_FIRST = ("conv", "norm", "pool", "flatten", "dropout", "linear", "merge", "activation")


def _load_families() -> None:
    # A directory listing, not pkgutil: pkgutil pulls in inspect, a tenth of the CLI's start-up.
    found = sorted(f[:-3] for f in os.listdir(os.path.dirname(__file__)) if f.endswith(".py") and not f.startswith("_"))
    for name in [*_FIRST, *(n for n in found if n not in _FIRST)]:
        importlib.import_module(f"{__name__}.{name}")


_load_families()
