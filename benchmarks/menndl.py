"""MENNDL's post-hoc analysis on real data (Young et al., "Evolving Energy Efficient CNNs", sections IV-V).

    python benchmarks/menndl.py [--dataset '/usr/share/datasets/fashion-mnist?subset=6000']
                                [--budget 400] [--epochs 2] [--population 8] [--seed 0]
                                [--search-minutes 22] [--hard-minutes 28] [--out /tmp/menndl_exp]
                                [--report docs/results/menndl.md]

One experiment, end to end, with the project's own commands:

1. a real Dask cluster on loopback: ``dask scheduler`` and two ``dask worker`` processes
   (separate processes, one thread each, free ports; ``hostside.search.loopback_cluster``,
   which starts them exactly as docs/cluster.md tells a user to);
2. ``hostside search --strategy menndl --cluster tcp://... --objectives
   val_accuracy,latency_ms,params``: MENNDL's asynchronous GA (steady-state, one child per freed
   worker slot), fitness = validation accuracy; the test split is used for nothing but the
   re-trained front's report and the test column below;
3. the scheduler and workers are killed (in a ``finally``), then ``hostside runs analyze RUN``
   times every trained network over the validation split at batch 100 (the paper's inference
   time) and batch 1, counts params and reads energy where the host has a power source;
4. from ``RUN/analysis.json``: per metric, the most accurate network, the lowest-metric one and
   the best trade-off (weighted distance to the ideal point, as ``runs analyze`` computes it),
   whether the best trade-off is a different network per metric, how far it is from the most
   accurate one (accuracy gap in points, metric ratio), the cheapest network within
   ``--gap-points`` of the most accurate (the conclusion's "one that will perform almost as
   well"), the picks re-timed ``--repeats`` times (how much of a time ratio is noise on this
   shared host), each pick's test accuracy (evaluated once, used in no choice), and, as a
   sensitivity check kept out of the verdicts, the best trade-off with the metric min-max
   normalised on a log scale instead of divided by its maximum.

``--report`` writes all of it as markdown (the commands, settings, data and split, the tables,
a verdict per claim with its numbers) with a PNG beside it (same name, ``.png``). A finished
search or analysis under ``--out`` is reused (``OUT/run``), so a report can be rewritten
without training again; ``--fresh`` starts over.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hostside.search.loopback_cluster import LoopbackCluster, cluster_env  # noqa: E402

DEFAULT_DATASET = "/usr/share/datasets/fashion-mnist?subset=6000"
DEFAULT_CALIBRATION = REPO / "hostside" / "calibration_data" / "amd-epyc-2c-x86_64-ort1.31.1-threads1" / "calibration.json"
OBJECTIVES = "val_accuracy,latency_ms,params"

#: The metrics compared: (key in analysis.json, label, unit, from runs analyze's own picks).
METRICS = (
    ("time_per_image_ms", "inference time per image, batch 100 (the paper's)", "ms", True),
    ("params", "parameters (the paper's model size)", "", True),
    ("energy_per_image_mj", "energy per inference (the paper's)", "mJ", True),
    ("time_per_image_batch1_ms", "inference time per image, batch 1 (edge; not in the paper)", "ms", False),
)

#: The paper's table I (accuracy %, inference time s over the validation set, params, mJ per
#: inference): the most accurate model and the best trade-off of each metric, per dataset.
PAPER = {
    "CIFAR-10": {"most accurate": "B", "models": {"A": (80.24, 3.39, 1070311, 16.05), "B": (81.82, 6.85, 25506331, 33.68)},
                 "best trade-off": {"time": "A", "params": "A", "energy": "A"}},
    # The paper labels C-F and G-J without saying in the text which letter is which metric's best
    # trade-off, except F (energy, CIFAR-100) and I (params, CINIC); only those are used below.
    "CIFAR-100": {"most accurate": "D", "models": {"D": (53.76, 3.72, 3504234, 53.77), "F": (51.19, 3.41, 4079375, 15.83)},
                  "best trade-off": {"energy": "F"}},
    "CINIC-10": {"most accurate": "H", "models": {"H": (71.41, 31.99, 30105165, 19.755), "I": (71.09, 28.56, 1355427, 42.03)},
                 "best trade-off": {"params": "I"}},
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())} UTC] {message}", flush=True)


def stream(command: List[str], log_path: Path, prefix: str, deadline_s: Optional[float] = None,
           env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run ``command``, printing and logging every line; SIGINT it (hostside's Ctrl-C: it stops
    within seconds and keeps what finished) once ``deadline_s`` seconds have passed."""
    started = time.perf_counter()
    interrupted = threading.Event()
    with log_path.open("a") as handle:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                   cwd=REPO)

        def watchdog() -> None:
            if deadline_s is None:
                return
            while process.poll() is None:
                if time.perf_counter() - started > deadline_s:
                    log(f"{prefix}: past the hard limit of {deadline_s / 60:.0f} min, sending SIGINT")
                    interrupted.set()
                    process.send_signal(signal.SIGINT)
                    try:
                        process.wait(120)
                    except subprocess.TimeoutExpired:
                        process.kill()
                    return
                time.sleep(2)

        guard = threading.Thread(target=watchdog, daemon=True)
        guard.start()
        try:
            for line in process.stdout:
                handle.write(line)
                handle.flush()
                print(f"  {prefix}| {line.rstrip()}", flush=True)
        finally:
            if process.poll() is None:
                process.wait()
    return {"rc": process.returncode, "seconds": time.perf_counter() - started, "interrupted": interrupted.is_set()}


