"""Calibrate a new board from about 10 measurements by adapting another board's calibration.

Why this works: the source calibration already knows which kernels a network launches and
what each costs relative to the others; a new board (or thread count) mostly rescales whole
kernel groups by different factors: the per-inference floor, the per-operator cost, conv
compute, linear layers (weight streaming) and memory-bound element-wise work
(``models.KERNEL_GROUPS``). So the transferred model is the source model's per-group
contributions with one non-negative scale per group, fitted on relative error and shrunk
towards one common scale (the shrinkage chosen by leave-one-out), which keeps 10 samples
from overfitting five scales.

Which 10 models: those that tell the groups apart. Each model of a candidate pool (the
quick suite) is described by the share of its predicted latency each group takes; starting
from the fastest and the slowest model, each next pick maximises the determinant of the
fit's design matrix (greedy D-optimal design), so the picks mix floor-dominated tiny nets,
conv-heavy, FC-heavy and element-wise-heavy ones and every scale is identifiable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.calibration.artifact import Calibration, build_body
from hostside.calibration.models import KERNEL_GROUPS, TRANSFERRED, LatencyModel, kernel_contributions, score
from hostside.errors import UserError

DEFAULT_SAMPLES = 10
#: Shrinkage strengths tried (relative to the number of samples); leave-one-out picks one.
_SHRINKAGE_GRID = (0.003, 0.03, 0.3, 3.0, 30.0)
_D_OPTIMAL_RIDGE = 1e-3
TRANSFER_JSON = "transfer.json"


def _embedding(contributions: np.ndarray) -> np.ndarray:
    total = contributions.sum(axis=1)
    shares = contributions / np.maximum(total, 1e-12)[:, None]
    log_total = np.log(np.maximum(total, 1e-6))
    span = max(float(log_total.max() - log_total.min()), 1e-6)
    return np.column_stack([shares, (log_total - log_total.min()) / span])


def choose_samples(source: Calibration, specs: Sequence[Any], count: int = DEFAULT_SAMPLES) -> List[int]:
    """Indices of ``count`` specs that pin down the kernel-group scales: the fastest and the
    slowest model, then greedily the one that most increases the determinant of the fit's
    design (each model's kernel-group shares of its predicted latency, the rows the relative
    error fit sees: D-optimal design), ties broken towards unexplored latencies."""
    from hostside.calibration.features import features_matrix

    features = features_matrix(specs, source.rules)
    emb = _embedding(kernel_contributions(source.models[source.chosen], features))
    shares, log_total = emb[:, :-1], emb[:, -1]
    picks = list(dict.fromkeys([int(np.argmin(log_total)), int(np.argmax(log_total))]))[:count]
    while len(picks) < min(count, len(specs)):
        base = shares[picks].T @ shares[picks] + _D_OPTIMAL_RIDGE * np.eye(shares.shape[1])
        inverse = np.linalg.inv(base)
        # det(A + x x^T) = det(A) (1 + x^T A^-1 x): the gain of adding each candidate
        gain = np.einsum("ij,jk,ik->i", shares, inverse, shares)
        spread = np.min(np.abs(log_total[:, None] - log_total[picks][None, :]), axis=1)
        score = np.log1p(gain) + 0.1 * spread
        score[picks] = -np.inf
        picks.append(int(np.argmax(score)))
    return picks


def _fit_scales(contrib: np.ndarray, y: np.ndarray, shrinkage: float) -> np.ndarray:
    from scipy.optimize import nnls

    rel = contrib / y[:, None]  # rows of relative error
    common = float(np.sum(rel.sum(axis=1)) / np.sum(rel.sum(axis=1) ** 2))  # one scale for all groups
    used = contrib.sum(axis=0) > 0
    lam = np.sqrt(shrinkage * len(y))
    a = np.vstack([rel[:, used], lam * np.eye(int(used.sum()))])
    b = np.concatenate([np.ones(len(y)), lam * np.full(int(used.sum()), common)])
    scales = np.full(contrib.shape[1], common)
    scales[used] = nnls(a, b)[0]
    return scales


def fit_transfer(source: Calibration, features: np.ndarray, latency_ms: np.ndarray,
                 base: Optional[LatencyModel] = None) -> Tuple[LatencyModel, Dict[str, Any]]:
    """The transferred model and its fit report (leave-one-out scores of the samples).
    ``base`` is the source model rescaled (default: its chosen latency model; its energy
    model to transfer energy per inference, whose kernel groups scale alike)."""
    base = base or source.models[source.chosen]
    contrib = kernel_contributions(base, features)
    n = len(latency_ms)
    if n < 3:
        raise UserError(f"a transfer needs at least 3 measured samples, got {n}")

    def loo(shrinkage: float) -> np.ndarray:
        out = np.empty(n)
        for i in range(n):
            keep = np.arange(n) != i
            out[i] = contrib[i] @ _fit_scales(contrib[keep], latency_ms[keep], shrinkage)
        return np.maximum(out, 1e-6)

    trials = {lam: loo(lam) for lam in _SHRINKAGE_GRID}
    shrinkage = min(_SHRINKAGE_GRID, key=lambda lam: float(np.mean(np.abs(trials[lam] / latency_ms - 1))))
    scales = _fit_scales(contrib, latency_ms, shrinkage)
    residual = np.log(latency_ms) - np.log(trials[shrinkage])
    # Few samples: the interval spans the leave-one-out residuals, widened by a quarter.
    lo, hi = float(residual.min()) * 1.25, float(residual.max()) * 1.25
    data = {"kind": TRANSFERRED, "features": list(base.data["features"]), "source": base.data,
            "group_scales": {g: float(s) for g, s in zip(KERNEL_GROUPS, scales)},
            "shrinkage": shrinkage, "log_residual_quantiles": [min(lo, 0.0), max(hi, 0.0)]}
    report = {"leave_one_out": score(latency_ms, trials[shrinkage]), "shrinkage": shrinkage,
              "group_scales": data["group_scales"], "oof_predicted_ms": [float(v) for v in trials[shrinkage]]}
    return LatencyModel(data), report


def transfer(board: Any, source_path: Path, out_dir: Path, samples: int = DEFAULT_SAMPLES,
             threads: Optional[int] = None, allow_emulated: bool = False,
             progress: Optional[Any] = None) -> Calibration:
    """Measure ``samples`` informative suite models on ``board``, adapt the calibration at
    ``source_path`` to them and write ``out_dir/calibration.json`` (resumable like a
    calibration: measured models are kept in ``out_dir/measurements.csv``)."""
    from hostside.boards.pool import BoardPool
    from hostside.calibration.artifact import load_calibration
    from hostside.calibration.calibrate import (CALIBRATION_JSON, TARGET_COLUMN, check_emulated, check_settings, protocol_kwargs,
                                                provenance_for)
    from hostside.calibration.features import features_matrix
    from hostside.calibration.measure import load_measured_specs, measure_suite, write_provenance
    from hostside.calibration.suite import QUICK_SIZE, calibration_suite

    if samples < 3:
        raise UserError(f"--samples must be at least 3, got {samples}")
    source = load_calibration(source_path)
    threads = threads or source.threads or 1  # no thread count: fitted on figures measured elsewhere
    info = board.info()
    check_emulated(board, info, out_dir, allow_emulated)
    shapes = source.provenance.get("input_shapes")
    shapes = [tuple(s) for s in shapes] if isinstance(shapes, list) else None
    pool = calibration_suite(QUICK_SIZE, int(source.provenance.get("suite_seed", 2024)), shapes)
    chosen = [pool[i] for i in choose_samples(source, pool, samples)]
    provenance = provenance_for(BoardPool([board]), board.key, info, threads,
                                int(source.provenance.get("suite_seed", 2024)), samples, shapes)
    provenance["transfer"] = {"source": str(source_path), "source_sha256": source.sha256,
                              "source_board": source.board.get("key"), "samples": samples,
                              "selection": "greedy D-optimal design over the source model's kernel-group shares "
                                           "(fastest and slowest first), from the quick suite"}
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance["sessions"] = check_settings(out_dir, provenance) + [
        {"date": provenance["date"], "load_average_before": list(os.getloadavg())}]
    write_provenance(out_dir, provenance)
    kwargs = protocol_kwargs(threads)
    rows = measure_suite(chosen, out_dir, lambda paths: BoardPool([board]).measure_many(paths, **kwargs),
                         board.name, progress)
    wanted = {s.content_hash() for s in chosen}
    rows = [r for r in rows if r["spec_sha256"] in wanted]
    if len(rows) < 3:
        raise UserError(f"board {board.name} measured only {len(rows)} of {samples} transfer samples (see "
                        f"{out_dir / 'measurements.csv'}); check the board with `hostside boards check {board.name}`")
    provenance["sessions"][-1]["load_average_after"] = list(os.getloadavg())
    provenance["measured_models"] = len(rows)
    specs = load_measured_specs(out_dir, rows)
    latency = np.array([float(r[TARGET_COLUMN]) for r in rows])
    model, report = fit_transfer(source, features_matrix(specs, source.rules), latency)
    report.update({"target": TARGET_COLUMN, "chosen": TRANSFERRED, "models": {},
                   "measured_ms_range": [float(latency.min()), float(latency.max())]})
    (out_dir / TRANSFER_JSON).write_text(json.dumps(report, indent=1) + "\n")
    write_provenance(out_dir, provenance)
    calibration = Calibration(build_body({TRANSFERRED: model}, TRANSFERRED, source.rules, report, provenance))
    calibration.save(out_dir / CALIBRATION_JSON)
    return calibration
