"""Search quality on NAS-Bench-201 with Raspberry Pi 4 latencies: strategies x seeds x budgets.

Every search runs through the real engine against the table (``hostside search --table``,
``hostside.search.table_run``) in a temporary directory, in two worker processes. Objectives:
validation accuracy (``c10valid_val_acc_200ep``) up, measured latency (``raspi4_latency_ms``)
down. Per run and budget b (the first b evaluations; every evaluation counts, a network
evaluated again included):

- HV share: hypervolume of the found front as a share of the true front's (all connected
  architectures of the table), in the region better than the median accuracy and faster than
  the median latency (medians over the connected architectures), i.e. reference point
  (median accuracy, median latency);
- regret: over latency budgets at the 10 / 25 / 50 % latency quantiles, the mean of (best
  accuracy of the table under that budget - best found under it), in points (percent). With
  nothing found under a budget, the found value is the worst accuracy under it.

"Found" is what a search has evaluated at the final fidelity (200 epochs): a network seen only
after 12 epochs has no trustworthy figure. Accuracies found are the table's, so the front is
scored on the same ground truth it was chosen on (validation); test accuracy plays no part.

A strategy whose proposals do not depend on the budget is run once per seed at the largest
budget and scored at each smaller b on its first b evaluations; those that read the budget
(``Strategy.budget_aware``) are run once per budget. A multi-fidelity strategy
(``asha``) runs with ``budget_unit = "train_seconds"`` and is scored at the same simulated
training cost as b full-fidelity evaluations (b x ``train_seconds`` of 200 epochs); its curve
is also drawn against simulated training hours, next to the single-fidelity ones.

Statistics over seeds: median and interquartile range; one-sided Mann-Whitney U
(``scipy.stats.mannwhitneyu``) of each strategy against random (HV share greater, regret less)
and against the best optuna sampler (by median HV share at that budget), where one exists.

    python benchmarks/search_quality_nb201.py [--seeds 30] [--strategies random,nsga2]
        [--budgets 50,100,300,1000] [--table data/nb201/nb201_hw.csv] [--out DIR]

Writes ``DIR/results.json``, ``DIR/hv_share.png`` and ``DIR/hv_share_vs_hours.png`` and prints
the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = ROOT / "data" / "nb201" / "nb201_hw.csv"
ACCURACY = "c10valid_val_acc_200ep"
LATENCY = "raspi4_latency_ms"
FINAL_EPOCHS = 200
LATENCY_QUANTILES = (0.10, 0.25, 0.50)
MULTI_FIDELITY = ("asha",)
#: Strategies that cannot search a fixed-cell space at all (their own genotypes or a grid of laws).
NOT_GENERAL = ("narrow", "cgp-nsga2", "ea4cnn", "rs-cnn")


# -- ground truth ---------------------------------------------------------------------------

class Truth:
    """The table's connected architectures: accuracy (fraction) and latency, the true front."""

    def __init__(self, table: Path):
        import csv

        from hostside.arch.nb201 import is_connected, parse_arch_str

        acc, lat, keys = [], [], []
        with open(table, newline="") as handle:
            for row in csv.DictReader(handle):
                if is_connected(parse_arch_str(row["arch_str"])):
                    keys.append(row["arch_str"])
                    acc.append(float(row[ACCURACY]) / 100)
                    lat.append(float(row[LATENCY]))
        self.accuracy = dict(zip(keys, acc))
        self.latency = dict(zip(keys, lat))
        self.acc = np.array(acc)
        self.lat = np.array(lat)
        self.reference = (float(np.median(self.acc)), float(np.median(self.lat)))
        self.budgets_ms = [float(np.quantile(self.lat, q)) for q in LATENCY_QUANTILES]
        self.best_under = [float(self.acc[self.lat <= b].max()) for b in self.budgets_ms]
        self.worst_under = [float(self.acc[self.lat <= b].min()) for b in self.budgets_ms]
        self.front_hv = hypervolume(list(zip(acc, lat)), self.reference)

    def scores(self, found: Sequence[str]) -> Tuple[float, float]:
        """(HV share, regret in points) of a set of architectures evaluated at the final fidelity."""
        points = [(self.accuracy[k], self.latency[k]) for k in dict.fromkeys(found) if k in self.accuracy]
        share = hypervolume(points, self.reference) / self.front_hv
        regrets = []
        for budget, best, worst in zip(self.budgets_ms, self.best_under, self.worst_under):
            under = [a for a, lat in points if lat <= budget]
            regrets.append(100 * (best - (max(under) if under else worst)))
        return share, float(np.mean(regrets))


