"""Has the board drifted from its calibration? Re-measure a dozen suite models and compare.

Why before every search: a calibration describes the board as it was when measured. A new
onnxruntime, another governor or thermal setting, a busier or a different machine of the same
kind all change latencies without changing the calibration file, and the pre-training filter
would then keep or drop candidates on wrong numbers without a word. Twelve models spread over
the calibrated latency range, measured with the calibration's own protocol, take well under a
minute and show the ratio measured / predicted; its median says how far the board moved, its
spread whether the move is uniform (a faster clock) or not (a new runtime with other kernels).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from hostside.calibration.artifact import Calibration
from hostside.errors import UserError

DEFAULT_TOLERANCE = 0.15
DRIFT_MODELS = 12
#: Suite models predicted slower than this are left out, so the check stays under a minute
#: on a slow board (each model runs for the protocol's minimum time at least).
MAX_PREDICTED_MS = 40.0
#: Fewer successful measurements than this and the figure would mean little.
MIN_MEASURED = 6
_SUITE_SEED_OFFSET = 7  # models of the same distribution as the calibrated suite, not the same ones


@dataclass(frozen=True)
class DriftReport:
    """The ratio measured / predicted on ``models`` suite models of the board."""

    board: str
    calibration_path: Optional[str]
    calibration_sha256: str
    tolerance: float
    ratio_median: float
    ratio_p10: float
    ratio_p90: float
    ratios: List[float]
    measured_ms: List[float]
    predicted_ms: List[float]
    onnxruntime_calibrated: Optional[str]
    onnxruntime_board: Optional[str]
    seconds: float
    load_average: List[float] = field(default_factory=list)

    @property
    def models(self) -> int:
        return len(self.ratios)

    @property
    def drift(self) -> float:
        """Relative change of the board's latency (+0.2 = 20 % slower than calibrated)."""
        return self.ratio_median - 1.0

    @property
    def drifted(self) -> bool:
        return abs(self.drift) > self.tolerance

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "models": self.models, "drift": self.drift, "drifted": self.drifted}

    def summary(self) -> str:
        runtime = ""
        if self.onnxruntime_calibrated != self.onnxruntime_board:
            runtime = (f"; calibrated with onnxruntime {self.onnxruntime_calibrated}, the board runs "
                       f"{self.onnxruntime_board}")
        return (f"board {self.board}: measured/predicted latency {self.ratio_median:.3f} (median of {self.models} "
                f"suite models, 10-90 % spread {self.ratio_p10:.3f}..{self.ratio_p90:.3f}), drift {self.drift:+.1%} "
                f"against a tolerance of ±{self.tolerance:.0%}{runtime}; load average "
                f"{' '.join(f'{v:.2f}' for v in self.load_average)}; {self.seconds:.0f} s")

    def raise_if_drifted(self) -> None:
        """UserError with the figure and the commands that fix it, when beyond the tolerance."""
        if not self.drifted:
            return
        source = self.calibration_path or "the calibration"
        raise UserError(
            f"board {self.board} drifted {self.drift:+.1%} from calibration {source} (measured/predicted "
            f"{self.ratio_median:.3f} over {self.models} suite models, spread {self.ratio_p10:.3f}..{self.ratio_p90:.3f}; "
            f"tolerance ±{self.tolerance:.0%}); re-calibrate with `hostside calibrate --board {self.board} --out DIR` "
            f"(or adapt it from 10 measurements: `hostside calibrate --board {self.board} --transfer-from {source} "
            f"--samples 10 --out DIR`), or raise the tolerance if the spread is acceptable"
        )


def check_compatible(calibration: Calibration, board: Any) -> None:
    """UserError when the calibration was made on another kind of board (another CPU, core
    count or architecture): its latencies say nothing about this one, but a transfer from it
    needs only 10 measurements."""
    made_on = calibration.board.get("key")
    if made_on and made_on != board.key:
        source = calibration.path or "the calibration"
        raise UserError(
            f"calibration {source} was made on board kind {made_on!r}, but board {board.name} is {board.key!r}; "
            f"its predictions do not hold there: adapt it with `hostside calibrate --board {board.name} "
            f"--transfer-from {source} --samples 10 --out DIR` or calibrate the board"
        )


def drift_suite(calibration: Calibration, count: int = DRIFT_MODELS) -> List[Any]:
    """``count`` suite models spread evenly over the log of the calibration's predicted
    latency (below ``MAX_PREDICTED_MS``), drawn like the calibrated suite."""
    from hostside.calibration.suite import DEFAULT_SEED, QUICK_SIZE, calibration_suite

    provenance = calibration.provenance
    shapes = provenance.get("input_shapes")
    shapes = [tuple(s) for s in shapes] if isinstance(shapes, list) else None
    seed = int(provenance.get("suite_seed", DEFAULT_SEED)) + _SUITE_SEED_OFFSET
    specs = calibration_suite(QUICK_SIZE, seed, shapes)
    predicted, _, _ = calibration.predict_many(specs)
    keep = [i for i in np.argsort(predicted) if predicted[i] <= MAX_PREDICTED_MS]
    if len(keep) <= count:
        return [specs[i] for i in keep]
    picks = np.unique(np.round(np.linspace(0, len(keep) - 1, count)).astype(int))
    return [specs[keep[i]] for i in picks]


