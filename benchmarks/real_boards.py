"""Calibrations fitted from real boards' published figures: Raspberry Pi 4, Pixel 3, Cortex-A76.

``data/nb201/nb201_hw.csv`` holds NAS-Bench-201's 15,625 networks with latencies measured on a
Raspberry Pi 4 and a Pixel 3 (HW-NAS-Bench) and, for 2,000 of them, on a Pixel 4's Cortex-A76
CPU (nn-Meter, TFLite). For N in {10, 30, 100, 300} measured networks (5 random draws each),
the calibration is fitted from those N alone, exactly as ``hostside calibrate
--from-measurements`` fits (features of the deployed network under each ARM rule set, model kind
and rule set chosen by k-fold cross-validation), and predicts every other connected network.

How the network was deployed differs between the sources, and matters: nn-Meter's Cortex-A76
graphs leave out every edge that computes nothing the output sees (``nb201_spec``'s network),
while HW-NAS-Bench's Pi 4 / Pixel 3 graphs still compute the edges leaving a node that receives
only ``none`` edges (its zero tensor is a real input there; only edges that never reach the
output are dropped). Both deployments are fitted on the N training rows and the one whose
cross-validated error is lower is kept, as the rule set is: nothing is chosen on the rows judged.
Printed per board and N: share within ±10 %, Spearman, Kendall (median over the draws); also a
transfer of this machine's shipped calibration from 10 rows. PNGs of predicted vs measured go
under ``--out``. The figures come from the CSV: this is not a timing benchmark.

Targets: Cortex-A76 >= 95 % within ±10 % from 100 rows; Raspberry Pi 4 and Pixel 3 Spearman
>= 0.95 from 100 and >= 0.92 from 10.

``--extrapolation`` instead measures NB201 networks on this machine (the project's own measuring
code, ``local`` board), fits at 32x32 and predicts the same cells at 16x64 and 88x88 inputs
(target >= 90 % within ±10 %); it needs a quiet machine. ``--transfer-from CAL.json`` (a
calibration of this machine, e.g. ``hostside calibrate --board local --quick``) adds that
calibration rescaled from the 32x32 rows, and the calibration as it is.

Run: python benchmarks/real_boards.py [--out DIR] [--draws 5] [--extrapolation [--count N] [--transfer-from CAL.json]]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "data" / "nb201" / "nb201_hw.csv"
BOARDS = ("raspi4_latency_ms", "pixel3_latency_ms", "cortexA76_latency_ms")
SIZES = (10, 30, 100, 300)
#: HW-NAS-Bench does not document the Pi 4's runtime; the Pixels ran TFLite. The fit chooses.
ARM_RULE_SETS = ("onnxruntime-arm64", "tflite-arm64")
SHIPPED = ROOT / "hostside" / "calibration_data" / "amd-epyc-2c-x86_64-ort1.31.1-threads1" / "calibration.json"
TRANSFER_ROWS = 10
DEPLOYMENTS = ("dead edges left out", "zero-input edges kept")


def load_rows() -> Tuple[List[str], Dict[str, np.ndarray]]:
    """Connected architectures and each board's latency column (NaN where not measured)."""
    from hostside.arch.nb201 import is_connected, parse_arch_str

    with open(DATA, newline="") as f:
        rows = [r for r in csv.DictReader(f) if is_connected(parse_arch_str(r["arch_str"]))]
    arch = [r["arch_str"] for r in rows]
    return arch, {b: np.array([float(r[b]) if r[b] else np.nan for r in rows]) for b in BOARDS}


def ranks(measured: np.ndarray, predicted: np.ndarray) -> Tuple[float, float, float]:
    from scipy.stats import kendalltau, spearmanr

    within = float(np.mean(np.abs(predicted / measured - 1.0) <= 0.10))
    return within, float(spearmanr(measured, predicted).statistic), float(kendalltau(measured, predicted).statistic)


