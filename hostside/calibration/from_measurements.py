"""A calibration from measurements taken anywhere: a CSV of models and their latencies.

Why: the boards that matter are often measured by someone else (a benchmark's published
figures, a phone lab, a colleague's Pi). Given ``model,latency_ms[,energy_mj]`` rows, where
``model`` is an ONNX file or an ArchSpec JSON relative to the CSV's folder, this fits the same
models as a measured calibration (features under the rule set of the named runtime and ISA,
kernel models chosen by k-fold cross-validation) and writes the same ``calibration.json``,
with the CSV's sha256 as provenance. With ``energy_mj`` the calibration predicts energy too.
With a source calibration, as few as 10 rows rescale its kernel groups (``transfer``).

Every bad input is refused before anything is written, in one line naming the CSV row (the
file's line number, the header being row 1).
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import io
import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from hostside.calibration.artifact import Calibration, build_body
from hostside.calibration.rules import RULE_SETS, RuleSet, candidates_for, isa_of
from hostside.errors import UserError

MODEL_COLUMN = "model"
LATENCY_COLUMN = "latency_ms"
ENERGY_COLUMN = "energy_mj"
MIN_ROWS = 5
MAX_FOLDS = 5
ENERGY_PLOT_PNG = "energy_predicted_vs_measured.png"
#: Two rows of one model whose figures differ by more than this share contradict each other.
DUPLICATE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class MeasuredModel:
    """One CSV row: the model it names and its figures; ``features`` computes the model's
    feature vector under a rule set (ONNX files are read again per rule set)."""

    row: int
    model: Path
    latency_ms: float
    energy_mj: Optional[float]
    features: Callable[[RuleSet], List[float]]


def _number(csv_name: str, row: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{csv_name} row {row}: {column} {text!r} is not a number") from None
    if math.isnan(value) or math.isinf(value):
        raise UserError(f"{csv_name} row {row}: {column} {text!r} is not a finite number")
    if value <= 0:
        raise UserError(f"{csv_name} row {row}: {column} {text!r} must be positive (a measured figure)")
    return value


def _feature_reader(csv_name: str, row: int, path: Path) -> Callable[[RuleSet], List[float]]:
    """The feature function of one model file, after checking that it reads (once)."""
    from hostside.arch.spec import ArchSpec
    from hostside.calibration.features import onnx_features, spec_features

    suffix = path.suffix.lower()
    if suffix not in (".onnx", ".json"):
        raise UserError(f"{csv_name} row {row}: model {path.name!r} is neither an .onnx file nor an ArchSpec .json")
    try:
        if suffix == ".json":
            spec = ArchSpec.load(path)
            spec_features(spec, RULE_SETS["onnxruntime-arm64"])
            return lambda rules: spec_features(spec, rules)
        onnx_features(path, RULE_SETS["onnxruntime-arm64"])
    except UserError as exc:
        raise UserError(f"{csv_name} row {row}: model {path.name!r} cannot be read: {exc}") from None
    except Exception as exc:  # a damaged file fails deep inside onnx / json; the row is what to name
        raise UserError(f"{csv_name} row {row}: model {path.name!r} cannot be read ({type(exc).__name__}: "
                        f"{exc})") from None
    return lambda rules: onnx_features(path, rules)


def read_measurements_csv(path: Path) -> Tuple[List[MeasuredModel], str, bool]:
    """The rows of a measurements CSV, each model checked readable; the CSV's sha256; whether
    it has energy. UserError naming the row for every bad input."""
    from hostside import safe_io

    csv_name = path.name
    data = safe_io.read_bytes(path, "measurements CSV")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text CSV; give a CSV with columns model,latency_ms[,energy_mj]") from None
    reader = csv.reader(io.StringIO(text))
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in (MODEL_COLUMN, LATENCY_COLUMN) if c not in header]
    if missing:
        found = ", ".join(header) or "nothing"
        raise UserError(f"{csv_name} row 1: the header lacks {', '.join(missing)} (found {found}); "
                        f"the CSV needs columns {MODEL_COLUMN},{LATENCY_COLUMN}[,{ENERGY_COLUMN}]")
    has_energy = ENERGY_COLUMN in header
    index = {name: header.index(name) for name in header}
    rows: List[MeasuredModel] = []
    seen: Dict[Path, MeasuredModel] = {}
    for cells in reader:
        row = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) < len(header):
            raise UserError(f"{csv_name} row {row}: {len(cells)} cells, the header has {len(header)}")
        name = cells[index[MODEL_COLUMN]].strip()
        if not name:
            raise UserError(f"{csv_name} row {row}: the model cell is empty; name an .onnx or ArchSpec .json file")
        model = (path.parent / name).resolve()
        if not model.is_file():
            raise UserError(f"{csv_name} row {row}: model file {name!r} not found next to {csv_name} ({model})")
        latency = _number(csv_name, row, LATENCY_COLUMN, cells[index[LATENCY_COLUMN]].strip())
        energy = _number(csv_name, row, ENERGY_COLUMN, cells[index[ENERGY_COLUMN]].strip()) if has_energy else None
        earlier = seen.get(model)
        if earlier is not None:
            if _differ(earlier.latency_ms, latency) or (has_energy and _differ(earlier.energy_mj, energy)):
                raise UserError(f"{csv_name} row {row}: model {name!r} is also on row {earlier.row} with other "
                                f"figures; keep one row per model (e.g. the median of the repeated measurements)")
            continue
        entry = MeasuredModel(row, model, latency, energy, _feature_reader(csv_name, row, model))
        seen[model] = entry
        rows.append(entry)
    if len(rows) < MIN_ROWS:
        raise UserError(f"{csv_name}: {len(rows)} distinct measured models; a calibration needs at least {MIN_ROWS}")
    return rows, hashlib.sha256(data).hexdigest(), has_energy


def _differ(a: Optional[float], b: Optional[float]) -> bool:
    return a is None or b is None or abs(a - b) > DUPLICATE_TOLERANCE * max(abs(a), abs(b))


def folds_for(count: int) -> int:
    """k of the k-fold cross-validation: 5, fewer for very few rows (each fold trains on two or more)."""
    return max(2, min(MAX_FOLDS, count // 2))


@dataclass
class FitResult:
    """The chosen rule set and latency models (and energy models) with their fit reports."""

    rules: RuleSet
    chosen: str
    models: Dict[str, Any]
    report: Dict[str, Any]
    oof_ms: Dict[str, List[float]]
    energy: Optional[Tuple[str, Dict[str, Any], Dict[str, Any], Dict[str, List[float]]]] = None


def fit_measurements(features_by_rules: Dict[str, np.ndarray], latency_ms: np.ndarray,
                     energy_mj: Optional[np.ndarray] = None, seed: int = 0) -> FitResult:
    """Fit every model kind under every candidate rule set; keep the rule set and kind with
    the lowest cross-validated MAPE (never judged on rows it was fitted on). Energy, when
    given, is fitted with the chosen rule set's features the same way."""
    from hostside.calibration.models import fit_all

    folds = folds_for(len(latency_ms))
    fits = {name: fit_all(f, latency_ms, folds=folds, seed=seed) for name, f in features_by_rules.items()}
    mape = {name: fit[2]["models"][fit[0]]["cross_validated"]["mape"] for name, fit in fits.items()}
    best = min(fits, key=lambda n: mape[n])
    chosen, models, report = fits[best]
    report["rule_set"] = best
    report["rule_set_selection"] = {n: {"chosen_model": fits[n][0], "cv_mape": m} for n, m in mape.items()}
    oof = {kind: entry.pop("oof_predicted_ms") for kind, entry in report["models"].items()}
    result = FitResult(RULE_SETS[best], chosen, models, report, oof)
    if energy_mj is not None:
        e_chosen, e_models, e_report = fit_all(features_by_rules[best], energy_mj, folds=folds, seed=seed)
        e_oof = {kind: entry.pop("oof_predicted_ms") for kind, entry in e_report["models"].items()}
        report["energy"] = e_report
        result.energy = (e_chosen, e_models, e_report, e_oof)
    return result


