"""``hostside calibrate`` (measure a board) and ``hostside predict`` (use a calibration offline)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from hostside.calibration.rules import ISAS, RUNTIMES
from hostside.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    cal = subparsers.add_parser(
        "calibrate", help="measure the calibration suite on a board and fit its latency model",
        description="Export and measure the calibration suite on a board (resumable), then fit and write "
                    "DIR/calibration.json, the measurements CSV, provenance, fit report and plot.",
    )
    cal.add_argument("--board", action="append", metavar="NAME",
                     help="board name ('local' = this machine); repeat or comma-separate to pool boards of one kind "
                          "(required unless --from-measurements)")
    cal.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    cal.add_argument("--quick", action="store_true", help="the quick suite (~60 models) instead of ~240")
    cal.add_argument("--input-shape", metavar="C,H,W", help="only this input shape (default: mixed 1x8x8..3x96x96)")
    cal.add_argument("--seed", type=int, help="suite seed (default: the standard suite)")
    cal.add_argument("--power", metavar="SOURCE", help="also record energy per inference from this power source "
                                                       "(rapl, hwmon or a source the board declares; see "
                                                       "deploy/POWER.md and `device-agent info`)")
    cal.add_argument("--out", type=Path, metavar="DIR", help="output directory (reused to resume)")
    cal.add_argument("--allow-emulated", action="store_true",
                     help="let an emulated ARM rig be calibrated (tests only; never into calibration_data/)")
    drift = cal.add_argument_group("drift check (--check)")
    drift.add_argument("--check", action="store_true",
                       help="re-measure a dozen suite models and report how far the board drifted from its "
                            "calibration; exits 1 beyond the tolerance")
    drift.add_argument("--calibration", type=Path, metavar="FILE",
                       help="the calibration to check (default: the board's stored one)")
    drift.add_argument("--tolerance", type=float, default=None, metavar="FRACTION",
                       help="allowed |measured/predicted - 1| (default 0.15)")
    moved = cal.add_argument_group("transfer (--transfer-from)")
    moved.add_argument("--transfer-from", type=Path, metavar="CAL.json",
                       help="adapt this calibration of another board from a few measurements instead of "
                            "measuring the whole suite")
    moved.add_argument("--samples", type=int, default=None, metavar="N", help="models to measure (default 10)")
    given = cal.add_argument_group("measurements taken elsewhere (--from-measurements)")
    given.add_argument("--from-measurements", type=Path, metavar="FILE.csv",
                       help="fit from a CSV with columns model,latency_ms[,energy_mj] (model: an .onnx or ArchSpec "
                            ".json relative to the CSV) instead of measuring; with --transfer-from, rescale that "
                            "calibration from as few as 10 rows")
    given.add_argument("--board-name", metavar="NAME", help="the measured board's name (default: the CSV's folder)")
    given.add_argument("--runtime", choices=RUNTIMES, help="the runtime that measured them (default onnxruntime)")
    given.add_argument("--isa", choices=ISAS, help="the board's instruction set (default: this machine's)")
    cal.set_defaults(handler=_calibrate)

    pred = subparsers.add_parser(
        "predict", help="predict batch-1 latency of ArchSpec JSON or ONNX files from a calibration",
    )
    pred.add_argument("--calibration", type=Path, required=True, metavar="FILE", help="a calibration.json")
    pred.add_argument("files", nargs="+", type=Path, metavar="ARCH.json|MODEL.onnx")
    pred.add_argument("--json", action="store_true", help="print a JSON list")
    pred.add_argument("--board", metavar="NAME", default=None,
                      help="the board the predictions are for, to be told when the calibration is another's "
                           "(default: this machine)")
    pred.set_defaults(handler=_predict)


def parse_input_shape(text: str) -> Tuple[int, int, int]:
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input-shape {text!r} is not C,H,W with three positive integers; e.g. --input-shape 1,28,28")
    return shape  # type: ignore[return-value]


def _board_names(values: List[str]) -> List[str]:
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    if not names:
        raise UserError("--board needs a board name; use 'local' for this machine or see `hostside boards list`")
    return names


def _progress_bar(description: str) -> Tuple[Callable[[int, int], None], Callable[[], None]]:
    from tqdm import tqdm

    bar: List[Optional[tqdm]] = [None]

    def update(done: int, total: int) -> None:
        if bar[0] is None:
            bar[0] = tqdm(total=total, desc=description, unit="model")
        bar[0].n = done
        bar[0].refresh()

    def close() -> None:
        if bar[0] is not None:
            bar[0].close()

    return update, close


def _calibrate(args: argparse.Namespace) -> int:
    from hostside.boards.board import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, FIT_REPORT_JSON, PLOT_PNG, calibrate
    from hostside.calibration.suite import DEFAULT_SEED

    if args.from_measurements is not None:
        return _from_measurements(args)
    if any(v is not None for v in (args.board_name, args.runtime, args.isa)):
        raise UserError("--board-name, --runtime and --isa belong to --from-measurements FILE.csv; add it or drop them")
    if not args.board:
        raise UserError("--board NAME is required (or fit from a CSV with --from-measurements FILE.csv)")
    if args.check:
        return _check(args)
    if args.calibration is not None or args.tolerance is not None:
        raise UserError("--calibration and --tolerance belong to --check; add --check or drop them")
    if args.out is None:
        raise UserError("--out DIR is required (where the measurements and calibration.json go)")
    if args.transfer_from is not None:
        return _transfer(args)
    if args.samples is not None:
        raise UserError("--samples belongs to --transfer-from CAL.json; add it or drop --samples")
    shape = parse_input_shape(args.input_shape) if args.input_shape else None
    boards = [open_board(name) for name in _board_names(args.board)]
    progress, close = _progress_bar("measuring")
    try:
        calibration = calibrate(boards, args.out, threads=args.threads, quick=args.quick, input_shape=shape,
                                seed=DEFAULT_SEED if args.seed is None else args.seed, power=args.power,
                                progress=progress, allow_emulated=args.allow_emulated)
    finally:
        close()
    report = calibration.fit_report
    print(f"{'model':24s} {'R2(log)':>8s} {'MAPE':>7s} {'±10%':>6s} {'±20%':>6s} {'Spearman':>9s}  (cross-validated)")
    for kind, entry in report["models"].items():
        cv = entry["cross_validated"]
        mark = "*" if kind == calibration.chosen else " "
        print(f"{kind:23s}{mark} {cv['r2_log']:8.3f} {cv['mape']:7.1%} {cv['within_10pct']:6.0%} "
              f"{cv['within_20pct']:6.0%} {cv['spearman']:9.3f}")
    floor, probe = report.get("per_inference_floor_ms"), report.get("floor_probe_measured_ms")
    if floor is not None:
        print(f"per-inference floor: {floor * 1000:.1f} µs fitted"
              + (f", {probe * 1000:.1f} µs measured on the floor probe (flatten + linear)" if probe else ""))
    print(f"chosen: {calibration.chosen} (rule set {calibration.rules.name}); wrote {args.out / CALIBRATION_JSON}, "
          f"{args.out / FIT_REPORT_JSON}, {args.out / PLOT_PNG}")
    return 0


def _single_board(args: argparse.Namespace, what: str):
    from hostside.boards.board import open_board

    names = _board_names(args.board)
    if len(names) != 1:
        raise UserError(f"{what} takes one board, got {', '.join(names)}")
    return open_board(names[0])


def _check(args: argparse.Namespace) -> int:
    from hostside.calibration.artifact import load_calibration
    from hostside.calibration.drift import DEFAULT_TOLERANCE, check_drift
    from hostside.calibration.registry import find_calibration

    board = _single_board(args, "--check")
    if args.calibration is not None:
        calibration = load_calibration(args.calibration)
    else:
        info = board.info()
        calibration = find_calibration(board.key, args.threads, (info.get("onnxruntime") or {}).get("version"))
        if calibration is None:
            raise UserError(f"board {board.name} has no stored calibration for threads={args.threads}; give "
                            f"--calibration FILE or calibrate it: `hostside calibrate --board {board.name} --out DIR`")
    _warn_if_foreign(calibration, board.info())
    report = check_drift(board, calibration, DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance)
    print(f"calibration: {calibration.path} (sha256 {calibration.sha256[:12]})")
    print(report.summary())
    report.raise_if_drifted()
    print("within tolerance: the calibration still holds")
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from hostside.calibration.calibrate import CALIBRATION_JSON
    from hostside.calibration.transfer import DEFAULT_SAMPLES, TRANSFER_JSON, transfer

    board = _single_board(args, "--transfer-from")
    progress, close = _progress_bar("measuring")
    try:
        calibration = transfer(board, args.transfer_from, args.out, args.samples or DEFAULT_SAMPLES,
                               threads=args.threads, allow_emulated=args.allow_emulated, progress=progress)
    finally:
        close()
    report = calibration.fit_report
    loo = report["leave_one_out"]
    scales = ", ".join(f"{g} x{s:.2f}" for g, s in report["group_scales"].items())
    print(f"transferred from {args.transfer_from} with {loo['count']} measured models; leave-one-out: "
          f"MAPE {loo['mape']:.1%}, within ±20% {loo['within_20pct']:.0%}, Spearman {loo['spearman']:.3f}")
    print(f"kernel-group scales: {scales}")
    print(f"wrote {args.out / CALIBRATION_JSON} and {args.out / TRANSFER_JSON}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hostside.calibration.artifact import load_calibration

    calibration = load_calibration(args.calibration)
    from hostside.safe_io import check_file

    for path in args.files:
        check_file(path, "ArchSpec or ONNX file")
    _warn_if_foreign(calibration, _board_info(args.board))
    predictions = [calibration.predict(path).to_dict() for path in args.files]
    if args.json:
        print(json.dumps(predictions, indent=1))
        return 0
    board = calibration.board
    print(f"calibration: {board.get('cpu_model') or board.get('key')} ({board.get('name')}), "
          f"threads={calibration.threads or 'not recorded'}, model {calibration.chosen}")
    for p in predictions:
        lo, hi = p["interval_ms"]
        energy = ""
        if "energy_mj" in p:
            e_lo, e_hi = p["energy_interval_mj"]
            energy = f", {p['energy_mj']:.3f} mJ (90% interval {e_lo:.3f}..{e_hi:.3f} mJ)"
        print(f"{p['path']}: {p['latency_ms']:.3f} ms (90% interval {lo:.3f}..{hi:.3f} ms){energy}")
    return 0


def _board_info(name: Optional[str]) -> dict:
    """The agent facts of the named board, or of this machine (the ``local`` board) without a
    name: asked of its agent, like any board's, so the host needs none of the agent's modules."""
    from hostside.boards.board import open_board
    from hostside.boards.inventory import LOCAL

    with open_board(name or LOCAL) as board:
        return board.info()


def _warn_if_foreign(calibration, board_info: dict) -> None:
    """One line on stderr (stdout may be JSON) when the calibration is another board's."""
    import sys

    from hostside.calibration.foreign import foreign_warning

    line = foreign_warning(calibration, board_info)
    if line:
        print(f"hostside: warning: {line}", file=sys.stderr, flush=True)


