"""Search quality on NAS-Bench-201 with Raspberry Pi 4 latencies: strategies x seeds x budgets.

Every search runs through the real engine against the table (``hostside search --table``,
``hostside.search.table_run``) in a temporary directory, in ``--workers`` processes. Objectives:
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
training cost as b full-fidelity evaluations (b x ``train_seconds`` of 200 epochs), and also
at half that cost, where the multi-fidelity target is judged: its HV share at half the
training time of b full-fidelity evaluations against the best single-fidelity strategy's at
b. Its curve is drawn against simulated training hours, next to the single-fidelity ones.

Every finished search is appended to ``DIR/runs.jsonl`` (its evaluations, not its scores); a
rerun with the same ``--out`` runs only the searches missing there, so a long grid can be
stopped, resumed, or grown by strategies and seeds in later calls, and scoring covers the
current grid only.

Statistics over seeds: median and interquartile range; one-sided Mann-Whitney U
(``scipy.stats.mannwhitneyu``) of each strategy against random (HV share greater, regret less)
and against the best optuna sampler (by median HV share at that budget), where one exists.

    python benchmarks/search_quality_nb201.py [--seeds 30] [--first-seed 0] [--strategies random,nsga2]
        [--budgets 50,100,300,1000] [--table data/nb201/nb201_hw.csv] [--workers 2] [--out DIR]
        [--figures PREFIX]

Writes ``DIR/results.json``, ``DIR/hv_share.png`` and ``DIR/hv_share_vs_hours.png`` (or
``PREFIX.png`` and ``PREFIX_hours.png``) and prints the table and the targets' verdicts.
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
#: The targets: the best strategy's median HV share at these budgets, better than random at this p.
HV_TARGETS = {100: 0.75, 300: 0.90}
P_TARGET = 0.01
#: Multi-fidelity: the best single-fidelity HV share at this budget, in at most this share of its training time.
MF_BUDGET, MF_TIME_SHARE = 300, 0.5
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


def job_key(job: Dict[str, Any]) -> Tuple[str, int, int]:
    return job["strategy"], job["seed"], job["budget"]


def load_runs(path: Path) -> Dict[Tuple[str, int, int], Dict[str, Any]]:
    """Searches already finished in an earlier call (``runs.jsonl``), by (strategy, seed, budget)."""
    if not path.exists():
        return {}
    runs = {}
    for line in path.read_text().splitlines():
        try:
            run = json.loads(line)
        except json.JSONDecodeError:  # the last line of a call killed while writing it: run it again
            continue
        runs[job_key(run)] = run
    return runs


def scored_run(job: Dict[str, Any], done: Dict[Tuple[str, int, int], Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The finished search a job is scored on: its own, or for a strategy that does not read the
    budget, the longest search of that strategy and seed there is (its prefixes score every
    smaller budget: a longer search makes the job's own unnecessary, and a shorter one stands in
    for it with ``--score-only``)."""
    if job_key(job) in done or job["per_budget"]:
        return done.get(job_key(job))
    runs = [r for (strategy, seed, _), r in done.items()
            if strategy == job["strategy"] and seed == job["seed"] and "error" not in r]
    return max(runs, key=lambda r: r["budget"], default=None)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30, help="number of seeds (default 30)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds first..first+N-1 (default 0; another range to tune on seeds not scored)")
    parser.add_argument("--strategies", help="comma-separated (default: every general strategy)")
    parser.add_argument("--budgets", default="50,100,300,1000", help="evaluations (default 50,100,300,1000)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmark-runs" / "search_quality_nb201")
    parser.add_argument("--figures", type=Path, help="write the PNGs as PREFIX.png and PREFIX_hours.png")
    parser.add_argument("--score-only", action="store_true",
                        help="run nothing; score the searches in runs.jsonl (a strategy's budgets beyond its "
                             "longest search there are left out)")
    args = parser.parse_args(argv)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    strategies = args.strategies.split(",") if args.strategies else general_strategies()
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    from hostside.search.table import TableSettings

    seconds_per_eval = TableSettings.from_config({"path": str(args.table)}).seconds(FINAL_EPOCHS)
    jobs = []
    for strategy in strategies:
        per_budget = budget_dependent(strategy)
        for seed in seeds:
            for budget in (budgets if per_budget else budgets[-1:]):
                cost = int(budget * seconds_per_eval) if strategy in MULTI_FIDELITY else budget
                jobs.append({"strategy": strategy, "seed": seed, "budget": cost, "evals": budget,
                             "per_budget": per_budget, "table": str(args.table.resolve())})
    truth = Truth(args.table)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.jsonl"
    done = load_runs(runs_path)
    todo = [] if args.score_only else [job for job in jobs if (scored_run(job, done) or {"budget": -1})["budget"]
                                       < job["budget"]]
    print(f"{len(jobs) - len(todo)} of {len(jobs)} searches already in {runs_path}", file=sys.stderr, flush=True)
    # Unbuffered appends, one write per search, so calls sharing an --out do not interleave lines.
    with ProcessPoolExecutor(args.workers) as pool, open(runs_path, "ab", buffering=0) as log:
        for count, future in enumerate(as_completed([pool.submit(run_one, job) for job in todo]), 1):
            result = future.result()
            if "error" not in result:
                log.write((json.dumps(result) + "\n").encode())
                done[job_key(result)] = result
            print(f"[{count}/{len(todo)}] {result['strategy']} seed {result['seed']} budget {result['budget']}: "
                  + (result["error"] if "error" in result else f"{result['seconds']:.1f} s"),
                  file=sys.stderr, flush=True)
            if "error" in result:
                done[job_key(result)] = result
    results = [run for run in (scored_run(job, done) for job in jobs) if run is not None]
    errors = {r["strategy"]: r["error"] for r in results if "error" in r}
    scores: Dict[str, Dict[int, Dict[str, List[float]]]] = {}
    hours: Dict[str, Dict[float, List[float]]] = {}
    for result in results:
        if "error" in result:
            continue
        strategy, evaluations = result["strategy"], result["evaluations"]
        multi = strategy in MULTI_FIDELITY
        points = sorted(set(budgets) | ({b * MF_TIME_SHARE for b in budgets} if multi else set()))
        for budget in points:
            if (result["per_budget"] and result["evals"] != budget) or budget > result["evals"]:
                continue
            if multi:
                found = prefix_found(evaluations, seconds=budget * seconds_per_eval)
            else:
                found = prefix_found(evaluations, count=int(budget))
            share, regret = truth.scores(found)
            if budget in budgets:
                entry = scores.setdefault(strategy, {}).setdefault(int(budget), {"hv_share": [], "regret": []})
                entry["hv_share"].append(share)
                entry["regret"].append(regret)
            hours.setdefault(strategy, {}).setdefault(budget * seconds_per_eval / 3600, []).append(share)
    summary = summarise(scores, budgets)
    verdicts = targets(scores, hours, summary, seconds_per_eval)
    report = {"table": str(args.table), "seeds": seeds, "budgets": budgets,
              "reference": {"median_accuracy": truth.reference[0], "median_latency_ms": truth.reference[1]},
              "latency_budgets_ms": truth.budgets_ms, "errors": errors, "summary": summary, "targets": verdicts,
              "budget_dependent": [s for s in strategies if budget_dependent(s)],
              "evaluations_per_run": {s: float(np.median([len(r["evaluations"]) for r in results
                                                          if r["strategy"] == s and "evaluations" in r]))
                                      for s in scores}}
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    figures = (args.figures.parent / (args.figures.name + ".png"), args.figures.parent / (args.figures.name + "_hours.png")) \
        if args.figures else (args.out / "hv_share.png", args.out / "hv_share_vs_hours.png")
    plot(scores, budgets, figures[0], "evaluations (full-fidelity equivalents)")
    plot({s: {h: {"hv_share": v} for h, v in by.items()} for s, by in hours.items()},
         sorted({h for by in hours.values() for h in by}), figures[1], "simulated training hours")
    print(markdown(summary, budgets, seeds, errors))
    print()
    print("\n".join(f"- {line}" for line in verdicts["lines"]))
    return 0