def calibrate_from_measurements(csv_path: Path, out_dir: Path, board_name: Optional[str] = None,
                                runtime: Optional[str] = None, isa: Optional[str] = None,
                                transfer_from: Optional[Path] = None) -> Calibration:
    """Read and check ``csv_path``, fit, and write ``out_dir/calibration.json``, the fit report
    and the predicted-vs-measured plots. Without ``isa`` the rule sets of this machine's ISA are
    tried; with ``transfer_from`` the source calibration's kernel groups are rescaled instead."""
    from hostside.calibration.artifact import load_calibration
    from hostside.calibration.calibrate import CALIBRATION_JSON, FIT_REPORT_JSON, PLOT_PNG
    from hostside.calibration.plot import plot_predicted_vs_measured

    csv_path = Path(csv_path)
    runtime = runtime or "onnxruntime"
    isa = isa or isa_of(platform.machine()) or "x86_64"
    source = load_calibration(transfer_from) if transfer_from is not None else None
    names = (source.rules.name,) if source is not None else candidates_for(runtime, isa)
    rows, sha256, has_energy = read_measurements_csv(csv_path)
    latency = np.array([r.latency_ms for r in rows])
    energy = np.array([r.energy_mj for r in rows]) if has_energy else None
    features = {n: np.array([r.features(RULE_SETS[n]) for r in rows], dtype=np.float64) for n in names}
    board_name = board_name or csv_path.resolve().parent.name
    provenance = {
        "board": {"name": board_name, "key": board_name, "cpu_model": None, "architecture": isa,
                  "info": {"runtime": runtime, "architecture": isa}},
        "board_key": board_name, "threads": None, "onnxruntime_version": None,
        "measurements": {"csv": csv_path.name, "sha256": sha256, "rows": len(rows), "energy": has_energy,
                         "runtime": runtime, "isa": isa},
        "measured_models": len(rows),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {"hostname": platform.node(), "python": platform.python_version()},
    }
    title = f"{board_name} ({runtime}, {isa}), from {csv_path.name}"
    if source is not None:
        calibration, plot_args, fit = _transferred(source, transfer_from, features[source.rules.name], latency,
                                                   energy, provenance)
    else:
        fit = fit_measurements(features, latency, energy)
        provenance["measurements"]["rule_set"] = fit.rules.name
        energy_part = (fit.energy[0], fit.energy[1]) if fit.energy else None
        calibration = Calibration(build_body(fit.models, fit.chosen, fit.rules, fit.report, provenance, energy_part))
        plot_args = (fit.oof_ms, fit.report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / FIT_REPORT_JSON).write_text(json.dumps(calibration.fit_report, indent=1) + "\n")
    plot_predicted_vs_measured(latency, plot_args[0], plot_args[1], out_dir / PLOT_PNG, title=title)
    if fit is not None and fit.energy is not None:
        plot_predicted_vs_measured(energy, fit.energy[3], fit.energy[2], out_dir / ENERGY_PLOT_PNG, title=title,
                                   quantity="energy (mJ)")
    calibration.save(out_dir / CALIBRATION_JSON)
    return calibration