def loadavg() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


# -- the experiment ----------------------------------------------------------------------------

def search_command(args: argparse.Namespace, address: str, run_dir: Path, config: Path) -> List[str]:
    return ["hostside", "search", "--strategy", "menndl", "--cluster", address, "--dataset", args.dataset,
            "--objectives", OBJECTIVES, "--budget", str(args.budget), "--population", str(args.population),
            "--epochs", str(args.epochs), "--final-epochs", str(args.final_epochs or args.epochs),
            "--final-models", str(args.final_models), "--seed", str(args.seed),
            "--calibration", str(args.calibration), "--config", str(config), "--out", str(run_dir)]


def run_search(args: argparse.Namespace, out: Path, run_dir: Path, state: Dict[str, Any]) -> None:
    """Scheduler + 2 workers, the search on them, the cluster killed whatever happens."""
    config = out / "menndl.toml"
    config.write_text("# written by benchmarks/menndl.py: a wall-clock cap on the search phase (no flag for it)\n"
                      f"search_minutes = {float(args.search_minutes)}\n")
    cluster_root = out / "cluster"
    shutil.rmtree(cluster_root, ignore_errors=True)
    cluster_root.mkdir(parents=True)
    cluster = LoopbackCluster(cluster_root)
    try:
        log("starting a dask scheduler on 127.0.0.1 (free port) and 2 dask workers (one thread each)")
        cluster.start("w0", "w1")
        log(f"cluster up at {cluster.address}: scheduler pid {cluster.scheduler.pid}, workers "
            f"{', '.join(f'{n} pid {p.pid}' for n, p in cluster.workers.items())}")
        command = search_command(args, cluster.address, run_dir, config)
        state["search_command"] = shlex.join(command)
        state["cluster"] = {"address": cluster.address, "workers": sorted(cluster.workers)}
        state["load_before_search"] = loadavg()
        log(f"running: {state['search_command']}")
        result = stream([sys.executable, "-m", "hostside", *command[1:]], out / "search.log", "search",
                        deadline_s=60 * args.hard_minutes, env=cluster_env())
        state["search"] = result
        state["load_after_search"] = loadavg()
        log(f"search ended: exit {result['rc']} after {result['seconds'] / 60:.1f} min"
            + (" (interrupted at the hard limit)" if result["interrupted"] else ""))
    finally:
        cluster.close()
        log("scheduler and workers killed")


