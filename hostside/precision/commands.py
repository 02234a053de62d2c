"""``hostside precision`` (accuracy and memory per number format) and ``hostside quantize``
(INT8 file, its accuracy and its latency on a board next to the float model's).

Heavy imports (onnx, onnxruntime, matplotlib) stay inside the handlers so the CLI starts fast.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Dict, Optional, Set, Tuple

from hostside.errors import UserError
from hostside.train.commands import written_only_on_success

DATASET_HELP = "dataset the model was trained on: 'digits' (default) or a path (see `hostside train --help`)"
PRECISION_FILE = "precision.json"
GRID_PLOT = "precision_grid.png"


def register(subparsers: Any) -> None:
    precision = subparsers.add_parser(
        "precision", help="accuracy and weight memory of an ONNX model in reduced number formats",
        description="Emulate MODEL.onnx in each number format and report accuracy, the drop against float, "
                    "weight memory and energy per multiplication. 'grid' runs all 184 types T(w,t) and draws "
                    "a heatmap with the per-model best type (fewest bits within 1 point of float).")
    precision.add_argument("model", metavar="MODEL.onnx")
    precision.add_argument("--dataset", default="digits", help=DATASET_HELP)
    precision.add_argument("--formats", default="half,bfloat16,t4.3,fx16,int8",
                           help="comma-separated: grid, half, bfloat16, float, tW.T (e.g. t4.3), qM.N fixed point "
                                "(fx16 = q8.8), float8_e4m3fn and the other ml_dtypes names, int8 "
                                "(default half,bfloat16,t4.3,fx16,int8)")
    precision.add_argument("--split", metavar="SPLIT.json",
                           help="split to evaluate on (default: split.json beside the model, else a new seeded one, "
                                "written to --out)")
    precision.add_argument("--part", choices=("test", "val"), default="test", help="split part scored (default test)")
    precision.add_argument("--mode", choices=("extrinsic", "multiplication"), default="extrinsic",
                           help="extrinsic: weights and every activation map rounded (IoT paper); multiplication: "
                                "only conv/FC multiplication operands rounded, float accumulation (EA4CNN)")
    precision.add_argument("--out", type=Path, help="output folder (default: precision/ beside the model)")
    precision.add_argument("--seed", type=int, default=0, help="seed of a new split (default 0)")
    precision.add_argument("--json", action="store_true", help="print the result as JSON")
    precision.set_defaults(handler=run_precision)

    quantize = subparsers.add_parser(
        "quantize", help="INT8 version of an ONNX model, its accuracy and its latency on a board",
        description="onnxruntime static quantization (QDQ, per-channel int8 weights, int8 activations) calibrated "
                    "on training images of the split; reports int8 vs float accuracy on the test images and "
                    "measures both files on the board.")
    quantize.add_argument("model", metavar="MODEL.onnx")
    quantize.add_argument("--dataset", default="digits", help=DATASET_HELP)
    quantize.add_argument("--out", required=True, metavar="MODEL.int8.onnx", help="where to write the int8 model")
    quantize.add_argument("--split", metavar="SPLIT.json",
                          help="split (default: split.json beside the model, else a new seeded one)")
    quantize.add_argument("--seed", type=int, default=0, help="seed of a new split and of the calibration sample")
    quantize.add_argument("--calibration-samples", type=int, default=256, help="training images for calibration")
    quantize.add_argument("--board", default="local", help="board to measure on (default local)")
    quantize.add_argument("--no-measure", action="store_true", help="skip the latency measurement")
    quantize.add_argument("--runs", type=int, default=300, help="timed runs per model (default 300)")
    quantize.add_argument("--threads", type=int, default=1, help="onnxruntime threads on the board (default 1)")
    quantize.add_argument("--json", action="store_true", help="print the report as JSON")
    quantize.set_defaults(handler=run_quantize)


def register_runs_precision(runs_sub: Any) -> None:
    """``hostside runs precision RUN``; called by ``hostside.search.commands``, which owns ``runs``."""
    parser = runs_sub.add_parser(
        "precision", help="precision analysis of every trained model of a run: fronts PNG + precision.json",
        description="Score every trained model of RUN under float, half, T(4,3) and its best T(w,t) (full grid), "
                    "and draw the accuracy vs weight memory fronts (RUN/precision_fronts.png, RUN/precision.json).")
    parser.add_argument("run", help="run directory or name under ./runs")
    parser.add_argument("--part", choices=("test", "val"), default="test",
                        help="split part scored (default test; each best type is chosen on val)")
    parser.add_argument("--mode", choices=("extrinsic", "multiplication"), default="extrinsic",
                        help="rounding method (default extrinsic, as the IoT paper's figure 5)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=run_runs_precision)


def run_runs_precision(args: argparse.Namespace) -> int:
    from hostside.precision.runs import precision_of_run

    result = precision_of_run(args.run, args.mode, args.part, _progress)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'model':<16} {'float':>8} {'half':>8} {'T(4,3)':>8}  best type")
    for m in result["models"]:
        best = m["best"]
        print(f"{m['source'] + ' ' + str(m['id']):<16} {_pct(m['float']['accuracy']):>8} {_pct(m['half']['accuracy']):>8} "
              f"{_pct(m['T(4,3)']['accuracy']):>8}  "
              + (f"{best['format']} ({best['bits']} bits, {_pct(best['accuracy'])})" if best else "none within 1 point"))
    print(f"wrote {result['plot']} and {Path(result['run']) / 'precision.json'}")
    return 0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_split(split_path: Optional[str], model: Path, dataset: Any, seed: int,
                  write_to: Optional[Path]) -> Tuple[Any, Optional[str], Optional[Path]]:
    """The split to score on: the one given, else ``split.json`` beside the model (the one its
    training wrote, so its test images stay unseen), else a new seeded split for ``write_to``.

    Returns the split, its file and, for a new split, where to save it once the command has
    succeeded (``save_new_split``): saved at once, it outlived a failed run and the retry was
    refused with "split.json exists"."""
    from hostside.train.splits import Split, make_split

    candidate = Path(split_path) if split_path else model.parent / "split.json"
    if split_path or candidate.is_file():
        split = Split.load(candidate)
        split.check(dataset, str(candidate))
        if not split_path:
            _progress(f"using {candidate} (the split written with the model)")
        return split, str(candidate), None
    split = make_split(dataset, seed)
    if write_to is None:
        return split, None, None
    target = write_to / "split.json"
    if target.exists():
        raise UserError(f"{target} exists and was not given with --split; pass --split {target} to use it, "
                        f"or choose another --out")
    _progress(f"no split given: drew one with seed {seed}; it is written to {target} with the results")
    return split, str(target), target


def save_new_split(split: Any, target: Optional[Path]) -> None:
    """Write the split ``resolve_split`` drew, now that the results it belongs to exist."""
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        split.save(target)


def _model_path(text: str) -> Path:
    from hostside.safe_io import check_file

    return check_file(text, "ONNX model")


def _pct(value: Optional[float]) -> str:
    return "NaN" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def run_precision(args: argparse.Namespace) -> int:
    from hostside.precision.analysis import analyze_model, check_model_fits, plot_grid
    from hostside.precision.formats import parse_format, parse_formats
    from hostside.train.datasets import load_dataset

    formats, with_grid = parse_formats(args.formats)
    model = _model_path(args.model)
    out = args.out or model.parent / "precision"
    dataset = load_dataset(args.dataset)
    check_model_fits(model, dataset)
    split, split_file, new_split = resolve_split(args.split, model, dataset, args.seed, out)
    with written_only_on_success(out):
        out.mkdir(parents=True, exist_ok=True)
        result = analyze_model(model, dataset, getattr(split, args.part), formats, args.mode, split.train,
                               out / f"{model.stem}.int8.onnx", progress=_progress)
        result.update(split=split_file, part=args.part)
        if with_grid:
            result["heatmap"] = str(plot_grid(result, out / GRID_PLOT,
                                              f"{model.name} on {dataset.name} ({args.part})"))
        save_new_split(split, new_split)
        (out / PRECISION_FILE).write_text(json.dumps(result, indent=1) + "\n")
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    named = {parse_format(n).name for n in args.formats.split(",") if n.strip() and n.strip().lower() != "grid"}
    print_table(result, None if not with_grid else named)
    print(f"wrote {out / PRECISION_FILE}" + (f" and {result['heatmap']}" if with_grid else ""))
    return 0


def print_table(result: Dict[str, Any], only: Optional[Set[str]] = None) -> None:
    """The per-format table (with ``only``: just those formats, the grid being in the heatmap)
    and the best type."""
    ref = result["float"]
    print(f"{result['model']} on {result['dataset']} ({result['images']} {result.get('part', 'test')} images, "
          f"{result['mode']} rounding), {result['params']:,} deployed params")
    print(f"{'format':<16} {'bits':>4} {'accuracy':>9} {'drop (pts)':>10} {'weights (B)':>12} {'pJ/mult':>8}")
    print(f"{'float':<16} {32:>4} {_pct(ref['accuracy']):>9} {'':>10} {ref['weight_bytes']:>12,} {3.7:>8.2f}")
    for row in result["formats"]:
        if only is not None and row["format"] not in only:
            continue
        drop = "" if row["drop_points"] is None else f"{row['drop_points']:+.2f}"
        print(f"{row['format']:<16} {row['bits']:>4} {_pct(row['accuracy']):>9} {drop:>10} "
              f"{row['weight_bytes']:>12,} {row['mult_pj']:>8.2f}")
        if row["reason"]:
            print(f"  {row['reason']}")
    if "best" in result:
        best = result["best"]
        nan_count = sum(1 for r in result["formats"] if r.get("grid") and r["accuracy"] is None)
        if best:
            print(f"best type: {best['format']} ({best['bits']} bits, {_pct(best['accuracy'])}, "
                  f"{best['weight_bytes']:,} B of weights); {nan_count} of 184 grid types gave NaN")
        else:
            print(f"no T(w,t) stays within 1 point of float; {nan_count} of 184 grid types gave NaN")


def run_quantize(args: argparse.Namespace) -> int:
    from hostside.precision.analysis import check_model_fits
    from hostside.precision.quantize import quantize_and_measure
    from hostside.train.datasets import load_dataset

    model = _model_path(args.model)
    out = Path(args.out)
    if out.resolve() == model.resolve():
        raise UserError(f"--out {out} is the input model; choose another file name such as {model.stem}.int8.onnx")
    dataset = load_dataset(args.dataset)
    check_model_fits(model, dataset)
    split, _, new_split = resolve_split(args.split, model, dataset, args.seed, out.parent)
    with written_only_on_success(out.parent, names=(out.name, "split.json")):
        report = quantize_and_measure(
            model, dataset, split.train, split.test, out, board_name=None if args.no_measure else args.board,
            runs=args.runs, threads=args.threads, calibration_samples=args.calibration_samples, seed=args.seed,
            progress=_progress,
        )
        save_new_split(split, new_split)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
        return 0
    print(f"wrote {report.int8_model} ({report.int8_size_bytes:,} bytes; float {report.float_size_bytes:,} bytes), "
          f"calibrated on {report.calibration_samples} training images")
    print(f"accuracy on {report.test_images} test images: float {_pct(report.float_accuracy)}, "
          f"int8 {_pct(report.int8_accuracy)} ({100 * (report.int8_accuracy - report.float_accuracy):+.2f} pts)")
    if report.board:
        print(f"latency on {report.board} (median of {args.runs} runs, {args.threads} thread(s)): "
              f"float {report.float_latency_ms:.4f} ms, int8 {report.int8_latency_ms:.4f} ms "
              f"({report.speedup:.2f}x {'faster' if report.speedup >= 1 else 'slower: int8 does not pay off here'})")
    return 0