def _transferred(source: Calibration, source_path: Path, features: np.ndarray, latency: np.ndarray,
                 energy: Optional[np.ndarray], provenance: Dict[str, Any]
                 ) -> Tuple[Calibration, Tuple[Dict[str, List[float]], Dict[str, Any]], Optional[FitResult]]:
    """The source calibration rescaled to the rows (leave-one-out scored); energy, if measured,
    the source's energy model rescaled the same way, or fitted afresh when it has none."""
    from hostside.calibration.models import TRANSFERRED, LatencyModel
    from hostside.calibration.transfer import fit_transfer

    model, report = fit_transfer(source, features, latency)
    oof = report.pop("oof_predicted_ms")
    report.update({"chosen": TRANSFERRED, "rule_set": source.rules.name,
                   "models": {TRANSFERRED: {"cross_validated": report["leave_one_out"]}}})
    provenance["transfer"] = {"source": str(source_path), "source_sha256": source.sha256,
                              "source_board": source.board.get("key"), "samples": len(latency)}
    provenance["measurements"]["rule_set"] = source.rules.name
    fit = None
    energy_part = None
    if energy is not None and source.energy_model is not None:
        e_model, e_report = fit_transfer(source, features, energy, base=source.energy_model)
        e_oof = e_report.pop("oof_predicted_ms")
        e_report.update(chosen=TRANSFERRED, models={TRANSFERRED: {"cross_validated": e_report["leave_one_out"]}})
        report["energy"] = e_report
        energy_part = (TRANSFERRED, {TRANSFERRED: e_model})
        fit = FitResult(source.rules, TRANSFERRED, {}, report, {}, (TRANSFERRED, energy_part[1], e_report,
                                                                     {TRANSFERRED: e_oof}))
    elif energy is not None:
        fit = fit_measurements({source.rules.name: features}, latency, energy)
        energy_part = (fit.energy[0], fit.energy[1])
        report["energy"] = fit.energy[2]
    models: Dict[str, LatencyModel] = {TRANSFERRED: model}
    calibration = Calibration(build_body(models, TRANSFERRED, source.rules, report, provenance, energy_part))
    return calibration, ({TRANSFERRED: list(oof)}, report), fit


def summary_lines(calibration: Calibration) -> List[str]:
    """The cross-validated figures of every model, the chosen one marked (what the CLI prints)."""
    report = calibration.fit_report
    how = f"{report['folds']}-fold cross-validated" if "folds" in report else "leave-one-out"
    lines = [f"{'latency model':24s} {'±5%':>6s} {'±10%':>6s} {'±20%':>6s} {'Spearman':>9s} {'Kendall':>8s}"
             f"  ({how}, {calibration.provenance['measured_models']} rows)"]
    lines += _model_lines(report, calibration.chosen)
    energy = report.get("energy")
    if energy:
        lines.append(f"{'energy model':24s}")
        lines += _model_lines(energy, energy["chosen"])
    return lines


def _model_lines(report: Dict[str, Any], chosen: str) -> List[str]:
    out = []
    for kind, entry in report["models"].items():
        cv = entry["cross_validated"]
        mark = "*" if kind == chosen else " "
        out.append(f"{kind:23s}{mark} {cv['within_5pct']:6.0%} {cv['within_10pct']:6.0%} {cv['within_20pct']:6.0%} "
                   f"{cv['spearman']:9.3f} {cv['kendall']:8.3f}")
    return out