def fit_and_predict(features: Dict[str, Dict[str, np.ndarray]], y: np.ndarray, train: np.ndarray,
                    test: np.ndarray) -> Tuple[np.ndarray, str]:
    """Fit each deployment's features on the training rows; predict the test rows with the
    deployment, rule set and model kind of the lowest cross-validated MAPE."""
    from hostside.calibration.from_measurements import fit_measurements

    fits = {d: fit_measurements({n: f[train] for n, f in by_rules.items()}, y[train])
            for d, by_rules in features.items()}
    deployment = min(fits, key=lambda d: fits[d].report["models"][fits[d].chosen]["cross_validated"]["mape"])
    fit = fits[deployment]
    predicted = fit.models[fit.chosen].predict(features[deployment][fit.rules.name][test])
    return np.maximum(predicted, 1e-6), f"{deployment}, {fit.rules.name}/{fit.chosen}"


def transfer_predict(source, features: Dict[str, np.ndarray], y: np.ndarray, train: np.ndarray,
                     test: np.ndarray) -> np.ndarray:
    """The source rescaled from the training rows, in the deployment of lower leave-one-out MAPE."""
    from hostside.calibration.transfer import fit_transfer

    fits = {d: fit_transfer(source, f[train], y[train]) for d, f in features.items()}
    deployment = min(fits, key=lambda d: fits[d][1]["leave_one_out"]["mape"])
    return np.maximum(fits[deployment][0].predict(features[deployment][test]), 1e-6)