def hypervolume(points: Sequence[Tuple[float, float]], reference: Tuple[float, float]) -> float:
    """Area dominated by (accuracy up, latency down) points within the reference box
    (``hostside.metrics.hypervolume``, pymoo, on error = 1 - accuracy)."""
    from hostside.metrics import hypervolume as hv

    inside = [(1 - a, lat) for a, lat in points if a > reference[0] and lat < reference[1]]
    if not inside:
        return 0.0
    return float(hv(np.array(inside), [1 - reference[0], reference[1]]))


# -- one search -----------------------------------------------------------------------------

def budget_dependent(strategy: str) -> bool:
    from hostside.search.strategies import strategy_class

    return strategy_class(strategy).budget_aware


def run_one(job: Dict[str, Any]) -> Dict[str, Any]:
    """One search in a temporary directory; the sequence of its evaluations (arch, epochs, seconds)."""
    from hostside.journal import Journal
    from hostside.search.config import build_config
    from hostside.search.run import start_run

    values = {"space": "nasbench201", "strategy": job["strategy"], "seed": job["seed"], "budget": job["budget"],
              "objectives": ["val_accuracy", "measured_latency"], "table": {"path": job["table"]}}
    if job["strategy"] in MULTI_FIDELITY:
        values["budget_unit"] = "train_seconds"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nb201-quality-") as tmp:
        try:
            start_run(build_config(values, {}), Path(tmp) / "run", progress=lambda message: None, reports=False)
        except Exception as exc:  # noqa: BLE001 - a strategy that cannot search this space is reported, not fatal
            return {**job, "error": f"{type(exc).__name__}: {exc}"}
        journal = Journal.open(Path(tmp) / "run")
        try:
            rows = [r for r in journal.candidates() if r["status"] in ("measured", "failed", "trained")]
        finally:
            journal.close()
    from hostside.arch.nb201 import format_arch_str

    evaluations = [(format_arch_str(r["genotype"]["ops"]), (r["train_metrics"] or {}).get("table_epochs"),
                    r["train_seconds"] or 0.0) for r in sorted(rows, key=lambda r: r["id"])]
    return {**job, "evaluations": evaluations, "seconds": time.perf_counter() - started}


def prefix_found(evaluations: Sequence[Sequence[Any]], count: Optional[int] = None,
                 seconds: Optional[float] = None) -> List[str]:
    """Architectures evaluated at the final fidelity within the first ``count`` evaluations or
    the first ``seconds`` of simulated training."""
    found, spent = [], 0.0
    for i, (key, epochs, cost) in enumerate(evaluations):
        spent += cost
        if (count is not None and i >= count) or (seconds is not None and spent > seconds):
            break
        if epochs == FINAL_EPOCHS:
            found.append(key)
    return found


# -- the grid -------------------------------------------------------------------------------

