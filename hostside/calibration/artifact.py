"""The calibration file: one versioned, checksummed JSON artifact, and predictions from it.

Why so strict on load: a calibration is used on machines that never saw the board, long
after it was made. A file from another format version, fitted on another feature set, or
altered after it was written would give silently wrong latencies, so each of those is one
clear error instead. No pickle: the models are coefficients (see ``models``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from hostside.arch.spec import ArchSpec
from hostside.calibration.features import FEATURE_NAMES, FEATURE_SET, FEATURES, onnx_features, spec_features
from hostside.calibration.models import LatencyModel, model_from_json
from hostside.calibration.rules import RuleSet, calibration_rule_set
from hostside.errors import UserError

FORMAT = "hostside.calibration"
#: 2: additive models carry a last-level cache size and a cost per uncached weight byte.
VERSION = 2
TARGET = {"name": "latency_ms", "statistic": "median of the timed runs at batch 1 (see calibrate.TARGET_COLUMN)",
          "unit": "ms"}

SpecLike = Union[ArchSpec, Mapping[str, Any], str, Path]


@dataclass(frozen=True)
class Prediction:
    """Predicted batch-1 latency and its 90% prediction interval, in milliseconds, and energy
    per inference with its interval (mJ) when the calibration was fitted on energy too."""

    latency_ms: float
    interval_ms: Tuple[float, float]
    path: Optional[str] = None
    energy_mj: Optional[float] = None
    energy_interval_mj: Optional[Tuple[float, float]] = None

    def to_dict(self) -> Dict[str, Any]:
        out = {"path": self.path, "latency_ms": self.latency_ms, "interval_ms": list(self.interval_ms)}
        if self.energy_mj is not None and self.energy_interval_mj is not None:
            out.update(energy_mj=self.energy_mj, energy_interval_mj=list(self.energy_interval_mj))
        return out


def checksum(body: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of everything but the checksum itself."""
    canonical = json.dumps({k: v for k, v in body.items() if k != "sha256"}, sort_keys=True,
                           separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Calibration:
    """A loaded calibration: the chosen latency model (and the alternatives it was chosen over)."""

    def __init__(self, body: Dict[str, Any], path: Optional[Path] = None):
        self.body = body
        self.path = path
        self.chosen: str = body["chosen_model"]
        self.rules: RuleSet = calibration_rule_set(body["feature_params"])
        self.nchwc_block = self.rules.block
        self.models: Dict[str, LatencyModel] = {k: model_from_json(v) for k, v in body["models"].items()}
        energy = body.get("energy")
        #: The energy-per-inference model (same features, target energy_mj), if fitted.
        self.energy_model: Optional[LatencyModel] = (
            model_from_json(energy["models"][energy["chosen_model"]]) if energy else None)

    @property
    def model_kinds(self) -> List[str]:
        return list(self.models)

    @property
    def provenance(self) -> Dict[str, Any]:
        return self.body["provenance"]

    @property
    def board(self) -> Dict[str, Any]:
        """Board facts: ``name``, ``key`` (device kind), ``cpu_model`` and the agent's ``info``."""
        return self.provenance["board"]

    @property
    def threads(self) -> Optional[int]:
        """Intra-op threads of the measurements; None when fitted on measurements taken elsewhere."""
        threads = self.provenance.get("threads")
        return None if threads is None else int(threads)

    @property
    def sha256(self) -> str:
        """The checksum of the calibration's content (the one its file carries)."""
        return checksum(self.body)

    @property
    def fit_report(self) -> Dict[str, Any]:
        return self.body["fit_report"]

    def predict_features(self, features: np.ndarray, model: Optional[str] = None
                         ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        latency = self.models[model or self.chosen]
        predicted = np.maximum(latency.predict(features), 1e-6)
        lo, hi = latency.interval(predicted)
        return predicted, lo, hi

    def predict_many(self, specs: Sequence[SpecLike], model: Optional[str] = None
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latency_ms, lo, hi) arrays for many specs (or ONNX / ArchSpec JSON paths) at once."""
        return self.predict_features(self.features(specs), model)

    def features(self, specs: Sequence[SpecLike]) -> np.ndarray:
        """The (N, F) feature matrix of specs or model paths under this calibration's rule set."""
        rules = self.rules
        rows = [spec_features(s, rules) if isinstance(s, ArchSpec) else _features(s, rules) for s in specs]
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))

    def predict_energy_features(self, features: np.ndarray) -> Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(energy_mj, lo, hi) for a feature matrix, None when the calibration has no energy model."""
        if self.energy_model is None:
            return None
        energy = np.maximum(self.energy_model.predict(features), 1e-9)
        lo, hi = self.energy_model.interval(energy)
        return energy, lo, hi

    def predict(self, spec_or_path: SpecLike, model: Optional[str] = None) -> Prediction:
        """Latency (and energy, when fitted) of one ArchSpec (object, dict, ``.json`` path) or
        ONNX file (``.onnx`` path)."""
        features = self.features([spec_or_path])
        latency, lo, hi = self.predict_features(features, model)
        path = str(spec_or_path) if isinstance(spec_or_path, (str, Path)) else None
        energy = self.predict_energy_features(features)
        if energy is None:
            return Prediction(float(latency[0]), (float(lo[0]), float(hi[0])), path)
        return Prediction(float(latency[0]), (float(lo[0]), float(hi[0])), path, float(energy[0][0]),
                          (float(energy[1][0]), float(energy[2][0])))

    def save(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {**self.body, "sha256": checksum(self.body)}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=1, sort_keys=True, allow_nan=False) + "\n")
        tmp.replace(path)
        self.path = path
        return path


def _features(item: SpecLike, rules: RuleSet) -> List[float]:
    if isinstance(item, Mapping):
        return spec_features(ArchSpec.from_dict(item), rules)
    path = Path(item)
    if path.suffix.lower() == ".onnx":
        if not path.is_file():
            raise UserError(f"{path}: no such ONNX file; give the path of an exported model")
        return onnx_features(path, rules)
    if path.suffix.lower() == ".json":
        return spec_features(ArchSpec.load(path), rules)
    raise UserError(f"{path}: expected an ArchSpec .json or a model .onnx file")


def build_body(models: Dict[str, LatencyModel], chosen: str, rules: Union[int, RuleSet], fit_report: Dict[str, Any],
               provenance: Dict[str, Any], energy: Optional[Tuple[str, Dict[str, LatencyModel]]] = None
               ) -> Dict[str, Any]:
    """The JSON body of a calibration file (without its checksum); ``energy`` is the chosen
    kind and fitted models of energy per inference, when measured."""
    from hostside.calibration.rules import rule_set

    rules = rule_set(rules)
    body = {
        "format": FORMAT,
        "version": VERSION,
        "feature_set": FEATURE_SET,
        "features": [{"name": n, "unit": u, "meaning": m} for n, u, m in FEATURES],
        "feature_params": {"nchwc_block": rules.block, "rule_set": rules.name},
        "target": TARGET,
        "chosen_model": chosen,
        "models": {kind: model.data for kind, model in models.items()},
        "fit_report": fit_report,
        "provenance": provenance,
    }
    if energy is not None:
        body["energy"] = {"target": {"name": "energy_mj", "unit": "mJ", "statistic": "energy per inference"},
                          "chosen_model": energy[0], "models": {k: m.data for k, m in energy[1].items()}}
    return body


def load_calibration(path: Union[str, Path]) -> Calibration:
    """Read and verify a calibration file; every kind of bad file is one UserError line."""
    from hostside import safe_io

    path = Path(path)
    text = safe_io.read_text(path, "calibration file")  # missing, binary, huge: one line each
    body = safe_io.parse_json(text, f"calibration file {path}")  # not JSON, absurdly nested: one line
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        found = body.get("format") if isinstance(body, dict) else None
        raise UserError(f"{path}: not a hostside calibration file (format {found!r}); "
                        f"give a calibration.json written by `hostside calibrate`")
    if body.get("version") != VERSION:
        raise UserError(f"{path}: calibration format version {body.get('version')!r} is not supported "
                        f"(this hostside reads version {VERSION}); recalibrate with `hostside calibrate` "
                        f"or use a matching hostside release")
    if body.get("sha256") != checksum(body):
        raise UserError(f"{path}: corrupted calibration file (checksum mismatch: it was changed after it was "
                        f"written); restore it or recreate it with `hostside calibrate`")
    names = [f.get("name") for f in body.get("features", []) if isinstance(f, dict)]
    if body.get("feature_set") != FEATURE_SET or names != list(FEATURE_NAMES):
        raise UserError(f"{path}: fitted on feature set {body.get('feature_set')!r}, but this hostside computes "
                        f"{FEATURE_SET!r} (neither --check nor a transfer can bridge feature sets); refit it from its "
                        f"measurements with `hostside calibrate --board NAME --out DIR` on its directory (existing "
                        f"measurements are reused)")
    try:
        calibration = Calibration(body, path)
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: corrupted calibration file ({type(exc).__name__}: {exc}); "
                        f"recreate it with `hostside calibrate`") from None
    if calibration.chosen not in calibration.models:
        raise UserError(f"{path}: corrupted calibration file (chosen model {calibration.chosen!r} is missing); "
                        f"recreate it with `hostside calibrate`")
    return calibration