def plot(path: Path, board: str, measured: np.ndarray, predicted: np.ndarray, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    lo, hi = float(measured.min()) / 1.2, float(measured.max()) * 1.2
    line = np.array([lo, hi])
    ax.fill_between(line, line / 1.1, line * 1.1, color="tab:green", alpha=0.25, label="±10%")
    ax.plot(line, line, color="black", lw=0.8)
    ax.scatter(measured, predicted, s=3, alpha=0.4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"measured {board} (ms)")
    ax.set_ylabel("predicted (ms)")
    ax.set_title(label, fontsize=8)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def real_boards(out: Path, draws: int) -> None:
    from hostside.arch.nb201 import nb201_spec, zero_inputs_kept
    from hostside.calibration.artifact import load_calibration
    from hostside.calibration.features import features_matrix

    start = time.time()
    arch, latency = load_rows()
    source = load_calibration(SHIPPED)
    features: Dict[str, Dict[str, np.ndarray]] = {}
    source_features: Dict[str, np.ndarray] = {}
    for deployment, arch_of in zip(DEPLOYMENTS, (lambda a: a, zero_inputs_kept)):
        specs = [nb201_spec(arch_of(a)) for a in arch]
        features[deployment] = {n: features_matrix(specs, n) for n in ARM_RULE_SETS}
        source_features[deployment] = features_matrix(specs, source.rules)
    print(f"{len(arch)} connected NB201 architectures; features in {time.time() - start:.0f} s; "
          f"transfer source: {SHIPPED.parent.name} ({source.rules.name})")
    print(f"{'board':22s} {'N':>5s} {'±10%':>6s} {'Spearman':>9s} {'Kendall':>8s}  chosen (draw 0)")
    out.mkdir(parents=True, exist_ok=True)
    for board in BOARDS:
        have = np.flatnonzero(~np.isnan(latency[board]))
        y = latency[board]
        for n in SIZES:
            results, chosen = [], ""
            for draw in range(draws):
                order = np.random.default_rng(1000 * draw + n).permutation(have)
                train, test = order[:n], order[n:]
                predicted, label = fit_and_predict(features, y, train, test)
                results.append(ranks(y[test], predicted))
                if draw == 0:
                    chosen = label
                    if n in (10, 100):
                        plot(out / f"{board}_n{n}.png", board, y[test], predicted, f"{board}, fitted on {n}\n{label}")
            med = np.median(np.array(results), axis=0)
            print(f"{board:22s} {n:5d} {med[0]:6.1%} {med[1]:9.3f} {med[2]:8.3f}  {chosen}", flush=True)
        results = []
        for draw in range(draws):
            order = np.random.default_rng(7 + draw).permutation(have)
            train, test = order[:TRANSFER_ROWS], order[TRANSFER_ROWS:]
            results.append(ranks(y[test], transfer_predict(source, source_features, y, train, test)))
        med = np.median(np.array(results), axis=0)
        print(f"{board:22s} {'T10':>5s} {med[0]:6.1%} {med[1]:9.3f} {med[2]:8.3f}  transferred from this machine",
              flush=True)
    print(f"plots under {out}; {time.time() - start:.0f} s in all")


EXTRAPOLATION_SHAPES = ((3, 16, 64), (3, 88, 88))


def extrapolation(out: Path, count: int, source: Optional[Path] = None) -> None:
    """Measure ``count`` NB201 cells at 32x32 and at each other shape on this machine; fit at
    32x32 only and predict the others. With ``source`` (a calibration of this machine over
    mixed input sizes), the 32x32 rows also rescale its kernel groups (``--transfer-from``):
    at one input size the per-operator and per-MAC costs of NB201 cells move together, so a
    fit from scratch cannot tell them apart, while the source's split of them carries over."""
    from hostside.arch.nb201 import nb201_spec
    from hostside.boards.board import open_board
    from hostside.boards.pool import BoardPool
    from hostside.calibration.artifact import load_calibration
    from hostside.calibration.calibrate import TARGET_COLUMN, protocol_kwargs
    from hostside.calibration.features import features_matrix
    from hostside.calibration.from_measurements import fit_measurements
    from hostside.calibration.measure import measure_suite
    from hostside.calibration.rules import board_runtime_isa, candidates_for
    from hostside.calibration.transfer import fit_transfer

    print(f"load average {os.getloadavg()[0]:.2f} (figures need a quiet machine)")
    arch, _ = load_rows()
    cells = [arch[i] for i in np.random.default_rng(3).permutation(len(arch))[:count]]
    with open_board("local") as board:
        names = candidates_for(*board_runtime_isa(board.info()))
        pool = BoardPool([board])
        kwargs = protocol_kwargs(1)

        def measured(shape: Sequence[int]) -> Tuple[List, np.ndarray]:
            specs = [nb201_spec(a, input_shape=tuple(shape)) for a in cells]
            rows = measure_suite(specs, out / "x".join(map(str, shape)),
                                 lambda paths: pool.measure_many(paths, **kwargs), board.name)
            by_hash = {r["spec_sha256"]: float(r[TARGET_COLUMN]) for r in rows}
            kept = [s for s in specs if s.content_hash() in by_hash]
            return kept, np.array([by_hash[s.content_hash()] for s in kept])

        train_specs, train_ms = measured((3, 32, 32))
        fit = fit_measurements({n: features_matrix(train_specs, n) for n in names}, train_ms)
        models = {f"from scratch ({fit.rules.name}/{fit.chosen})": (fit.models[fit.chosen], fit.rules)}
        if source is not None:
            calibration = load_calibration(source)
            transferred, _ = fit_transfer(calibration, features_matrix(train_specs, calibration.rules), train_ms)
            models[f"transferred from {source.name}"] = (transferred, calibration.rules)
            models[f"{source.name} as it is"] = (calibration.models[calibration.chosen], calibration.rules)
        print(f"fitted at 3x32x32 on {len(train_ms)} networks")
        for shape in EXTRAPOLATION_SHAPES:
            specs, ms = measured(shape)
            for name, (model, rules) in models.items():
                predicted = np.maximum(model.predict(features_matrix(specs, rules)), 1e-6)
                within, rho, tau = ranks(ms, predicted)
                print(f"predicted at {'x'.join(map(str, shape))}, {name}: {within:.1%} within ±10 % "
                      f"(target >= 90 %), Spearman {rho:.3f}, Kendall {tau:.3f}, {len(ms)} networks")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="where the PNGs (and --extrapolation's measurements) go "
                             "(default $HOSTSIDE_HOME/real-boards)")
    parser.add_argument("--draws", type=int, default=5, help="random draws per N (default 5)")
    parser.add_argument("--extrapolation", action="store_true",
                        help="measure NB201 networks on this machine: fit at 32x32, predict 16x64 and 88x88")
    parser.add_argument("--count", type=int, default=60, help="networks per input shape with --extrapolation")
    parser.add_argument("--transfer-from", type=Path, default=None, metavar="CAL.json",
                        help="with --extrapolation: also rescale this calibration of this machine from the 32x32 rows")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    if args.out is None:
        from hostside.paths import hostside_home

        args.out = hostside_home() / "real-boards"
    if args.extrapolation:
        extrapolation(args.out, args.count, args.transfer_from)
    else:
        real_boards(args.out, args.draws)
    return 0


if __name__ == "__main__":
    sys.exit(main())