def _from_measurements(args: argparse.Namespace) -> int:
    from hostside.calibration.calibrate import CALIBRATION_JSON, FIT_REPORT_JSON, PLOT_PNG
    from hostside.calibration.from_measurements import calibrate_from_measurements, summary_lines

    extra = [flag for flag, value in (("--board", args.board), ("--check", args.check), ("--quick", args.quick),
                                      ("--power", args.power), ("--samples", args.samples),
                                      ("--input-shape", args.input_shape), ("--calibration", args.calibration),
                                      ("--tolerance", args.tolerance is not None)) if value]
    if extra:
        raise UserError(f"{', '.join(extra)} cannot go with --from-measurements (nothing is measured); "
                        f"drop {'it' if len(extra) == 1 else 'them'}")
    if args.out is None:
        raise UserError("--out DIR is required (where calibration.json and the plots go)")
    calibration = calibrate_from_measurements(args.from_measurements, args.out, args.board_name, args.runtime,
                                              args.isa, args.transfer_from)
    for line in summary_lines(calibration):
        print(line)
    print(f"chosen: {calibration.chosen} (rule set {calibration.rules.name}"
          f"{', energy model ' + calibration.body['energy']['chosen_model'] if 'energy' in calibration.body else ''}); "
          f"wrote {args.out / CALIBRATION_JSON}, {args.out / FIT_REPORT_JSON}, {args.out / PLOT_PNG}")
    return 0
