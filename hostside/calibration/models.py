"""Latency regressions fitted with scikit-learn and kept as plain JSON coefficients.

Why JSON coefficients rather than pickled estimators: a calibration file is read on machines
that never saw the board, possibly with another scikit-learn; pickles are neither safe nor
portable. Every model here is linear in some transform of the features, so a handful of
numbers describes it completely and numpy evaluates it for thousands of specs at once.

The models:

- ``loglinear_macs_params`` (the published baseline): log latency linear in log MACs and
  log params.
- ``additive_kernels``: latency as a non-negative sum of per-kernel costs (a fixed cost per
  operator, a cost per MAC for each conv kind and for linear layers, a cost per byte moved,
  and a cost per weight byte beyond the board's last-level cache, since a model whose weights
  do not stay cached between inferences streams them from DRAM every time), fitted to
  minimise relative error. The physics of a sequential CPU runtime, so it extrapolates to
  networks larger or deeper than those it saw. The cache size is the one of a grid of powers
  of two that fits the board's measurements best.
- ``sized_kernels``: the additive model with each kind's MACs split by per-kernel size class
  (``features.SIZE_CLASSES_LOG10_MACS``), i.e. a piecewise-linear cost curve per kernel type
  in the spirit of nn-Meter's one regressor per kernel type, still a non-negative linear fit.
- ``hybrid_kernels``: the additive model corrected by a ridge fit of its log residual on
  log(1 + feature), for efficiencies that change with size (small GEMMs run slower per MAC);
  the correction is clipped to the range seen in training.

Each comes with a prediction interval from the 5% and 95% quantiles of its cross-validated
log residuals.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import numpy as np

from hostside.calibration.features import FEATURE_NAMES, SIZE_CLASSES_LOG10_MACS, SIZED_FEATURES

BASELINE = "loglinear_macs_params"
MODEL_KINDS = ("loglinear_macs_params", "additive_kernels", "hybrid_kernels", "sized_kernels")
#: A source calibration's model with one fitted scale per kernel group (``transfer``).
TRANSFERRED = "transferred"
#: Kernel groups of the additive model, for transfer to another board: the per-inference
#: floor (session run, input/output copies: the intercept), the fixed cost per operator, conv
#: kernels, linear layers (weights streamed) and memory-bound element-wise work. A new board
#: or thread count changes these by different factors (two threads halve the conv time but
#: not the floor).
KERNEL_GROUPS: Dict[str, Tuple[str, ...]] = {
    "floor": (),
    "per_operator": ("ops", "conv_count", "group_count"),
    "conv": ("nchwc_conv_macs", "nchwc_plain_input_macs", "nchwc_plain_input_pointwise_macs",
             "nchwc_depthwise_macs", "gemm_pointwise_macs", "gemm_conv_macs", "im2col_bytes"),
    "linear": ("linear_macs",),
    "memory": ("conv_output_bytes", "reorder_input_bytes", "reorder_output_bytes", "fused_activation_bytes",
               "cheap_eltwise_bytes", "transcendental_elems", "scalar_exp_elems", "pool_bytes",
               "plain_pool_bytes", "concat_bytes"),
}
_SIZE_COLUMNS = {f"{name}_size{c:g}": name for name in SIZED_FEATURES for c in SIZE_CLASSES_LOG10_MACS}
KERNEL_FEATURES: Tuple[str, ...] = tuple(n for n in FEATURE_NAMES if n not in ("macs", "params")
                                         and n not in _SIZE_COLUMNS)
#: The kernel features with every MAC total replaced by its per-kernel size classes.
SIZED_KERNEL_FEATURES: Tuple[str, ...] = tuple(n for n in KERNEL_FEATURES if n not in SIZED_FEATURES) + tuple(
    _SIZE_COLUMNS)
INTERVAL_QUANTILES = (0.05, 0.95)
_RIDGE_ALPHA = 1.0
#: Candidate last-level cache sizes (256 KiB .. 64 MiB): a Pi 3B+ has 512 KiB of L2, desktop
#: and server cores tens of MiB of L3.
CACHE_BYTES_GRID = tuple(2**k for k in range(18, 27))
#: A cache size no model's weights reach: the uncached-weights term is then always zero.
NO_CACHE_LIMIT_BYTES = 2**50
_PARAMS_COLUMN = FEATURE_NAMES.index("params")
_F32_BYTES = 4


class LatencyModel:
    """One fitted model: a JSON-ready description and a vectorised ``predict``."""

    def __init__(self, data: Dict[str, Any]):
        self.data = data
        self.kind = data["kind"]
        self._columns = np.array([FEATURE_NAMES.index(f) for f in data["features"]], dtype=np.intp)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Latency in ms for an (N, len(FEATURE_NAMES)) matrix."""
        x = features[:, self._columns]
        d = self.data
        weight_bytes = features[:, _PARAMS_COLUMN] * _F32_BYTES
        if self.kind == "loglinear_macs_params":
            return np.exp(d["intercept"] + np.log(np.maximum(x, 1.0)) @ np.array(d["coef"]))
        if self.kind in ("additive_kernels", "sized_kernels"):
            return _additive(d, x, weight_bytes)
        if self.kind == "hybrid_kernels":
            correction = np.clip(_ridge_log(d["correction"], x), *d["correction"]["clip"])
            return _additive(d["additive"], x, weight_bytes) * np.exp(correction)
        if self.kind == TRANSFERRED:
            scales = np.array([d["group_scales"][g] for g in KERNEL_GROUPS])
            return kernel_contributions(LatencyModel(d["source"]), features) @ scales
        raise ValueError(f"unknown model kind {self.kind!r}")

    def interval(self, latency_ms: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        lo, hi = self.data["log_residual_quantiles"]
        return latency_ms * np.exp(lo), latency_ms * np.exp(hi)


def kernel_contributions(model: LatencyModel, features: np.ndarray) -> np.ndarray:
    """(N, len(KERNEL_GROUPS)) latency in ms each kernel group adds in ``model``'s
    prediction; the rows sum to ``model.predict(features)``. A model without kernel terms
    (the MACs+params baseline) puts everything into ``conv``; the hybrid model's size
    correction scales every group alike."""
    d = model.data
    total = model.predict(features)
    out = np.zeros((len(features), len(KERNEL_GROUPS)))
    groups = list(KERNEL_GROUPS)
    if model.kind == "loglinear_macs_params":
        out[:, groups.index("conv")] = total
        return out
    additive = d["additive"] if model.kind == "hybrid_kernels" else d
    columns = [FEATURE_NAMES.index(f) for f in d.get("features", KERNEL_FEATURES)]
    x = features[:, columns]
    weight_bytes = features[:, _PARAMS_COLUMN] * _F32_BYTES
    terms = x * np.array(additive["ms_per_unit"])
    names = list(d["features"])
    group_of = {m: g for g, members in enumerate(KERNEL_GROUPS.values()) for m in members}
    for column, name in enumerate(names):
        out[:, group_of[_SIZE_COLUMNS.get(name, name)]] += terms[:, column]
    out[:, groups.index("floor")] += additive["intercept_ms"]
    out[:, groups.index("linear")] += additive["ms_per_uncached_weight_byte"] * _uncached_weight_bytes(
        weight_bytes, additive["cache_bytes"])
    if model.kind == "hybrid_kernels":
        raw = out.sum(axis=1)
        out *= (total / np.where(raw > 0, raw, 1.0))[:, None]
    return out


def _uncached_weight_bytes(weight_bytes: np.ndarray, cache_bytes: float) -> np.ndarray:
    return np.maximum(weight_bytes - cache_bytes, 0.0)


def _additive(d: Dict[str, Any], x: np.ndarray, weight_bytes: np.ndarray) -> np.ndarray:
    return (d["intercept_ms"] + x @ np.array(d["ms_per_unit"])
            + d["ms_per_uncached_weight_byte"] * _uncached_weight_bytes(weight_bytes, d["cache_bytes"]))


def _ridge_log(d: Dict[str, Any], x: np.ndarray) -> np.ndarray:
    z = (np.log1p(x) - np.array(d["mean"])) / np.array(d["scale"])
    return d["intercept"] + z @ np.array(d["coef"])


def _fit_loglinear_macs_params(x: np.ndarray, y: np.ndarray, weight_bytes: np.ndarray) -> Dict[str, Any]:
    from sklearn.linear_model import LinearRegression

    reg = LinearRegression().fit(np.log(np.maximum(x, 1.0)), np.log(y))
    return {"intercept": float(reg.intercept_), "coef": [float(c) for c in reg.coef_]}


def _fit_additive(x: np.ndarray, y: np.ndarray, weight_bytes: np.ndarray,
                  cache_grid: Sequence[int] = CACHE_BYTES_GRID) -> Dict[str, Any]:
    """Non-negative least squares on relative error: weights 1/y^2 make each model count
    by its relative residual, so fast models are not drowned by slow ones. One fit per
    candidate cache size; the one with the smallest relative error is kept."""
    from sklearn.linear_model import LinearRegression

    best: Dict[str, Any] = {}
    best_loss = np.inf
    for cache_bytes in cache_grid:
        xw = np.column_stack([x, _uncached_weight_bytes(weight_bytes, cache_bytes)])
        scale = np.maximum(xw.max(axis=0), 1.0)  # conditioning only: MACs and counts differ by 1e8
        reg = LinearRegression(positive=True).fit(xw / scale, y, sample_weight=1.0 / y**2)
        loss = float(np.sum((reg.predict(xw / scale) / y - 1.0) ** 2))
        if loss < best_loss:
            coef = reg.coef_ / scale
            best_loss = loss
            best = {"intercept_ms": float(reg.intercept_), "ms_per_unit": [float(c) for c in coef[:-1]],
                    "cache_bytes": cache_bytes, "ms_per_uncached_weight_byte": float(coef[-1])}
    return best


def _fit_sized(x: np.ndarray, y: np.ndarray, weight_bytes: np.ndarray) -> Dict[str, Any]:
    """The sized model has no cache cliff of its own: the size classes of the linear layers
    already price the streaming of large weight matrices (a cache term on top overfits)."""
    return _fit_additive(x, y, weight_bytes, cache_grid=(NO_CACHE_LIMIT_BYTES,))


def _fit_ridge_log(x: np.ndarray, target: np.ndarray) -> Dict[str, Any]:
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    logs = np.log1p(x)
    scaler = StandardScaler().fit(logs)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    reg = Ridge(alpha=_RIDGE_ALPHA).fit((logs - scaler.mean_) / scale, target)
    return {"mean": [float(v) for v in scaler.mean_], "scale": [float(v) for v in scale],
            "intercept": float(reg.intercept_), "coef": [float(c) for c in reg.coef_]}


def _fit_hybrid(x: np.ndarray, y: np.ndarray, weight_bytes: np.ndarray) -> Dict[str, Any]:
    additive = _fit_additive(x, y, weight_bytes)
    residual = np.log(y) - np.log(np.maximum(_additive(additive, x, weight_bytes), 1e-6))
    correction = _fit_ridge_log(x, residual)
    correction["clip"] = [float(residual.min()), float(residual.max())]
    return {"additive": additive, "correction": correction}


_FITTERS = {
    "loglinear_macs_params": (("macs", "params"), _fit_loglinear_macs_params),
    "additive_kernels": (KERNEL_FEATURES, _fit_additive),
    "hybrid_kernels": (KERNEL_FEATURES, _fit_hybrid),
    "sized_kernels": (SIZED_KERNEL_FEATURES, _fit_sized),
}


def fit_model(kind: str, features: np.ndarray, latency_ms: np.ndarray) -> LatencyModel:
    """Fit one model kind on an (N, F) feature matrix and measured latencies (ms)."""
    names, fitter = _FITTERS[kind]
    columns = [FEATURE_NAMES.index(n) for n in names]
    weight_bytes = features[:, _PARAMS_COLUMN] * _F32_BYTES
    data = {"kind": kind, "features": list(names), **fitter(features[:, columns], latency_ms, weight_bytes)}
    data["log_residual_quantiles"] = [0.0, 0.0]
    return LatencyModel(data)


def score(measured_ms: np.ndarray, predicted_ms: np.ndarray) -> Dict[str, float]:
    """R² (of log latency), MAPE, shares within ±5%/±10%/±20%, Spearman and Kendall rank
    correlations (the ranks are what a search compares candidates by)."""
    from scipy.stats import kendalltau, spearmanr

    rel = predicted_ms / measured_ms - 1.0
    log_m, log_p = np.log(measured_ms), np.log(predicted_ms)
    total = float(np.sum((log_m - log_m.mean()) ** 2))
    r2 = 1.0 - float(np.sum((log_m - log_p) ** 2)) / total if total > 0 else float("nan")
    return {
        "count": int(len(measured_ms)),
        "r2_log": r2,
        "mape": float(np.mean(np.abs(rel))),
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "within_20pct": float(np.mean(np.abs(rel) <= 0.20)),
        "spearman": float(spearmanr(measured_ms, predicted_ms).statistic) if len(measured_ms) > 2 else float("nan"),
        "kendall": float(kendalltau(measured_ms, predicted_ms).statistic) if len(measured_ms) > 2 else float("nan"),
    }


def cross_validate(kind: str, features: np.ndarray, latency_ms: np.ndarray, folds: int = 5,
                   seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions: each model predicted by a fit that did not see it."""
    from sklearn.model_selection import KFold

    predicted = np.empty_like(latency_ms)
    for train, test in KFold(n_splits=folds, shuffle=True, random_state=seed).split(features):
        predicted[test] = fit_model(kind, features[train], latency_ms[train]).predict(features[test])
    return np.maximum(predicted, 1e-6)


def fit_all(features: np.ndarray, latency_ms: np.ndarray, kinds: Sequence[str] = MODEL_KINDS,
            folds: int = 5, seed: int = 0) -> Tuple[str, Dict[str, LatencyModel], Dict[str, Any]]:
    """Fit every kind, score each by cross-validation and choose the lowest held-out MAPE.

    Returns (chosen kind, fitted models, report). Each model is refitted on all data and
    carries the interval from its out-of-fold residuals; the report holds each model's
    cross-validated scores and its out-of-fold predictions (for the plot).
    """
    if len(latency_ms) < 2 * folds:
        raise ValueError(f"{len(latency_ms)} measurements are too few to cross-validate with {folds} folds")
    models: Dict[str, LatencyModel] = {}
    report: Dict[str, Any] = {"folds": folds, "cv_seed": seed, "models": {}}
    for kind in kinds:
        oof = cross_validate(kind, features, latency_ms, folds, seed)
        residual = np.log(latency_ms) - np.log(oof)
        model = fit_model(kind, features, latency_ms)
        model.data["log_residual_quantiles"] = [float(q) for q in np.quantile(residual, INTERVAL_QUANTILES)]
        lo, hi = model.interval(oof)
        cv = score(latency_ms, oof)
        cv["interval_coverage"] = float(np.mean((latency_ms >= lo) & (latency_ms <= hi)))
        models[kind] = model
        report["models"][kind] = {"cross_validated": cv, "training": score(latency_ms, model.predict(features)),
                                  "oof_predicted_ms": [float(v) for v in oof]}
    chosen = min(kinds, key=lambda k: report["models"][k]["cross_validated"]["mape"])
    report["chosen"] = chosen
    report["selection"] = "lowest cross-validated MAPE"
    return chosen, models, report


def model_from_json(data: Dict[str, Any]) -> LatencyModel:
    if data.get("kind") not in MODEL_KINDS + (TRANSFERRED,):
        raise ValueError(f"unknown model kind {data.get('kind')!r}")
    return LatencyModel(data)


def models_to_json(models: Dict[str, LatencyModel]) -> Dict[str, Any]:
    return {kind: model.data for kind, model in models.items()}