def targets(scores: Dict[str, Dict[int, Dict[str, List[float]]]], hours: Dict[str, Dict[float, List[float]]],
            summary: Dict[str, Any], seconds_per_eval: float) -> Dict[str, Any]:
    """The verdicts, each with its numbers: the best strategy (highest median HV share at the
    largest target budget) against the HV targets and random, and multi-fidelity against the best
    single-fidelity strategy at a share of its training time."""
    from scipy.stats import mannwhitneyu

    out: Dict[str, Any] = {"lines": []}
    target_budget = max(HV_TARGETS)
    candidates = [s for s in scores if target_budget in scores[s] and s != "random"]
    if candidates and all(b in scores.get("random", {}) for b in HV_TARGETS):
        best = max(candidates, key=lambda s: np.median(scores[s][target_budget]["hv_share"]))
        parts, met = [], True
        for budget, goal in sorted(HV_TARGETS.items()):
            median = float(np.median(scores[best][budget]["hv_share"]))
            p = summary[best][str(budget)]["vs_random"]["hv_share_p"]
            met &= median >= goal and p < P_TARGET
            parts.append(f"{median:.3f} at {budget} (target >= {goal}, p vs random {p:.2g})")
        out["best"] = {"strategy": best, "met": bool(met)}
        out["lines"].append(f"best strategy {best}: median HV share " + ", ".join(parts)
                            + f": {'met' if met else 'missed'}")
    single = [s for s in scores if s not in MULTI_FIDELITY and MF_BUDGET in scores[s]]
    if single:
        reference = max(single, key=lambda s: np.median(scores[s][MF_BUDGET]["hv_share"]))
        goal = scores[reference][MF_BUDGET]["hv_share"]
        at = MF_BUDGET * MF_TIME_SHARE * seconds_per_eval / 3600
        for strategy in (s for s in MULTI_FIDELITY if s in hours and at in hours[s]):
            reached = hours[strategy][at]
            p = float(mannwhitneyu(reached, goal, alternative="less").pvalue)
            met = float(np.median(reached)) >= float(np.median(goal))
            out.setdefault("multi_fidelity", {})[strategy] = {
                "against": reference, "hours": at, "median": float(np.median(reached)),
                "target_median": float(np.median(goal)), "p_less": p, "met": met}
            out["lines"].append(
                f"{strategy} at {at:.1f} simulated training hours ({MF_TIME_SHARE:.0%} of {MF_BUDGET} full-fidelity "
                f"evaluations): median HV share {np.median(reached):.3f} [{np.quantile(reached, 0.25):.3f}, "
                f"{np.quantile(reached, 0.75):.3f}] vs {reference} at {MF_BUDGET}: {np.median(goal):.3f} "
                f"(one-sided Mann-Whitney p that {strategy} is lower: {p:.2g}): {'met' if met else 'missed'}")
    return out


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


