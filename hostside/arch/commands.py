"""``hostside arch ...``: inspect architectures (ArchSpec JSON or any ONNX file)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Tuple

from hostside.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    arch = subparsers.add_parser("arch", help="inspect architectures")
    sub = arch.add_subparsers(dest="arch_command", metavar="ARCH_COMMAND")
    sub.required = True
    stats = sub.add_parser(
        "stats", help="params, MACs, conv multiplications and activation memory of an ArchSpec JSON or an ONNX file",
    )
    stats.add_argument("file", type=Path, help="ArchSpec .json or model .onnx")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--per-layer", action="store_true", help="include the per-layer breakdown")
    stats.set_defaults(handler=_stats)
    imported = sub.add_parser("import", help="an ONNX model as ArchSpec JSON + trained weights (spec.json, weights.npz)")
    imported.add_argument("model", type=Path, help="model .onnx made of ops ArchSpec has")
    imported.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    imported.set_defaults(handler=_import)
    nb201 = sub.add_parser("nb201", help="the NAS-Bench-201 network of an arch string as ArchSpec JSON")
    nb201.add_argument("arch_str", metavar="ARCH_STR", help="e.g. '|nor_conv_3x3~0|+|none~0|skip_connect~1|+"
                       "|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|'")
    nb201.add_argument("--input-shape", default="3,32,32", metavar="C,H,W", help="input (default 3,32,32, CIFAR-10)")
    nb201.add_argument("--classes", type=int, default=10, metavar="K", help="number of classes (default 10)")
    nb201.add_argument("--out", type=Path, required=True, metavar="SPEC.json", help="ArchSpec JSON to write")
    nb201.add_argument("--zero-inputs-kept", action="store_true",
                       help="build the edges leaving a node that receives only 'none' edges, as HW-NAS-Bench's "
                            "measured graphs do (default: leave such dead edges out)")
    nb201.set_defaults(handler=_nb201)


# ONNX op types whose MACs are convolution multiplications (n_mult, CGP's N_mult).
_CONV_TYPES = ("Conv", "ConvTranspose")


def arch_stats(path: Path, per_layer: bool = False) -> dict:
    """Cost of an ArchSpec JSON (analytic) or an ONNX file (read back from the graph); both
    give params, macs, n_mult (multiplications in convolution layers) and activation_bytes."""
    from hostside.safe_io import check_file

    path = check_file(path, "ArchSpec or ONNX file")  # a FIFO would hang the ONNX reader
    if path.suffix.lower() == ".onnx":
        from hostside.arch.onnx_stats import onnx_stats

        stats = onnx_stats(path)
        stats.setdefault("n_mult", sum(e["macs"] for e in stats["per_layer"] if e["op_type"] in _CONV_TYPES))
        if not per_layer:
            stats.pop("per_layer", None)
        return {"source": "onnx", **stats}
    from hostside.arch.spec import ArchSpec

    spec = ArchSpec.load(path)
    return {"source": "archspec", "input_shape": list(spec.input_shape), **spec.cost.to_dict(per_layer=per_layer)}


def _stats(args: argparse.Namespace) -> int:
    stats = arch_stats(args.file, per_layer=args.per_layer)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    print(f"{args.file}: {stats['params']:,} params, {stats['macs']:,} MACs, "
          f"{stats['activation_bytes']:,} bytes peak activations")
    print(f"  multiplications in convolutions (n_mult): {stats['n_mult']:,}")
    if "deployed_params" in stats:
        print(f"  deployed params (batchnorm folded): {stats['deployed_params']:,}")
    print("  layers: " + ", ".join(f"{op} x{n}" for op, n in sorted(stats["layers"].items())))
    return 0


def _input_shape(text: str) -> Tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise UserError(f"--input-shape {text!r} is not C,H,W with three positive integers; e.g. --input-shape 3,32,32")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _nb201(args: argparse.Namespace) -> int:
    from hostside.arch.nb201 import nb201_spec, zero_inputs_kept

    if args.classes < 1:
        raise UserError(f"--classes must be a positive integer, got {args.classes}")
    arch_str = zero_inputs_kept(args.arch_str) if args.zero_inputs_kept else args.arch_str
    spec = nb201_spec(arch_str, _input_shape(args.input_shape), args.classes)
    try:
        spec.save(args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}; choose a writable path for --out") from None
    cost = spec.cost
    print(f"{args.out}: {len(spec.nodes)} nodes, {cost.params:,} params, {cost.macs:,} MACs")
    return 0


def _import(args: argparse.Namespace) -> int:
    from hostside.arch.onnx_import import run_import

    return run_import(args.model, args.out)
