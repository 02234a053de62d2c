"""Export and measure a calibration suite on a board, resumably, into a CSV file.

Why chunks and a CSV appended as it goes: measuring ~240 models takes minutes, and a killed
run must not lose what it measured. Each spec is keyed by its content hash; rows already in
the CSV without an error are not measured again. The ONNX files live in a temporary
directory only while measured (FC-heavy suite members weigh tens of MB, and a file is
re-exported from its spec in milliseconds); the specs are kept next to the CSV so the
models can be refitted later.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from hostside.arch.spec import ArchSpec
from hostside.calibration.features import FEATURE_NAMES, spec_features
from hostside.calibration.rules import RuleLike
from hostside.errors import UserError

MEASUREMENTS_CSV = "measurements.csv"
PROVENANCE_JSON = "provenance.json"
SPECS_DIR = "specs"
LATENCY_COLUMNS = ("latency_median_ms", "latency_mean_ms", "latency_p90_ms", "latency_min_ms",
                   "latency_std_ms", "latency_runs")
CSV_COLUMNS = ("spec_sha256", "name", "input_shape", *FEATURE_NAMES, "activation_bytes", *LATENCY_COLUMNS,
               "energy_per_inference_mj", "board", "measured_at", "error")
CHUNK = 6

#: Protocol for one suite model: a short warm-up, then runs for at least MIN_TIME_S (the agent
#: takes >= 10 runs however long that is). Enough for a stable median of sub-20 ms models.
WARMUP = 5
MIN_TIME_S = 0.3

MeasureMany = Callable[[List[str]], List[Dict[str, Any]]]


def read_measurements(csv_path: Path) -> List[Dict[str, str]]:
    """The rows of a measurements CSV (empty when it does not exist yet)."""
    if not csv_path.exists():
        return []
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("spec_sha256", "latency_median_ms", "error") if c not in (reader.fieldnames or [])]
        if missing:
            raise UserError(f"{csv_path}: not a calibration measurements file (missing column(s) "
                            f"{', '.join(missing)}); use another --out directory")
        return list(reader)


def _row(spec: ArchSpec, result: Dict[str, Any], board: str) -> Dict[str, Any]:
    row: Dict[str, Any] = {
        "spec_sha256": spec.content_hash(),
        "name": spec.name,
        "input_shape": ",".join(str(d) for d in spec.input_shape),
        **{name: int(v) for name, v in zip(FEATURE_NAMES, spec_features(spec))},
        "activation_bytes": spec.cost.activation_bytes,
        "board": board,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "error": "",
    }
    latency = result.get("latency_ms")
    error = result.get("error")
    if error or not latency:
        row["error"] = f"{(error or {}).get('code', 'no_result')}: {(error or {}).get('message', '')}".strip()
        return row
    row.update(latency_median_ms=latency["median"], latency_mean_ms=latency["mean"], latency_p90_ms=latency["p90"],
               latency_min_ms=latency["min"], latency_std_ms=latency["std"], latency_runs=latency["count"])
    power = result.get("power") or {}
    if power.get("energy_per_inference_mj") is not None:
        row["energy_per_inference_mj"] = power["energy_per_inference_mj"]
    return row


def measure_suite(specs: Sequence[ArchSpec], out_dir: Path, measure_many: MeasureMany, board: str,
                  progress: Optional[Callable[[int, int], None]] = None) -> List[Dict[str, str]]:
    """Measure every spec not yet in ``out_dir/measurements.csv``; return all rows.

    ``measure_many(paths)`` returns one agent result per ONNX path (a board pool's
    ``measure_many`` with the protocol bound). Failed measurements are recorded with their
    error and retried on the next run.
    """
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / MEASUREMENTS_CSV
    rows = [r for r in read_measurements(csv_path) if not r["error"]]
    done = {r["spec_sha256"] for r in rows}
    pending = [s for s in specs if s.content_hash() not in done]
    (out_dir / SPECS_DIR).mkdir(exist_ok=True)
    # A failed row from an earlier run is dropped: the spec is measured again below.
    _rewrite(csv_path, rows)
    total, finished = len(specs), len(specs) - len(pending)
    if progress:
        progress(finished, total)
    with tempfile.TemporaryDirectory(prefix="hostside-calibration-") as models_dir:
        for start in range(0, len(pending), CHUNK):
            chunk = pending[start:start + CHUNK]
            paths = []
            for spec in chunk:
                digest = spec.content_hash()
                spec.save(out_dir / SPECS_DIR / f"{digest}.json")
                path = Path(models_dir) / f"{digest}.onnx"
                export_onnx(build_module(spec), path, check=False)
                paths.append(str(path))
            results = measure_many(paths)
            new_rows = [_row(spec, result, board) for spec, result in zip(chunk, results)]
            _append(csv_path, new_rows)
            rows.extend({k: str(v) for k, v in r.items()} for r in new_rows if not r["error"])
            for path in paths:
                os.unlink(path)
            finished += len(chunk)
            if progress:
                progress(finished, total)
    return rows


def _rewrite(csv_path: Path, rows: List[Dict[str, str]]) -> None:
    tmp = csv_path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(csv_path)


def _append(csv_path: Path, rows: List[Dict[str, Any]]) -> None:
    with csv_path.open("a", newline="") as f:
        csv.DictWriter(f, CSV_COLUMNS, extrasaction="ignore").writerows(rows)
        f.flush()
        os.fsync(f.fileno())


def refresh_feature_columns(out_dir: Path, rules: RuleLike) -> None:
    """Rewrite the CSV's feature columns with the rule set the fit chose (measured
    columns untouched), so the file shows the features the calibration was fitted on."""
    csv_path = out_dir / MEASUREMENTS_CSV
    rows = read_measurements(csv_path)
    for row in rows:
        spec_path = out_dir / SPECS_DIR / f"{row['spec_sha256']}.json"
        if spec_path.exists():
            features = spec_features(ArchSpec.load(spec_path), rules)
            row.update({name: str(int(v)) for name, v in zip(FEATURE_NAMES, features)})
    _rewrite(csv_path, rows)


def load_measured_specs(out_dir: Path, rows: Sequence[Dict[str, str]]) -> List[ArchSpec]:
    """The specs of measured rows, read back from ``out_dir/specs``."""
    return [ArchSpec.load(out_dir / SPECS_DIR / f"{r['spec_sha256']}.json") for r in rows]


def write_provenance(out_dir: Path, provenance: Dict[str, Any]) -> Path:
    path = out_dir / PROVENANCE_JSON
    path.write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
    return path