def general_strategies() -> List[str]:
    from hostside.search.strategies import strategy_names

    return [name for name in strategy_names() if name not in NOT_GENERAL]


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="seeds 0..N-1 (default 30)")
    parser.add_argument("--strategies", help="comma-separated (default: every general strategy)")
    parser.add_argument("--budgets", default="50,100,300,1000", help="evaluations (default 50,100,300,1000)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("search_quality_nb201"))
    args = parser.parse_args(argv)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    strategies = args.strategies.split(",") if args.strategies else general_strategies()
    from hostside.search.table import TableSettings

    seconds_per_eval = TableSettings.from_config({"path": str(args.table)}).seconds(FINAL_EPOCHS)
    jobs = []
    for strategy in strategies:
        per_budget = budget_dependent(strategy)
        for seed in range(args.seeds):
            for budget in (budgets if per_budget else budgets[-1:]):
                cost = int(budget * seconds_per_eval) if strategy in MULTI_FIDELITY else budget
                jobs.append({"strategy": strategy, "seed": seed, "budget": cost, "evals": budget,
                             "per_budget": per_budget, "table": str(args.table.resolve())})
    truth = Truth(args.table)
    started = time.perf_counter()
    results = []
    with ProcessPoolExecutor(args.workers) as pool:
        for result in as_completed([pool.submit(run_one, job) for job in jobs]):
            results.append(result.result())
            done = results[-1]
            print(f"[{len(results)}/{len(jobs)}] {done['strategy']} seed {done['seed']} budget {done['budget']}: "
                  + (done["error"] if "error" in done else f"{done['seconds']:.1f} s"), file=sys.stderr, flush=True)
    wall_s = time.perf_counter() - started
    errors = {r["strategy"]: r["error"] for r in results if "error" in r}
    scores: Dict[str, Dict[int, Dict[str, List[float]]]] = {}
    hours: Dict[str, Dict[float, List[float]]] = {}
    for result in results:
        if "error" in result:
            continue
        strategy, evaluations = result["strategy"], result["evaluations"]
        for budget in budgets:
            if result["per_budget"] and result["evals"] != budget:
                continue
            if strategy in MULTI_FIDELITY:
                found = prefix_found(evaluations, seconds=budget * seconds_per_eval)
            else:
                found = prefix_found(evaluations, count=budget)
            share, regret = truth.scores(found)
            entry = scores.setdefault(strategy, {}).setdefault(budget, {"hv_share": [], "regret": []})
            entry["hv_share"].append(share)
            entry["regret"].append(regret)
            hours.setdefault(strategy, {}).setdefault(budget * seconds_per_eval / 3600, []).append(share)
    summary = summarise(scores, budgets)
    report = {"table": str(args.table), "seeds": args.seeds, "budgets": budgets, "wall_s": wall_s,
              "reference": {"median_accuracy": truth.reference[0], "median_latency_ms": truth.reference[1]},
              "latency_budgets_ms": truth.budgets_ms, "errors": errors, "summary": summary,
              "budget_dependent": [s for s in strategies if budget_dependent(s)],
              "run_seconds": {s: float(np.median([r["seconds"] for r in results if r["strategy"] == s and "seconds" in r]))
                              for s in scores}}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    plot(scores, budgets, args.out / "hv_share.png", "evaluations (full-fidelity equivalents)")
    plot({s: {h: {"hv_share": v} for h, v in by.items()} for s, by in hours.items()},
         sorted({h for by in hours.values() for h in by}), args.out / "hv_share_vs_hours.png",
         "simulated training hours")
    print(markdown(summary, budgets, args.seeds, wall_s, errors))
    return 0


def summarise(scores: Dict[str, Dict[int, Dict[str, List[float]]]], budgets: Sequence[int]) -> Dict[str, Any]:
    from scipy.stats import mannwhitneyu

    out: Dict[str, Any] = {}
    for budget in budgets:
        present = {s: by[budget] for s, by in scores.items() if budget in by}
        optuna = [s for s in present if s.startswith("optuna:")]
        best_optuna = max(optuna, key=lambda s: np.median(present[s]["hv_share"])) if optuna else None
        for strategy, entry in present.items():
            row: Dict[str, Any] = {}
            for metric in ("hv_share", "regret"):
                values = np.array(entry[metric])
                row[metric] = {"median": float(np.median(values)), "q25": float(np.quantile(values, 0.25)),
                               "q75": float(np.quantile(values, 0.75)), "n": len(values)}
            for name, other in (("random", "random"), ("best_optuna", best_optuna)):
                if other is None or other == strategy or other not in present:
                    continue
                row[f"vs_{name}"] = {
                    "against": other,
                    "hv_share_p": float(mannwhitneyu(entry["hv_share"], present[other]["hv_share"],
                                                     alternative="greater").pvalue),
                    "regret_p": float(mannwhitneyu(entry["regret"], present[other]["regret"],
                                                   alternative="less").pvalue)}
            out.setdefault(strategy, {})[str(budget)] = row
    return out


def markdown(summary: Dict[str, Any], budgets: Sequence[int], seeds: int, wall_s: float,
             errors: Dict[str, str]) -> str:
    lines = [f"NB201 search quality, {seeds} seeds, {wall_s:.0f} s wall", "",
             "| strategy | budget | HV share median [IQR] | regret pts median [IQR] | p vs random (HV, regret) | "
             "p vs best optuna (HV, regret) |", "|---|---|---|---|---|---|"]
    for strategy in sorted(summary):
        for budget in budgets:
            row = summary[strategy].get(str(budget))
            if row is None:
                continue
            hv, rg = row["hv_share"], row["regret"]
            cells = []
            for name in ("vs_random", "vs_best_optuna"):
                test = row.get(name)
                cells.append("" if test is None else f"{test['hv_share_p']:.3g}, {test['regret_p']:.3g}")
            lines.append(f"| {strategy} | {budget} | {hv['median']:.3f} [{hv['q25']:.3f}, {hv['q75']:.3f}] | "
                         f"{rg['median']:.2f} [{rg['q25']:.2f}, {rg['q75']:.2f}] | {cells[0]} | {cells[1]} |")
    for strategy, error in errors.items():
        lines.append(f"\n{strategy}: not run on nasbench201 ({error})")
    return "\n".join(lines)


def plot(scores: Dict[str, Dict[Any, Dict[str, List[float]]]], xs: Sequence[float], path: Path, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy in sorted(scores):
        points = [(x, scores[strategy][x]["hv_share"]) for x in xs if x in scores[strategy]]
        if not points:
            continue
        x = [p[0] for p in points]
        ax.plot(x, [np.median(v) for _, v in points], marker="o", label=strategy)
        ax.fill_between(x, [np.quantile(v, 0.25) for _, v in points], [np.quantile(v, 0.75) for _, v in points],
                        alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("HV share of the true front (median, IQR)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