def markdown(summary: Dict[str, Any], budgets: Sequence[int], seeds: Sequence[int], errors: Dict[str, str]) -> str:
    lines = [f"NB201 search quality, seeds {seeds[0]}..{seeds[-1]} (fewer where the seeds column says)", "",
             "| strategy | budget | seeds | HV share median [IQR] | regret pts median [IQR] | p vs random (HV, regret) | "
             "p vs best optuna (HV, regret) |", "|---|---|---|---|---|---|---|"]
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
            lines.append(f"| {strategy} | {budget} | {hv['n']} | {hv['median']:.3f} [{hv['q25']:.3f}, {hv['q75']:.3f}] | "
                         f"{rg['median']:.2f} [{rg['q25']:.2f}, {rg['q75']:.2f}] | {cells[0]} | {cells[1]} |")
    against = {b: row[str(b)]["vs_best_optuna"]["against"] for row in summary.values()
               for b in budgets if "vs_best_optuna" in row.get(str(b), {})}
    if against:
        lines.append("\nbest optuna sampler (by median HV share): "
                     + ", ".join(f"{against[b]} at {b}" for b in budgets if b in against))
    for strategy, error in errors.items():
        lines.append(f"\n{strategy}: not run on nasbench201 ({error})")
    return "\n".join(lines)


def plot(scores: Dict[str, Dict[Any, Dict[str, List[float]]]], xs: Sequence[float], path: Path, xlabel: str) -> None:
    import matplotlib
    import matplotlib.ticker

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
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap on a short log axis
    ax.set_xlabel(xlabel)
    ax.set_ylabel("HV share of the true front (median, IQR)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