def run_analyze(out: Path, run_dir: Path, state: Dict[str, Any]) -> None:
    command = ["hostside", "runs", "analyze", str(run_dir)]
    state["analyze_command"] = shlex.join(command)
    state["load_before_analyze"] = loadavg()
    log(f"running: {state['analyze_command']}")
    result = stream([sys.executable, "-m", "hostside", *command[1:]], out / "analyze.log", "analyze",
                    env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    state["analyze"] = result
    state["load_after_analyze"] = loadavg()
    if result["rc"] != 0:
        raise SystemExit(f"hostside runs analyze failed (exit {result['rc']}); see {out / 'analyze.log'}")
    log(f"analysis done in {result['seconds']:.0f} s")


# -- reading the run -----------------------------------------------------------------------------

def journal_rows(run_dir: Path) -> List[Dict[str, Any]]:
    from hostside.journal import Journal

    journal = Journal.open(run_dir)
    try:
        return journal.candidates()
    finally:
        journal.close()


def final_models(run_dir: Path) -> List[Dict[str, Any]]:
    path = run_dir / "report.json"
    return json.loads(path.read_text()).get("models", []) if path.is_file() else []


def picks_of(analysis: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Per metric: lowest / most accurate / best trade-off, from ``runs analyze`` (its picks) or,
    for batch 1, by the same function with the same weights."""
    from hostside.analysis import summarise

    weights = (analysis["tradeoff"]["weights"]["metric"], analysis["tradeoff"]["weights"]["error"])
    out = {}
    for key, _, _, own in METRICS:
        info = analysis["metrics"].get(key) if own else summarise(analysis["networks"], key, weights,
                                                                     iter(f"b{i}" for i in range(1, 100)))
        if not info or not info["available"]:
            out[key] = {"available": False}
            continue
        roles = {p["role"].split(" ")[0] if p["role"].startswith("lowest") else p["role"]: p for p in info["picks"]}
        out[key] = {"available": True, "front": info["front"], "lowest": roles["lowest"],
                    "most accurate": roles["most accurate"], "best trade-off": roles["best trade-off"]}
    return out


def almost_as_accurate(networks: Sequence[Dict[str, Any]], key: str, best_accuracy: float, gap_points: float):
    """The network with the lowest ``key`` among those within ``gap_points`` of the most accurate."""
    near = [n for n in networks if n.get(key) is not None and 100 * (best_accuracy - n["accuracy"]) <= gap_points + 1e-9]
    return min(near, key=lambda n: (n[key], -n["accuracy"], n["id"])), near


def log_tradeoff(networks: Sequence[Dict[str, Any]], key: str, weights: Sequence[float]) -> Dict[str, Any]:
    """A sensitivity check, not the paper's or ``runs analyze``'s definition: the best trade-off with
    the metric min-max normalised on a log scale (params and times span decades, so dividing by
    the largest value squeezes almost every network's metric term towards 0)."""
    import math

    have = [n for n in networks if n.get(key) is not None and n[key] > 0]
    logs = [math.log(n[key]) for n in have]
    lo, hi = min(logs), max(logs)
    span = (hi - lo) or 1.0
    distance = [math.sqrt(weights[0] * ((v - lo) / span) ** 2 + weights[1] * (1 - n["accuracy"]) ** 2)
                for v, n in zip(logs, have)]
    return have[min(range(len(have)), key=lambda i: (distance[i], have[i]["id"]))]


def retime(run_dir: Path, analysis: Dict[str, Any], ids: Sequence[int], repeats: int) -> Dict[int, Dict[str, Any]]:
    """Each picked network timed again ``repeats`` times at batch 100 and 1 (as runs analyze does)."""
    from hostside.analysis import time_model
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import Split

    data = load_dataset(analysis_source(run_dir))
    val = Split.load(run_dir / "split.json").val
    x = data.x[val]
    by_id = {n["id"]: n for n in analysis["networks"]}
    out = {}
    for i in ids:
        path = run_dir / by_id[i]["onnx"]
        b100 = [1e3 * time_model(path, x, 100, candidate=i)["seconds"] / len(x) for _ in range(repeats)]
        b1 = [1e3 * time_model(path, x, 1, candidate=i)["seconds"] / len(x) for _ in range(repeats)]
        out[i] = {"time_per_image_ms": b100, "time_per_image_batch1_ms": b1}
    return out


def analysis_source(run_dir: Path) -> str:
    config = json.loads((run_dir / "config.json").read_text())
    return config["dataset"]


def test_accuracies(run_dir: Path, analysis: Dict[str, Any], ids: Sequence[int]) -> Dict[int, float]:
    """Test accuracy of each picked network (search-time weights), for the report only: every
    pick was made on validation figures before this is computed."""
    from hostside.analysis import predict
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import Split

    data = load_dataset(analysis_source(run_dir))
    test = Split.load(run_dir / "split.json").test
    by_id = {n["id"]: n for n in analysis["networks"]}
    return {i: float((predict(run_dir / by_id[i]["onnx"], data.x[test], i).argmax(1) == data.y[test]).mean())
            for i in ids}


def operator_group(operator: str) -> str:
    """MENNDL's three ways to a candidate: a random sample, a crossover then a mutation, a mutation alone."""
    if operator == "sample":
        return "sample"
    return "crossover + mutation" if operator.startswith("crossover") else "mutation"


# -- claims --------------------------------------------------------------------------------------

def comparisons(analysis: Dict[str, Any], picks: Dict[str, Dict[str, Any]], gap_points: float) -> Dict[str, Any]:
    nets = analysis["networks"]
    rows = {}
    for key, label, unit, _ in METRICS:
        p = picks[key]
        if not p["available"]:
            continue
        ma, bt, lo = p["most accurate"], p["best trade-off"], p["lowest"]
        aa, near = almost_as_accurate(nets, key, ma["accuracy"], gap_points)
        spread = max(n[key] for n in near) / max(min(n[key] for n in near), 1e-12)
        weights = (analysis["tradeoff"]["weights"]["metric"], analysis["tradeoff"]["weights"]["error"])
        lg = log_tradeoff(nets, key, weights)
        largest = max((n for n in nets if n.get(key) is not None), key=lambda n: n[key])
        rows[key] = {"label": label, "unit": unit, "ma": ma, "bt": bt, "lo": lo, "aa": aa,
                     "differs": bt["id"] != ma["id"], "gap": 100 * (ma["accuracy"] - bt["accuracy"]),
                     "ratio": ma[key] / max(bt[key], 1e-12), "aa_gap": 100 * (ma["accuracy"] - aa["accuracy"]),
                     "aa_ratio": ma[key] / max(aa[key], 1e-12), "near": len(near), "spread": spread,
                     "log": lg, "log_gap": 100 * (ma["accuracy"] - lg["accuracy"]),
                     "log_ratio": ma[key] / max(lg[key], 1e-12), "largest": largest,
                     "ma_term": weights[0] * (ma[key] / largest[key]) ** 2,
                     "point_term": weights[1] * ((1 - ma["accuracy"] + 0.01) ** 2 - (1 - ma["accuracy"]) ** 2)}
    return rows


def claim_verdicts(rows: Dict[str, Any], picks: Dict[str, Any], gap_points: float, ratio: float,
                   classes: int, noise: Dict[str, float]) -> List[Dict[str, Any]]:
    paper_keys = [k for k in ("time_per_image_ms", "params", "energy_per_image_mj") if k in rows]
    short = {"time_per_image_ms": "time b100", "params": "params", "energy_per_image_mj": "energy",
             "time_per_image_batch1_ms": "time b1"}
    out = []

    bt_ids = {k: rows[k]["bt"]["id"] for k in paper_keys}
    distinct = len(set(bt_ids.values()))
    with_b1 = {**bt_ids, **({"time_per_image_batch1_ms": rows["time_per_image_batch1_ms"]["bt"]["id"]}
                            if "time_per_image_batch1_ms" in rows else {})}
    out.append({
        "claim": "(a) the best trade-off network is not the same for every metric (section IV: the same model A "
                 "for all three metrics on CIFAR-10, three different models on CIFAR-100 and on CINIC-10)",
        "holds": distinct > 1,
        "numbers": f"best trade-off per metric over the paper's metrics measured here: "
                   + ", ".join(f"{short[k]} -> candidate {v}" for k, v in bt_ids.items())
                   + f" ({distinct} distinct network(s) over {len(bt_ids)} metrics); with batch-1 time as a further "
                   f"metric: {len(set(with_b1.values()))} distinct over {len(with_b1)}"})

    parts, ok = [], True
    for k in paper_keys:
        r = rows[k]
        good = r["gap"] <= gap_points and r["ratio"] >= ratio
        beyond = ""
        if k in noise:
            beyond = f"; re-timing spread of these two networks up to {100 * noise[k]:.0f} %"
        ok &= good
        parts.append(f"{short[k]}: best trade-off {r['bt']['id']} vs most accurate {r['ma']['id']}, "
                     f"{r['gap']:.2f} points less accurate, {r['ratio']:.2f}x {'lower' if r['ratio'] >= 1 else 'higher'} "
                     f"{short[k]}{beyond} -> {'yes' if good else 'no'}")
    out.append({
        "claim": f"(b) the best trade-off network performs almost as well as the most accurate one (within "
                 f"{gap_points:g} points) and is at least {ratio:g}x better in its metric (section V: \"often a 2x "
                 f"improvement ... between the networks with the highest accuracy and one that will perform almost "
                 f"as well\"; table I: CIFAR-10 A vs B 1.58 points, 2.0x time, 23.8x params, 2.1x energy)",
        "holds": ok, "numbers": "; ".join(parts)})

    parts, ok = [], True
    for k in paper_keys:
        r = rows[k]
        good = r["aa_ratio"] >= ratio
        ok &= good
        parts.append(f"{short[k]}: candidate {r['aa']['id']} is {r['aa_gap']:.2f} points below the most accurate "
                     f"and {r['aa_ratio']:.2f}x lower in {short[k]} ({r['near']} networks within {gap_points:g} points, "
                     f"{short[k]} spanning {r['spread']:.1f}x among them) -> {'yes' if good else 'no'}")
    out.append({
        "claim": f"(c) the same conclusion read directly: among the networks within {gap_points:g} points of the "
                 f"most accurate one, the cheapest is at least {ratio:g}x better in each metric than the most "
                 f"accurate one (the abstract: the best performing networks have radically different "
                 f"computational characteristics)",
        "holds": ok, "numbers": "; ".join(parts)})

    parts, ok = [], True
    for k in paper_keys:
        acc = rows[k]["lo"]["accuracy"]
        good = acc <= 2.0 / classes
        ok &= good
        parts.append(f"{short[k]}: lowest is candidate {rows[k]['lo']['id']} at {100 * acc:.1f} % "
                     f"-> {'yes' if good else 'no'}")
    out.append({
        "claim": f"(d) the networks with the lowest metric have extremely low accuracy, often as bad as guessing "
                 f"(section IV); rule: at most twice chance ({200.0 / classes:.0f} % for {classes} classes)",
        "holds": ok, "numbers": "; ".join(parts) + f"; chance is {100.0 / classes:.0f} %"})
    return out


# -- the PNG -------------------------------------------------------------------------------------

def plot(path: Path, analysis: Dict[str, Any], picks: Dict[str, Any], rows: Dict[str, Any],
         journal: List[Dict[str, Any]], title: str, gap_points: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nets = analysis["networks"]
    by_id = {n["id"]: n for n in nets}
    keys = [k for k, *_ in METRICS if k in rows]
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(5 * (len(keys) + 1), 4.6))
    for ax, key in zip(axes, keys):
        r = rows[key]
        ax.scatter([n[key] for n in nets], [100 * n["accuracy"] for n in nets], s=14, color="0.65",
                   label=f"all {len(nets)} networks")
        front = sorted((by_id[i] for i in picks[key]["front"]), key=lambda n: n[key])
        ax.plot([n[key] for n in front], [100 * n["accuracy"] for n in front], "-", color="tab:blue", lw=1,
                label="Pareto front")
        ax.axhspan(100 * r["ma"]["accuracy"] - gap_points, 100 * r["ma"]["accuracy"], color="tab:orange", alpha=0.08,
                   label=f"within {gap_points:g} points of the most accurate")
        for pick, marker, colour, name, size in (
                (r["lo"], "X", "black", "lowest metric", 70), (r["aa"], "s", "tab:orange", "cheapest within the band", 80),
                (r["log"], "^", "tab:purple", "best trade-off, log-scaled metric (sensitivity)", 70),
                (r["ma"], "*", "tab:red", "most accurate", 180), (r["bt"], "D", "tab:green", "best trade-off", 70)):
            ax.scatter([pick[key]], [100 * pick["accuracy"]], marker=marker, s=size, color=colour,
                       edgecolor="white", linewidth=0.6, zorder=5, label=f"{name} (#{pick['id']})")
        if all(n[key] > 0 for n in nets):
            ax.set_xscale("log")  # params and times span decades
        ax.set_xlabel(r["label"] + (f" ({r['unit']}, log)" if r["unit"] else ", log"), fontsize=9)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="best", framealpha=0.85)
    ax = axes[-1]
    born = sorted((r for r in journal if r.get("val_accuracy") is not None), key=lambda r: r["id"])
    colours = {"sample": "0.5", "crossover + mutation": "tab:purple", "mutation": "tab:cyan"}
    for op in colours:
        mine = [r for r in born if operator_group(r["operator"]) == op]
        if not mine:
            continue
        ax.scatter([r["id"] for r in mine], [100 * r["val_accuracy"] for r in mine], s=14,
                   color=colours.get(op, "tab:cyan"), label=op)
    best, running = -1.0, []
    for r in born:
        best = max(best, r["val_accuracy"])
        running.append(100 * best)
    ax.plot([r["id"] for r in born], running, color="tab:red", lw=1.2, label="best so far")
    ax.set_xlabel("candidate (birth order)")
    ax.set_ylabel("validation accuracy after the search's training (%)")
    ax.set_title("MENNDL's GA over the run", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the report ----------------------------------------------------------------------------------

def fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "params":
        return f"{int(value):,}"
    return f"{value:.4f}"


def paper_reference() -> str:
    lines = ["| dataset | most accurate | best trade-off | for | accuracy gap (points) | time ratio | params ratio | energy ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in PAPER.items():
        ma = d["models"][d["most accurate"]]
        by_model: Dict[str, List[str]] = {}
        for metric, model in d["best trade-off"].items():
            by_model.setdefault(model, []).append(metric)
        for model, metrics in by_model.items():
            bt = d["models"][model]
            lines.append(f"| {name} | {d['most accurate']} ({ma[0]:.2f} %) | {model} ({bt[0]:.2f} %) | "
                         f"{', '.join(metrics)} | {ma[0] - bt[0]:.2f} | {ma[1] / bt[1]:.2f}x | {ma[2] / bt[2]:.2f}x | "
                         f"{ma[3] / bt[3]:.2f}x |")
    return "\n".join(lines)


def write_report(path: Path, png: Path, args: argparse.Namespace, state: Dict[str, Any], analysis: Dict[str, Any],
                 picks: Dict[str, Any], rows: Dict[str, Any], verdicts: List[Dict[str, Any]],
                 journal: List[Dict[str, Any]], tests: Dict[int, float], timings: Dict[int, Dict[str, Any]],
                 split: Dict[str, Any], finals: List[Dict[str, Any]], benchmark_command: str) -> None:
    status = Counter(r["status"] for r in journal)
    operators = Counter(operator_group(r["operator"]) for r in journal if r["status"] == "measured")
    workers = Counter((r.get("train_metrics") or {}).get("worker", "?") for r in journal if r["status"] == "measured")
    nets = analysis["networks"]
    search = state.get("search", {})
    analyze = state.get("analyze", {})
    energy = rows.get("energy_per_image_mj")
    power = analysis.get("power_source")
    lines = [
        "# MENNDL's post-hoc analysis on Fashion-MNIST (Young et al., *Evolving Energy Efficient CNNs*)",
        "",
        "Written by `benchmarks/menndl.py` from its own run; nothing below was edited by hand.",
        "",
        "```",
        benchmark_command,
        "```",
        "",
        "What it ran, in order (the scheduler's port is a free one chosen at start):",
        "",
        "```",
        f"python -m distributed.cli.dask_scheduler --host 127.0.0.1 --port 0 --no-dashboard --scheduler-file S.json"
        f"    # = dask scheduler",
        f"python -m distributed.cli.dask_worker {state.get('cluster', {}).get('address', 'tcp://...')} --nthreads 1 "
        f"--no-nanny --no-dashboard --name w0    # = dask worker, and again as w1 (OMP_NUM_THREADS=1)",
        state.get("search_command", "(search reused)"),
        "# scheduler and workers killed here",
        state.get("analyze_command", "(analysis reused)"),
        "```",
        "",
        f"**Data.** `{args.dataset}`: a seeded subset (seed 0) of Debian's `dataset-fashion-mnist` (train + "
        f"t10k files), {split['num_examples']:,} images, 10 classes, 1x28x28. Split (`split.json`, seed "
        f"{args.seed}): {split['train']:,} train, {split['val']:,} validation ({split['val_fraction']:.0%} of the "
        f"training part), {split['test']:,} test (the subset's images from the official t10k file). Every choice "
        f"reads validation accuracy: the GA's fitness, `runs analyze`'s accuracy axis and every pick below. The "
        f"test column is each pick's ONNX file evaluated once on the test part after all picks were made.",
        "",
        f"**Settings.** Strategy and space `menndl` (defaults: 16 feature + 16 classifier switchable positions, "
        f"feature_on 0.25, classifier_on 0.1; tournament 2, crossover_rate 0.5; children from a fresh "
        f"initialisation), steady-state policy on the cluster, population {args.population}, budget "
        f"{args.budget} trainings of {args.epochs} epoch(s) each (the project's default training: Adam at the "
        f"genotype's learning rate, cosine schedule, batches of 64), seed {args.seed}, a wall-clock cap `search_minutes = {args.search_minutes:g}` (config file), front "
        f"re-training of {args.final_models} model(s) for {args.final_epochs or args.epochs} epoch(s) "
        f"(`report.json`, not used here). `latency_ms` (an objective the search journals, not the fitness) is "
        f"the local board's batch-1 median. `--calibration` names the shipped AMD EPYC set "
        f"(onnxruntime 1.31.1; this host runs 1.32.0, so the search warns it is foreign): it only gives "
        f"`predicted_latency_ms` and the pre-training filter, which has no latency budget to judge here, so "
        f"no candidate is rejected on it, and it saves a quick calibration of several minutes.",
        "",
        f"**Cluster.** Scheduler {state.get('cluster', {}).get('address', '?')}, workers "
        f"{', '.join(state.get('cluster', {}).get('workers', []))}, each its own process with one thread. "
        f"Trainings per worker (`train_metrics.worker`): "
        + ", ".join(f"{w}: {n}" for w, n in sorted(workers.items())) + ".",
        "",
        f"**Time.** Search (cluster trainings, board measurements, front re-training) "
        f"{search.get('seconds', 0) / 60:.1f} min"
        + (" (stopped at the hard limit)" if search.get("interrupted") else "")
        + f", `runs analyze` {analyze.get('seconds', 0):.0f} s, whole command "
        f"{state.get('wall_s', 0) / 60:.1f} min. 1/5/15-min load average: {state.get('load_before_search', '?')} "
        f"before the search, {state.get('load_after_search', '?')} after it, {state.get('load_before_analyze', '?')} "
        f"before the analysis, on {os.cpu_count()} cores.",
        "",
        f"**Run.** {len(journal)} candidates of a budget of {args.budget} (the search ended on: "
        f"{state.get('stopped_by') or 'its budget'}): "
        + ", ".join(f"{n} {s}" for s, n in sorted(status.items()))
        + f"; trained ones by operator: " + ", ".join(f"{op} {n}" for op, n in sorted(operators.items()))
        + f". `runs analyze` measured {len(nets)} networks over {analysis['images']} validation images at batch "
        f"{analysis['batch']} and 1; power source: {power or 'none on this host (no RAPL, hwmon or nvidia-smi), so energy per inference is not measured'}.",
        "",
        "**Latency caveat.** The `latency_ms` and inference-time figures were measured on a 2-core machine shared "
        "with other work at times, so treat them as indicative (the re-timing table shows their spread); "
        "accuracy and parameter counts are not affected.",
        "",
        "## Table I of this run: per metric, the lowest-metric, most accurate and best trade-off networks",
        "",
        f"Best trade-off as `runs analyze` defines it (and the paper: smallest weighted Euclidean distance to "
        f"metric 0, accuracy 100 %): weights {analysis['tradeoff']['weights']}, "
        f"{analysis['tradeoff']['normalisation']}. Batch-1 time is not one of the paper's metrics; its picks are "
        f"computed here by the same function (`hostside.analysis.summarise`).",
        "",
        "| metric | role | candidate | val accuracy | test accuracy (no choice) | ms/image b100 | ms/image b1 | params | mJ/image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, label, unit, _ in METRICS:
        if not picks[key]["available"]:
            lines.append(f"| {key} | not measured: {('no power source on this host' if 'energy' in key else '-')} | | | | | | | |")
            continue
        for role in ("lowest", "most accurate", "best trade-off"):
            p = picks[key][role]
            lines.append(f"| {key} | {role} | {p['id']} | {100 * p['accuracy']:.2f} % | {100 * tests[p['id']]:.2f} % | "
                         f"{p['time_per_image_ms']:.4f} | {p['time_per_image_batch1_ms']:.4f} | {p['params']:,} | "
                         f"{fmt('e', p['energy_per_image_mj'])} |")
    lines += [
        "",
        "## Best trade-off against the most accurate network, per metric",
        "",
        f"Gap = most accurate minus the other, in points of validation accuracy; ratio = the most accurate "
        f"network's metric / the other's (above 1: the other is cheaper). \"Cheapest within {args.gap_points:g}\" "
        f"= the lowest-metric network among those within {args.gap_points:g} points of the most accurate "
        f"(the conclusion's \"one that will perform almost as well\").",
        "",
        "| metric | most accurate | best trade-off | a different network? | gap (points) | metric ratio | "
        f"cheapest within {args.gap_points:g} points | its gap | its ratio | networks in the band | metric span in the band |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        lines.append(f"| {key} | {r['ma']['id']} ({100 * r['ma']['accuracy']:.2f} %, {fmt(key, r['ma'][key])}) | "
                     f"{r['bt']['id']} ({100 * r['bt']['accuracy']:.2f} %, {fmt(key, r['bt'][key])}) | "
                     f"{'yes' if r['differs'] else 'no (the same network)'} | {r['gap']:.2f} | {r['ratio']:.2f}x | "
                     f"{r['aa']['id']} ({100 * r['aa']['accuracy']:.2f} %, {fmt(key, r['aa'][key])}) | "
                     f"{r['aa_gap']:.2f} | {r['aa_ratio']:.2f}x | {r['near']} | {r['spread']:.1f}x |")
    if energy is None:
        lines.append("| energy_per_image_mj | not measured: no power source on this host | | | | | | | | | |")
    lines += [
        "",
        "Why the best trade-off is where it is: with the metric divided by its largest value over all networks, "
        "the most accurate network's metric term w·(m/max)² against what one point of accuracy adds to the error "
        "term: " + "; ".join(
            f"{k}: largest {fmt(k, r['largest'][k])} (candidate {r['largest']['id']}, "
            f"{r['largest'][k] / max(r['ma'][k], 1e-12):.0f}x the most accurate network's), metric term "
            f"{r['ma_term']:.5f}, one point {r['point_term']:.5f}" for k, r in rows.items()) + ".",
        "",
        "Sensitivity (not the paper's definition nor `runs analyze`'s, and not used in the verdicts): the same "
        "distance with the metric min-max normalised on a log scale, so that a network 10x cheaper moves as far "
        "at the cheap end as at the expensive one.",
        "",
        "| metric | best trade-off (log scale) | a different network from the most accurate? | gap (points) | metric ratio |",
        "|---|---|---|---|---|",
    ]
    for key, r in rows.items():
        lines.append(f"| {key} | {r['log']['id']} ({100 * r['log']['accuracy']:.2f} %, {fmt(key, r['log'][key])}) | "
                     f"{'yes' if r['log']['id'] != r['ma']['id'] else 'no'} | {r['log_gap']:.2f} | {r['log_ratio']:.2f}x |")
    lines += [
        "",
        "The paper's table I for comparison (the pairs whose roles its text names; ratios = most accurate / best "
        "trade-off; time is seconds over the whole validation set at batch 100 on a V100):",
        "",
        paper_reference(),
        "",
        f"## How much of a time ratio is noise: the picks re-timed {args.repeats} times",
        "",
        "Each picked network timed again over the same validation images, as `runs analyze` times it "
        f"(warm-up run, then the whole split), one after another on this host, at {state.get('retimed_at', '?')} "
        f"(load average {state.get('load_retime', '?')}; the analysis ran at {state.get('analyzed_at', '?')}).",
        "",
        "| candidate | ms/image b100 in analysis.json | re-timed b100: median (min-max) | ms/image b1 in analysis.json | re-timed b1: median (min-max) |",
        "|---|---|---|---|---|",
    ]
    by_id = {n["id"]: n for n in nets}
    for i, t in sorted(timings.items()):
        b100, b1 = t["time_per_image_ms"], t["time_per_image_batch1_ms"]
        lines.append(f"| {i} | {by_id[i]['time_per_image_ms']:.4f} | {statistics.median(b100):.4f} "
                     f"({min(b100):.4f}-{max(b100):.4f}) | {by_id[i]['time_per_image_batch1_ms']:.4f} | "
                     f"{statistics.median(b1):.4f} ({min(b1):.4f}-{max(b1):.4f}) |")
    if finals:
        lines += ["", f"Front re-trained by the search ({args.final_epochs or args.epochs} epoch(s), `report.json`; "
                      f"chosen on validation, test accuracy evaluated once): "
                  + "; ".join(f"candidate {m['id']}: test {100 * m['test_accuracy']:.2f} %, {m['params']:,} params, "
                              f"{fmt('ms', m.get('latency_ms'))} ms batch-1" for m in finals if m.get('test_accuracy') is not None)
                  + "."]
    lines += [
        "",
        f"![accuracy against each metric, picks marked; the GA's accuracy by birth order]({png.name})",
        "",
        f"`{png.name}`: one panel per measured metric, every analysed network grey, the Pareto front of accuracy vs "
        f"the metric in blue, the most accurate network (red star), the metric's best trade-off (green diamond), "
        f"the lowest-metric network (black cross), the sensitivity pick with a log-scaled metric (purple triangle) and the cheapest network within {args.gap_points:g} points of the "
        f"most accurate (orange square, inside the orange band); last panel, validation accuracy of every trained "
        f"candidate by birth order with the best so far.",
        "",
        "## Verdicts",
        "",
        f"Decision rules, fixed before the run: \"almost as well\" = within {args.gap_points:g} points of "
        f"validation accuracy (the paper's \"comparable\" pairs are 0.32 to 2.57 points apart); an improvement "
        f"counts at {args.ratio:g}x (the conclusion's figure). Energy is left out of every claim: it is not "
        f"measured here.",
        "",
    ]
    for v in verdicts:
        lines += [f"- **{v['claim']}: {'holds' if v['holds'] else 'does not hold at this scale'}.**",
                  f"  - {v['numbers']}"]
    lines += [
        "",
        "## What this does not show",
        "",
        f"The scale is far below the paper's: {len(nets)} networks from one run of {args.budget} trainings on "
        f"2 CPU workers instead of hundreds to thousands per run (2 runs x 24 Summit nodes x 6 hours per dataset), "
        f"{args.epochs} epoch(s) per network on {split['train']:,} Fashion-MNIST images instead of full training on "
        f"CIFAR-10/100 and CINIC-10, so accuracies are those of short trainings. With {split['val']:,} validation "
        f"images one network's accuracy has a standard error of about "
        f"{100 * (0.8 * 0.2 / max(split['val'], 1)) ** 0.5:.1f} points at 80 %, so a gap of a point or two "
        f"between two networks is within noise. Inference is timed with onnxruntime on one CPU thread, not on a "
        f"V100 with data loading; a power source was {'used: ' + str(power) if power else 'not available, so the third metric (energy) is missing'}. "
        f"The networks are small (MENNDL's sampling switches few positions on): median "
        f"{statistics.median(n['time_per_image_ms'] for n in nets):.3f} ms per image at batch 100 and "
        f"{statistics.median(n['params'] for n in nets):,.0f} params, so time differences are small in absolute "
        f"terms, where a shared host's noise weighs most.",
        "",
    ]
    path.write_text("\n".join(lines))


# -- main ----------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"dataset source (default {DEFAULT_DATASET!r})")
    parser.add_argument("--budget", type=int, default=400, help="trainings of the search (default 400)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per training (default 2)")
    parser.add_argument("--population", type=int, default=8, help="MENNDL population (default 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--final-models", type=int, default=2, help="front models the search re-trains (default 2)")
    parser.add_argument("--final-epochs", type=int, default=None, help="their epochs (default: --epochs)")
    parser.add_argument("--search-minutes", type=float, default=22.0,
                        help="search_minutes: no new candidate after this many minutes (0: none; default 22)")
    parser.add_argument("--hard-minutes", type=float, default=28.0,
                        help="SIGINT the search after this many minutes, keep what finished (default 28)")
    parser.add_argument("--calibration", type=Path, default=DEFAULT_CALIBRATION,
                        help="calibration.json for the search's predicted latency (default: the shipped AMD EPYC set)")
    parser.add_argument("--gap-points", type=float, default=3.0, help="'almost as accurate' band in points (default 3)")
    parser.add_argument("--ratio", type=float, default=2.0, help="the improvement that counts (default 2x)")
    parser.add_argument("--repeats", type=int, default=5, help="re-timings of each picked network (default 5)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/menndl_exp"), help="work folder (default /tmp/menndl_exp)")
    parser.add_argument("--report", type=Path, default=None, help="write the markdown here, its PNG beside it")
    parser.add_argument("--fresh", action="store_true", help="delete OUT/run first instead of reusing it")
    args = parser.parse_args(argv)
    benchmark_command = "python benchmarks/menndl.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    out = args.out.resolve()
    run_dir = out / "run"
    if args.fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "experiment.json"
    state: Dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() and run_dir.exists() else {}
    started = time.perf_counter()
    log(f"MENNDL experiment: {args.dataset}, budget {args.budget} x {args.epochs} epoch(s), population "
        f"{args.population}; load {loadavg()} on {os.cpu_count()} cores; work folder {out}")

    searched = "search" in state and (run_dir / "journal.sqlite").is_file()
    if searched:
        log(f"reusing the finished search in {run_dir}")
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir)  # an unfinished earlier try: start over (a resume would need the old cluster)
        state = {}
        run_search(args, out, run_dir, state)
        state_path.write_text(json.dumps(state, indent=1))
    analysis_path = run_dir / "analysis.json"
    done = analysis_path.is_file() and json.loads(analysis_path.read_text()).get("complete") and "analyze" in state
    if done:
        log("reusing the finished analysis")
    else:
        if not any(r.get("onnx_path") for r in journal_rows(run_dir)):
            raise SystemExit(f"the search trained no network (see {out / 'search.log'})")
        run_analyze(out, run_dir, state)
    state["wall_s"] = state.get("wall_s_search_and_analysis") or time.perf_counter() - started
    state["wall_s_search_and_analysis"] = state["wall_s"]
    state_path.write_text(json.dumps(state, indent=1))

    analysis = json.loads(analysis_path.read_text())
    journal = journal_rows(run_dir)
    picks = picks_of(analysis)
    rows = comparisons(analysis, picks, args.gap_points)
    ids = sorted({rows[k][role]["id"] for k in rows for role in ("ma", "bt", "lo", "aa", "log")})
    log(f"re-timing the {len(ids)} picked networks {args.repeats} times and evaluating them on the test split")
    state["retimed_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    state["load_retime"] = loadavg()
    state.setdefault("analyzed_at", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(analysis_path.stat().st_mtime)))
    timings = retime(run_dir, analysis, ids, args.repeats)
    tests = test_accuracies(run_dir, analysis, ids)
    noise = {}
    for key in ("time_per_image_ms", "time_per_image_batch1_ms"):
        if key in rows:
            pair = [timings[rows[key][r]["id"]][key] for r in ("ma", "bt")]
            noise[key] = max((max(t) - min(t)) / statistics.median(t) for t in pair)
    from hostside.journal import Journal
    from hostside.train.splits import Split

    loaded = Split.load(run_dir / "split.json")
    split = {"num_examples": loaded.meta.get("num_examples"), "val_fraction": loaded.meta.get("val_fraction", 0.15),
             "train": len(loaded.train), "val": len(loaded.val), "test": len(loaded.test)}
    opened = Journal.open(run_dir)
    try:
        classes = int((opened.meta("dataset") or {}).get("num_classes") or 10)
        state["stopped_by"] = opened.meta("stopped_by")
    finally:
        opened.close()
    verdicts = claim_verdicts(rows, picks, args.gap_points, args.ratio, classes, noise)

    print()
    print(f"{len(analysis['networks'])} networks analysed; best trade-off vs most accurate per metric:")
    for key, r in rows.items():
        print(f"  {key:<26} most accurate #{r['ma']['id']} {100 * r['ma']['accuracy']:.2f} %, best trade-off "
              f"#{r['bt']['id']} {100 * r['bt']['accuracy']:.2f} % (gap {r['gap']:.2f} points, ratio {r['ratio']:.2f}x, "
              f"{'different' if r['differs'] else 'same'}); cheapest within {args.gap_points:g} points #{r['aa']['id']} "
              f"(gap {r['aa_gap']:.2f}, ratio {r['aa_ratio']:.2f}x); log-scale trade-off #{r['log']['id']} "
              f"(gap {r['log_gap']:.2f}, ratio {r['log_ratio']:.2f}x)")
    for v in verdicts:
        print(f"{v['claim']}: {'holds' if v['holds'] else 'does not hold at this scale'}\n  {v['numbers']}")

    png = args.report.with_suffix(".png") if args.report else out / "menndl.png"
    title = (f"MENNDL on {args.dataset} ({split['train']:,} train / {split['val']:,} val): "
             f"{len(analysis['networks'])} networks, {args.epochs} epoch(s) each, 2 Dask workers")
    plot(png, analysis, picks, rows, journal, title, args.gap_points)
    if args.report:
        write_report(args.report, png, args, state, analysis, picks, rows, verdicts, journal, tests, timings, split,
                     final_models(run_dir), benchmark_command)
        log(f"wrote {args.report}")
    log(f"wrote {png}; {(time.perf_counter() - started) / 60:.1f} min in this invocation; load {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