def _measure(board: Any, calibration: Calibration, specs: List[Any]) -> List[Dict[str, Any]]:
    from hostside.arch.build import build_module
    from hostside.arch.export import export_onnx
    from hostside.calibration.calibrate import protocol_kwargs

    # A calibration fitted on figures measured elsewhere records no thread count: one thread.
    kwargs = protocol_kwargs(calibration.threads or 1, None)
    results = []
    with tempfile.TemporaryDirectory(prefix="hostside-drift-") as tmp:
        for i, spec in enumerate(specs):
            path = Path(tmp) / f"drift{i}.onnx"
            export_onnx(build_module(spec), path, check=False)
            try:
                results.append(board.measure(path, timeout_s=60.0, **kwargs))
            except UserError as exc:
                results.append({"error": {"code": "connection_error", "message": str(exc)}})
            if i == 0 and results[0].get("error"):
                break  # a board that fails the first model is not worth eleven more timeouts
    return results


def check_drift(board: Any, calibration: Calibration, tolerance: float = DEFAULT_TOLERANCE,
                count: int = DRIFT_MODELS) -> DriftReport:
    """Re-measure ``count`` suite models on ``board`` (a Board or board name) and compare
    with ``calibration``'s predictions. Raises UserError when the board is of another kind
    or answers (almost) nothing; the caller decides what a drift means
    (``DriftReport.raise_if_drifted``)."""
    from hostside.boards.board import open_board

    if isinstance(board, str):
        board = open_board(board)
    if not tolerance > 0:
        raise UserError(f"the drift tolerance must be a positive fraction (0.15 = 15 %), got {tolerance!r}")
    check_compatible(calibration, board)
    started = time.perf_counter()
    specs = drift_suite(calibration, count)
    results = _measure(board, calibration, specs)
    measured: List[Tuple[float, float]] = []
    errors = []
    predicted, _, _ = calibration.predict_many(specs)
    for spec_pred, result in zip(predicted, results):
        latency = result.get("latency_ms") or {}
        if result.get("error") or not latency.get("median"):
            errors.append((result.get("error") or {}).get("message", "no result"))
        else:
            measured.append((float(latency["median"]), float(spec_pred)))
    if len(measured) < min(MIN_MEASURED, len(specs)):
        first = errors[0] if errors else "no result"
        raise UserError(f"board {board.name} answered {len(measured)} of {len(specs)} drift-check measurements "
                        f"({first}); check the board with `hostside boards check {board.name}`")
    ratios = np.array([m / p for m, p in measured])
    info = board.info()
    return DriftReport(
        board=board.name, calibration_path=str(calibration.path) if calibration.path else None,
        calibration_sha256=calibration.sha256, tolerance=float(tolerance),
        ratio_median=float(np.median(ratios)), ratio_p10=float(np.quantile(ratios, 0.1)),
        ratio_p90=float(np.quantile(ratios, 0.9)), ratios=[float(r) for r in ratios],
        measured_ms=[m for m, _ in measured], predicted_ms=[p for _, p in measured],
        onnxruntime_calibrated=calibration.provenance.get("onnxruntime_version"),
        onnxruntime_board=(info.get("onnxruntime") or {}).get("version"),
        seconds=time.perf_counter() - started, load_average=[round(v, 2) for v in os.getloadavg()],
    )


#: A calibration measured this recently is its own drift check: drift comes from runtime
#: upgrades, settings and hardware changes, not from one hour to the next.
FRESH_CALIBRATION_S = 3600.0


def calibration_age_s(calibration: Calibration) -> Optional[float]:
    import datetime

    date = calibration.provenance.get("date")
    try:
        made = datetime.datetime.fromisoformat(str(date))
    except ValueError:
        return None
    return (datetime.datetime.now(datetime.timezone.utc) - made).total_seconds()


def drift_gate(board: Any, calibration: Calibration, tolerance: float, progress: Any = print) -> Dict[str, Any]:
    """What a search calls before its pre-training filter judges latency: check the board
    against the calibration unless the tolerance is 0 (off) or the calibration is fresh
    (``FRESH_CALIBRATION_S``); refuse beyond the tolerance (UserError with the figure and
    the command to re-calibrate). Returns the provenance record of the calibration: its
    file, checksum and the check's figures."""
    record: Dict[str, Any] = {"path": str(calibration.path) if calibration.path else None,
                              "sha256": calibration.sha256, "board_key": calibration.board.get("key"),
                              "onnxruntime_version": calibration.provenance.get("onnxruntime_version")}
    age = calibration_age_s(calibration)
    if not tolerance:
        record["drift"] = "not checked (drift_tolerance = 0)"
    elif age is not None and age < FRESH_CALIBRATION_S:
        record["drift"] = f"not checked (calibration made {age / 60:.0f} min ago)"
    else:
        if isinstance(board, str):
            from hostside.boards.board import open_board

            board = open_board(board)
        progress(f"checking board {board.name} against calibration {record['path']} (drift tolerance "
                 f"±{tolerance:.0%}) ...")
        report = check_drift(board, calibration, tolerance)
        progress(report.summary())
        record["drift"] = report.to_dict()
        report.raise_if_drifted()
    return record
