"""Calibrate a board: measure the suite, fit the models, write ``DIR/calibration.json``.

The directory is the unit of work and of resumption: ``measurements.csv`` (one row per model),
``specs/`` (the measured ArchSpecs), ``provenance.json``, ``fit_report.json``,
``predicted_vs_measured.png`` and ``calibration.json``. Running again with the same settings
measures only what is missing and refits.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.calibration.artifact import Calibration, build_body
from hostside.calibration.kernel_probes import kernel_probes, probe_count
from hostside.calibration.measure import (MIN_TIME_S, PROVENANCE_JSON, WARMUP, load_measured_specs, measure_suite,
                                          refresh_feature_columns, write_provenance)
from hostside.calibration.suite import (DEFAULT_INPUT_SHAPES, DEFAULT_SEED, DEFAULT_SIZE, QUICK_SIZE,
                                        calibration_suite)
from hostside.errors import UserError

CALIBRATION_JSON = "calibration.json"
#: The latency the models predict: the median of the timed runs, the statistic every latency
#: figure of the project means unless its key says otherwise (ARCHITECTURE.md). Calibrate on a
#: board that runs nothing else: the CSV keeps the minimum, whose ratio to the median shows a
#: busy board (on this machine, quiet, the median is 1.02x the minimum for the median model).
TARGET_COLUMN = "latency_median_ms"
FIT_REPORT_JSON = "fit_report.json"
PLOT_PNG = "predicted_vs_measured.png"
#: Settings that must match for measurements in one directory to belong to one calibration.
#: The adaptive second round measures size // REFINE_SHARE more models, drawn from a pool of
#: another seed.
REFINE_SHARE = 4
REFINE_SEED_OFFSET = 101
_SETTINGS = ("board_key", "threads", "suite_seed", "input_shapes", "warmup", "min_time_s", "power_source")

Progress = Callable[[int, int], None]


def protocol_kwargs(threads: int, power: Optional[str] = None) -> Dict[str, Any]:
    """The measurement protocol of every calibration (passed to ``Board.measure``)."""
    return {"threads": threads, "warmup": WARMUP, "min_time_s": MIN_TIME_S, "power": power}


def calibrate(boards: Sequence[Any], out_dir: Path, threads: int = 1, quick: bool = False,
              input_shape: Optional[Tuple[int, int, int]] = None, seed: int = DEFAULT_SEED,
              size: Optional[int] = None, power: Optional[str] = None,
              progress: Optional[Progress] = None, allow_emulated: bool = False,
              refine: Optional[int] = None) -> Calibration:
    """Measure the suite on ``boards`` (one kind, pooled), fit, and write the calibration.

    ``power`` names the boards' power source (``device-agent info`` lists them) to record
    energy per inference next to latency. ``allow_emulated`` lets an emulated ARM rig be
    calibrated (to test the calibration machinery itself), never into ``calibration_data/``.
    ``refine`` extra models (default a quarter of the suite) are then measured next to the
    ones the first fit predicts worst, and everything is refitted.

    Raises UserError when ``out_dir`` holds measurements taken with other settings (another
    board kind, thread count, seed or input shapes), since mixing them would be meaningless.
    """
    from hostside.boards.pool import BoardPool

    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    pool = BoardPool(list(boards))
    key = pool.check_same_kind()
    size = size or (QUICK_SIZE if quick else DEFAULT_SIZE)
    shapes = [tuple(input_shape)] if input_shape else None
    specs = (calibration_suite(size, seed, shapes) + [floor_probe(shapes[0] if shapes else (1, 8, 8))]
             + kernel_probes(probe_count(size), seed, shapes or DEFAULT_INPUT_SHAPES))
    info = pool.boards[0].info()
    check_emulated(pool.boards[0], info, out_dir, allow_emulated)
    provenance = provenance_for(pool, key, info, threads, seed, size, shapes)
    provenance["power_source"] = power
    out_dir.mkdir(parents=True, exist_ok=True)
    session = {"date": provenance["date"], "load_average_before": list(os.getloadavg())}
    provenance["sessions"] = check_settings(out_dir, provenance) + [session]
    write_provenance(out_dir, provenance)
    kwargs = protocol_kwargs(threads, power)
    rows = measure_suite(specs, out_dir, lambda paths: pool.measure_many(paths, **kwargs),
                         ",".join(b.name for b in pool.boards), progress)
    wanted = {s.content_hash() for s in specs}
    rows = [r for r in rows if r["spec_sha256"] in wanted]
    failed = len(specs) - len(rows)
    if failed:
        print(f"hostside: {failed} of {len(specs)} suite models failed to measure (see error column of "
              f"{out_dir / 'measurements.csv'}); fitting on the rest", flush=True)
    refine = size // REFINE_SHARE if refine is None else refine
    if refine > 0 and len(rows) >= 20:
        # Adaptive sampling: more models where the first fit errs most (nn-Meter's idea).
        extra = high_error_neighbours(fit_directory(out_dir, provenance), out_dir, refine, seed, shapes)
        provenance["refined_models"] = len(extra)
        first = len(rows)  # progress goes on counting from the first round instead of restarting at 0
        refine_progress = (lambda done, total: progress(first + done, first + total)) if progress else None
        rows += [r for r in measure_suite(extra, out_dir, lambda paths: pool.measure_many(paths, **kwargs),
                                          ",".join(b.name for b in pool.boards), refine_progress)
                 if r["spec_sha256"] in {s.content_hash() for s in extra}]
    session["load_average_after"] = list(os.getloadavg())
    provenance["measured_models"] = len(rows)
    write_provenance(out_dir, provenance)
    return fit_directory(out_dir, provenance)


FLOOR_PROBE_NAME = "floor-probe"


def floor_probe(input_shape: Tuple[int, int, int]) -> Any:
    """The smallest network there is (flatten + a 10-way linear layer): its latency is the
    board's per-inference floor (session run, input and output copies, a few operators),
    measured rather than only extrapolated, since it dominates every tiny model."""
    from hostside.arch.spec import INPUT, ArchSpec

    return ArchSpec.from_dict({"name": FLOOR_PROBE_NAME, "input_shape": list(input_shape), "num_classes": 10,
                               "nodes": [{"id": "flat", "op": "flatten", "inputs": [INPUT]},
                                         {"id": "fc", "op": "linear", "inputs": ["flat"], "out_features": 10}]})


def per_inference_floor_ms(model: Dict[str, Any]) -> Optional[float]:
    """The fixed per-inference cost a kernel model has fitted (its intercept), if it has one."""
    data = model.get("additive", model)
    return float(data["intercept_ms"]) if "intercept_ms" in data else None


def high_error_neighbours(calibration: Calibration, out_dir: Path, count: int, seed: int,
                          shapes: Optional[list]) -> List[Any]:
    """``count`` new suite-like specs next to the measured models the calibration predicts
    worst out of fold: for each of the ``count // 2`` worst, the two nearest candidates of a
    fresh pool in standardised log-feature space."""
    from hostside.calibration.features import features_matrix
    from hostside.calibration.measure import MEASUREMENTS_CSV, read_measurements
    from hostside.calibration.models import cross_validate

    rows = [r for r in read_measurements(out_dir / MEASUREMENTS_CSV) if not r["error"]]
    specs = load_measured_specs(out_dir, rows)
    latency = np.array([float(r[TARGET_COLUMN]) for r in rows])
    block = calibration.rules
    measured = np.log1p(features_matrix(specs, block))
    error = np.abs(np.log(cross_validate(calibration.chosen, features_matrix(specs, block), latency) / latency))
    anchors = np.argsort(error)[::-1][:max(1, count // 2)]
    known = {s.content_hash() for s in specs}
    pool = [s for s in calibration_suite(4 * count, seed + REFINE_SEED_OFFSET, shapes) if s.content_hash() not in known]
    candidates = np.log1p(features_matrix(pool, block))
    scale = np.where(measured.std(axis=0) > 0, measured.std(axis=0), 1.0)
    taken: List[int] = []
    for anchor in anchors:
        distance = np.linalg.norm((candidates - measured[anchor]) / scale, axis=1)
        distance[taken] = np.inf
        for nearest in np.argsort(distance)[:2]:
            if len(taken) < count and np.isfinite(distance[nearest]):
                taken.append(int(nearest))
                distance[nearest] = np.inf
    return [pool[i] for i in taken]


def fit_directory(out_dir: Path, provenance: Optional[Dict[str, Any]] = None) -> Calibration:
    """Fit the models on the measurements in ``out_dir`` and write the calibration file,
    the fit report and the predicted-vs-measured plot."""
    from hostside.calibration.features import features_matrix
    from hostside.calibration.from_measurements import fit_measurements
    from hostside.calibration.measure import MEASUREMENTS_CSV, read_measurements
    from hostside.calibration.plot import plot_predicted_vs_measured
    from hostside.calibration.rules import RULE_SETS, board_runtime_isa, candidates_for

    if provenance is None:
        provenance = json.loads((out_dir / PROVENANCE_JSON).read_text())
    rows = [r for r in read_measurements(out_dir / MEASUREMENTS_CSV) if not r["error"]]
    if len(rows) < 10:
        raise UserError(f"{out_dir}: only {len(rows)} successful measurements; a calibration needs at least 10 "
                        f"(see the error column of {MEASUREMENTS_CSV})")
    specs = load_measured_specs(out_dir, rows)
    latency = np.array([float(r[TARGET_COLUMN]) for r in rows])
    # The board's runtime and ISA name its rule sets; where several fit (x86: NCHWc block 8,
    # 16 or none), the one whose best model cross-validates best is the board's.
    names = candidates_for(*board_runtime_isa(provenance.get("board", {})))
    all_features = {name: features_matrix(specs, RULE_SETS[name]) for name in names}
    fit = fit_measurements(all_features, latency)
    rules, chosen, models, report, oof = fit.rules, fit.chosen, fit.models, fit.report, fit.oof_ms
    features = all_features[rules.name]
    report["nchwc_block"] = rules.block
    report["target"] = TARGET_COLUMN
    report["measured_ms_range"] = [float(latency.min()), float(latency.max())]
    report["macs_range"] = [int(features[:, 0].min()), int(features[:, 0].max())]
    report["params_range"] = [int(features[:, 1].min()), int(features[:, 1].max())]
    report["per_inference_floor_ms"] = per_inference_floor_ms(models[chosen].data)
    probes = [float(r[TARGET_COLUMN]) for r in rows if r["name"] == FLOOR_PROBE_NAME]
    report["floor_probe_measured_ms"] = probes[0] if probes else None
    refresh_feature_columns(out_dir, rules)
    (out_dir / FIT_REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    plot_predicted_vs_measured(latency, oof, report, out_dir / PLOT_PNG, title=_plot_title(provenance))
    calibration = Calibration(build_body(models, chosen, rules, report, provenance))
    calibration.save(out_dir / CALIBRATION_JSON)
    return calibration


def _plot_title(provenance: Dict[str, Any]) -> str:
    board = provenance.get("board", {})
    return f"{board.get('cpu_model') or board.get('key')} ({board.get('name')}), threads={provenance.get('threads')}"


def check_emulated(board: Any, info: Dict[str, Any], out_dir: Path, allow_emulated: bool) -> None:
    """Emulated ARM rigs (qemu-user) run tens to hundreds of times slower than any real
    board: their calibrations only serve to test the machinery, so they need
    ``allow_emulated`` and may never land among the shipped sets."""
    if not info.get("emulated"):
        return
    if not allow_emulated:
        raise UserError(
            f"board {board.name!r} is an emulated ARM rig (qemu-user): its timings are hundreds of times "
            f"too slow to mean anything, so it cannot be calibrated; calibrate a real board "
            f"(or pass --allow-emulated to test the calibration itself, into a scratch directory)"
        )
    from hostside.calibration.registry import CALIBRATION_DATA

    if Path(out_dir).resolve().is_relative_to(CALIBRATION_DATA):
        raise UserError(f"{out_dir} is inside {CALIBRATION_DATA}: calibrations of emulated boards never go there; "
                        f"use a scratch --out directory")


def provenance_for(pool: Any, key: str, info: Dict[str, Any], threads: int, seed: int, size: int,
                shapes: Optional[list]) -> Dict[str, Any]:
    ort = info.get("onnxruntime") or {}
    return {
        "board": {"name": pool.boards[0].name, "names": [b.name for b in pool.boards], "key": key,
                  "cpu_model": info.get("cpu_model"), "cores": info.get("cores"),
                  "architecture": info.get("architecture"), "info": info},
        "board_key": key,
        "onnxruntime_version": ort.get("version"),
        "threads": threads,
        "warmup": WARMUP,
        "min_time_s": MIN_TIME_S,
        "suite_seed": seed,
        "suite_size": size,
        "input_shapes": [list(s) for s in shapes] if shapes else "mixed 1x8x8..3x96x96",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "python": platform.python_version()},
    }


def check_settings(out_dir: Path, provenance: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The measuring sessions recorded so far in ``out_dir`` (resumed runs keep their history);
    UserError when they used other settings."""
    path = out_dir / PROVENANCE_JSON
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UserError(f"{path}: corrupted provenance file; remove {out_dir} or use another --out directory") from None
    differ = [k for k in _SETTINGS if old.get(k) != provenance.get(k)]
    if differ:
        listing = ", ".join(f"{k}={old.get(k)!r} (now {provenance.get(k)!r})" for k in differ)
        raise UserError(f"{out_dir} holds measurements taken with other settings: {listing}; "
                        f"use another --out directory or the same settings")
    return list(old.get("sessions", []))
