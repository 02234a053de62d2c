"""Search quality on digits: NSGA-II with the pre-training filter against random search without it.

Both get the same training budget (candidates trained) under the same latency budget on the
``local`` board. Per seed the benchmark prints the hypervolume of accuracy against measured
latency (pymoo; error = 1 - accuracy, reference point fixed at error 1.0 and the latency
budget, so only candidates meeting the budget count), candidates evaluated per minute, the
training time the filter saved and its false-reject rate from spot checks; then medians and
the targets (hypervolume >= random + 10%, >= 50% training time saved, <= 5% false rejects).

The filter's saving is measured where it can be: the random runs train everything, so the
share of their training time spent on candidates the filter would have rejected, and how
many of those met the budget once measured, are observed rather than estimated. Inside the
NSGA-II runs the saving is estimated (MACs-based) and false rejects come from spot checks.

The latency budget is a percentile (30th by default) of the calibration's predictions over
random samples of the space, so a known share of the space is out of budget on any machine.

    python benchmarks/search_quality.py [--seeds 0 1 2 3 4] [--budget 64] [--out DIR]

Results go to ``DIR/results.json`` and ``DIR/hypervolume.png``; the runs stay in ``DIR``.
Latency is measured with one thread; the load average is recorded, since other work on the
machine moves the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from hostside.journal import Journal
from hostside.search.config import SearchConfig
from hostside.search.pareto import hypervolume, objective_matrix, violation
from hostside.search.run import start_run
from hostside.spaces import make_space

OBJECTIVES = ["accuracy", "latency_ms"]
CHANCE_ERROR = 0.9  # ten digit classes
DEFAULT_BUDGET_PERCENTILE = 30
CALIBRATION_SIZE = 40


def calibrate_digits(out: Path) -> Path:
    """A calibration of this machine at the digits input size (reused when present)."""
    from hostside.boards import open_board
    from hostside.calibration.calibrate import CALIBRATION_JSON, calibrate

    path = out / "calibration" / CALIBRATION_JSON
    if not path.is_file():
        with open_board("local") as board:
            calibrate([board], path.parent, threads=1, input_shape=(1, 8, 8), size=CALIBRATION_SIZE)
    return path


def latency_budget_ms(calibration_path: Path, percentile: float) -> float:
    from hostside.calibration.artifact import load_calibration

    calibration = load_calibration(calibration_path)
    space = make_space("layer_list", (1, 8, 8), 10)
    rng = np.random.default_rng(12345)
    specs = [space.decode(space.sample(rng)) for _ in range(500)]
    predicted = calibration.predict_many(specs)[0]
    return float(np.percentile(predicted, percentile))


def run_one(out: Path, strategy: str, use_filter: bool, seed: int, budget: int, latency_ms: float,
            calibration: Path) -> Dict[str, Any]:
    run_dir = out / f"{strategy}{'+filter' if use_filter else ''}-seed{seed}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = SearchConfig(strategy=strategy, use_filter=use_filter, seed=seed, budget=budget, population=8,
                          epochs=3, final_epochs=3, objectives=OBJECTIVES, budgets={"latency_ms": latency_ms},
                          calibration=str(calibration), spot_checks=20)
    started = time.perf_counter()
    report = start_run(config, run_dir, progress=lambda message: None)
    minutes = (time.perf_counter() - started) / 60
    journal = Journal.open(run_dir)
    rows = journal.candidates()
    journal.close()
    measured = [r for r in rows if r["status"] == "measured"]
    would_reject = [r for r in rows if r["filter_reason"].startswith("filter off (would have rejected")]
    trained_s = sum(r["train_seconds"] or 0.0 for r in rows)
    would_reject_s = sum(r["train_seconds"] or 0.0 for r in would_reject)
    would_reject_measured = [r for r in would_reject if r["latency_ms"] is not None]
    feasible = [r for r in measured if violation(r, config.budgets) == 0]
    F = objective_matrix(feasible, OBJECTIVES) if feasible else np.empty((0, 2))
    return {
        "strategy": strategy, "filter": use_filter, "seed": seed, "run": str(run_dir),
        "hypervolume": hypervolume(F, [CHANCE_ERROR, latency_ms]),
        "trained": report["filter"]["trained"], "feasible": len(feasible), "rejected": report["filter"]["rejected"],
        "evaluated_per_minute": (len(measured) + report["filter"]["rejected"]) / minutes,
        "trained_per_minute": report["filter"]["trained"] / minutes,
        "saved_fraction": report["filter"]["saved_fraction"],
        "false_reject_rate": report["filter"]["false_reject_rate"],
        "spot_checked": report["filter"]["spot_checked"],
        # Only without the filter: what it would have rejected was trained and measured anyway.
        "unfiltered_would_reject": len(would_reject),
        "unfiltered_saved_fraction": would_reject_s / trained_s if not use_filter and trained_s else None,
        "unfiltered_false_reject_rate": (sum(r["latency_ms"] <= latency_ms for r in would_reject_measured)
                                         / len(would_reject_measured)) if would_reject_measured else None,
        "minutes": minutes, "loadavg_1min": os.getloadavg()[0],
    }


def plot(results: List[Dict[str, Any]], path: Path, latency_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in results})
    width = 0.38
    fig, ax = plt.subplots(figsize=(7, 4))
    for offset, (label, strategy) in enumerate((("NSGA-II + filter", "nsga2"), ("random, no filter", "random"))):
        values = [next(r["hypervolume"] for r in results if r["strategy"] == strategy and r["seed"] == s) for s in seeds]
        ax.bar(np.arange(len(seeds)) + (offset - 0.5) * width, values, width, label=label)
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set_ylabel(f"hypervolume (error x latency, ref {CHANCE_ERROR}, {latency_ms:.4g} ms)")
    ax.set_title("Search quality on digits, equal training budget")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=64, help="candidates trained per run")
    parser.add_argument("--budget-percentile", type=float, default=DEFAULT_BUDGET_PERCENTILE,
                        help="latency budget = this percentile of predicted latency over random samples of the space")
    parser.add_argument("--out", type=Path, default=Path("benchmark-runs/search_quality"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = calibrate_digits(args.out)
    latency_ms = latency_budget_ms(calibration, args.budget_percentile)
    print(f"latency budget {latency_ms:.4g} ms (p{args.budget_percentile:g} of predicted latency over the space); "
          f"budget {args.budget} trained candidates; load average {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    header = f"{'run':<22} {'HV':>8} {'trained':>7} {'feasible':>8} {'rejected':>8} {'eval/min':>8} {'saved':>6} {'false rej':>9}"
    print(header)
    for seed in args.seeds:
        for strategy, use_filter in (("nsga2", True), ("random", False)):
            r = run_one(args.out, strategy, use_filter, seed, args.budget, latency_ms, calibration)
            results.append(r)
            false_rejects = "-" if r["false_reject_rate"] is None else f"{100 * r['false_reject_rate']:.0f}% of {r['spot_checked']}"
            print(f"{strategy + ('+filter' if use_filter else '') + f' seed {seed}':<22} {r['hypervolume']:>8.5f} "
                  f"{r['trained']:>7} {r['feasible']:>8} {r['rejected']:>8} {r['evaluated_per_minute']:>8.1f} "
                  f"{100 * r['saved_fraction']:>5.0f}% {false_rejects:>9}", flush=True)

    def median(strategy: str, key: str) -> float:
        values = [r[key] for r in results if r["strategy"] == strategy and r[key] is not None]
        return statistics.median(values) if values else float("nan")

    hv_nsga, hv_random = median("nsga2", "hypervolume"), median("random", "hypervolume")
    gain = hv_nsga / hv_random - 1 if hv_random > 0 else float("inf")
    saved, false_rate = median("nsga2", "saved_fraction"), median("nsga2", "false_reject_rate")
    unfiltered_saved = median("random", "unfiltered_saved_fraction")
    unfiltered_false = median("random", "unfiltered_false_reject_rate")
    summary = {
        "latency_budget_ms": latency_ms, "budget": args.budget, "seeds": args.seeds,
        "median_hypervolume": {"nsga2+filter": hv_nsga, "random": hv_random}, "hypervolume_gain": gain,
        "median_evaluated_per_minute": {"nsga2+filter": median("nsga2", "evaluated_per_minute"),
                                        "random": median("random", "evaluated_per_minute")},
        "median_saved_fraction": saved, "median_false_reject_rate": false_rate,
        "median_unfiltered_saved_fraction": unfiltered_saved, "median_unfiltered_false_reject_rate": unfiltered_false,
        "targets_met": {"hypervolume_gain>=10%": gain >= 0.10, "saved>=50%": unfiltered_saved >= 0.5,
                        "false_rejects<=5%": unfiltered_false <= 0.05 and false_rate <= 0.05},
        "runs": results,
    }
    (args.out / "results.json").write_text(json.dumps(summary, indent=1) + "\n")
    plot(results, args.out / "hypervolume.png", latency_ms)
    print(f"median hypervolume: NSGA-II+filter {hv_nsga:.5f}, random {hv_random:.5f} ({100 * gain:+.0f}%; target >= +10%)")
    print(f"median candidates evaluated per minute: NSGA-II+filter {summary['median_evaluated_per_minute']['nsga2+filter']:.1f}, "
          f"random {summary['median_evaluated_per_minute']['random']:.1f}")
    print(f"filter, measured in the unfiltered random runs: {100 * unfiltered_saved:.0f}% of the training time went to "
          f"candidates it would reject (target >= 50%); {100 * unfiltered_false:.1f}% of those met the budget "
          f"(false rejects, target <= 5%)")
    print(f"filter, inside the NSGA-II runs: {100 * saved:.0f}% of training time saved (estimated from MACs), "
          f"{100 * false_rate:.1f}% false rejects in spot checks (target <= 5%)")
    print(f"results: {args.out / 'results.json'}, {args.out / 'hypervolume.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
