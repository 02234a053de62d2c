"""Post-hoc analysis of every network a run trained (MENNDL, paper 003, section V and table I).

``hostside runs analyze RUN`` takes each trained candidate's ONNX file and measures, on this
host: inference time over the whole validation split at batch 100 (as MENNDL measured it) and
at batch 1, the parameter count, and energy per inference when a power source is present
(RAPL, an INA2xx on hwmon, a command printing watts, or ``nvidia-smi``; sampled every 100 ms
during the timed batch-100 pass by ``device_agent.power`` and integrated), each divided by the
number of validation images. Per metric it finds the Pareto front of accuracy vs the metric, the
lowest-metric model, the most accurate model and the best trade-off, labels them A, B, ... in a
three-panel PNG and writes a table like the paper's table I (``analysis.json`` and ``analysis.md``).

Best trade-off: the smallest weighted Euclidean distance to the ideal point (metric 0, accuracy
100 %), with the metric divided by its largest value over all networks (so it lies in [0, 1])
and the error (1 - accuracy) in [0, 1] as it is; weights 0.5 / 0.5 unless given.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside.errors import UserError

#: MENNDL's timing batch; batch 1 is what an edge board sees.
BATCH = 100
POWER_INTERVAL_S = 0.1
METRICS = (("time_per_image_ms", "inference time per image at batch 100 (ms)"),
           ("params", "parameters"),
           ("energy_per_image_mj", "energy per inference (mJ)"))
NVIDIA_SMI = "nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits"


def open_power(spec: Optional[str], sysfs_root: Path):
    """The power source to sample (None when the host has none): ``spec`` as device_agent
    takes it, else the first readable RAPL / INA2xx source, else nvidia-smi when installed."""
    from device_agent.power import PowerError, available_sources, open_source

    try:
        if spec:
            source = open_source(spec, sysfs_root)
        else:
            found = [s for s in available_sources(sysfs_root) if s["readable"]]
            if found:
                source = open_source(found[0]["spec"], sysfs_root)
            elif shutil.which("nvidia-smi"):
                source = open_source(f"cmd:{NVIDIA_SMI}", sysfs_root)
            else:
                return None
    except PowerError as exc:
        raise UserError(f"power source: {exc}") from None
    if hasattr(source, "read_w"):
        source.interval_s = POWER_INTERVAL_S  # meters: one reading every 100 ms, trapezoid-integrated
    return source


def time_model(onnx_path: Path, x: np.ndarray, batch: int, power=None) -> Dict[str, Any]:
    """Run the whole array through the model at ``batch``; seconds, and joules when sampled."""
    import onnxruntime as ort

    from device_agent.power import PowerSampler

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batches = [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x), batch)]
    session.run(None, {name: batches[0]})  # warm-up: first-run allocation is not inference time
    logits: List[np.ndarray] = []
    sampler = PowerSampler(power) if power is not None else None
    window_start = time.perf_counter()
    if sampler is not None:
        sampler.__enter__()
    started = time.perf_counter()
    try:
        for b in batches:
            logits.append(session.run(None, {name: b})[0])
    finally:
        seconds = time.perf_counter() - started
        if sampler is not None:
            sampler.__exit__(None, None, None)
    energy_j = None
    if sampler is not None:
        # Why mean power x timed seconds: the sampler's window also holds up to one 100 ms
        # sampling interval after the last batch (stopping the thread); a short pass would be
        # charged for that idle tail. The mean is taken over a window measured here, around the
        # whole integration: PowerSampler's own duration starts after its first reading, so a
        # stall between the two (a loaded host) would inflate its avg_w.
        sampled = sampler.result()
        energy_j = sampled["energy_j"] / (time.perf_counter() - window_start) * seconds
    return {"seconds": seconds, "energy_j": energy_j, "logits": np.concatenate(logits)}


def analyze_run(run_dir: Path, power_spec: Optional[str] = None, sysfs_root: Path = Path("/"),
                weights: Tuple[float, float] = (0.5, 0.5), progress=print) -> Dict[str, Any]:
    """Measure every trained network of the run, write analysis.json / .md / .png; return the json."""
    from hostside.journal import Journal
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import Split

    journal = Journal.open(run_dir)
    try:
        data = journal.meta("dataset") or {}
        rows = [r for r in journal.candidates() if r.get("onnx_path") and (run_dir / r["onnx_path"]).is_file()]
    finally:
        journal.close()
    if not rows:
        raise UserError(f"{run_dir}: no trained network with an ONNX file to analyse; run the search first")
    dataset = load_dataset(data.get("source") or data.get("name") or "digits")
    val = Split.load(run_dir / "split.json").val
    x, y = dataset.x[val], dataset.y[val]
    power = open_power(power_spec, sysfs_root)
    networks = []
    for n, row in enumerate(rows, 1):
        onnx_path = run_dir / row["onnx_path"]
        big = time_model(onnx_path, x, BATCH, power)
        single = time_model(onnx_path, x, 1)
        networks.append({
            "id": row["id"], "onnx": row["onnx_path"], "params": int(row["params"]),
            "accuracy": float((big["logits"].argmax(1) == y).mean()),
            "time_per_image_ms": 1e3 * big["seconds"] / len(x),
            "time_per_image_batch1_ms": 1e3 * single["seconds"] / len(x),
            "energy_per_image_mj": None if big["energy_j"] is None else 1e3 * big["energy_j"] / len(x),
        })
        progress(f"analyzed {n}/{len(rows)}: candidate {row['id']} accuracy {networks[-1]['accuracy']:.3f}, "
                 f"{networks[-1]['time_per_image_ms']:.4f} ms/image")
    result = {"run": str(run_dir), "images": int(len(x)), "batch": BATCH,
              "power_source": None if power is None else power.name,
              "tradeoff": {"weights": {"metric": weights[0], "error": weights[1]},
                           "normalisation": "metric / max(metric) over all networks; error = 1 - accuracy"},
              "networks": networks, "metrics": {}}
    label = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for key, _ in METRICS:
        result["metrics"][key] = summarise(networks, key, weights, label)
    (run_dir / "analysis.json").write_text(json.dumps(result, indent=1) + "\n")
    (run_dir / "analysis.md").write_text(markdown(result))
    plot(result, run_dir / "analysis.png")
    return result


def summarise(networks: Sequence[Dict[str, Any]], key: str, weights: Tuple[float, float], label) -> Dict[str, Any]:
    """Front, lowest-metric, most accurate and best trade-off for one metric (labels shared across panels)."""
    from hostside.metrics import non_dominated

    have = [net for net in networks if net.get(key) is not None]
    if not have:
        return {"available": False, "front": [], "picks": []}
    F = np.array([[float(net[key]), 1.0 - net["accuracy"]] for net in have])
    front = [have[i]["id"] for i in non_dominated(F)]
    scale = F[:, 0].max() or 1.0
    distance = np.sqrt(weights[0] * (F[:, 0] / scale) ** 2 + weights[1] * F[:, 1] ** 2)
    picks = []
    for role, index in (("lowest " + key, int(np.lexsort((F[:, 1], F[:, 0]))[0])),
                        ("most accurate", int(np.lexsort((F[:, 0], F[:, 1]))[0])),
                        ("best trade-off", int(np.argmin(distance)))):
        net = have[index]
        picks.append({"label": next(label), "role": role, "id": net["id"], "accuracy": net["accuracy"],
                      key: net[key], "params": net["params"], "time_per_image_ms": net["time_per_image_ms"],
                      "time_per_image_batch1_ms": net["time_per_image_batch1_ms"],
                      "energy_per_image_mj": net["energy_per_image_mj"], "distance": float(distance[index])})
    return {"available": True, "front": front, "picks": picks}


def markdown(result: Dict[str, Any]) -> str:
    """Table I of the paper: one row per labelled model."""
    lines = [f"# Post-hoc analysis of {len(result['networks'])} networks", "",
             f"{result['images']} validation images; timed at batch {result['batch']} and 1; power source: "
             f"{result['power_source'] or 'none on this host (energy not measured)'}.",
             f"Best trade-off: weighted Euclidean distance to (metric 0, accuracy 100 %), weights "
             f"{result['tradeoff']['weights']}, {result['tradeoff']['normalisation']}.", "",
             "| label | metric | role | candidate | accuracy | ms/image b100 | ms/image b1 | params | mJ/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for key, info in result["metrics"].items():
        for p in info["picks"]:
            energy = "-" if p["energy_per_image_mj"] is None else f"{p['energy_per_image_mj']:.4f}"
            lines.append(f"| {p['label']} | {key} | {p['role']} | {p['id']} | {100 * p['accuracy']:.2f} % | "
                         f"{p['time_per_image_ms']:.4f} | {p['time_per_image_batch1_ms']:.4f} | {p['params']} | {energy} |")
        if not info["available"]:
            lines.append(f"| - | {key} | not measured on this host | | | | | | |")
    return "\n".join(lines) + "\n"


def plot(result: Dict[str, Any], path: Path) -> None:
    """Accuracy vs each metric, all networks grey, the front joined, the picks labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_id = {net["id"]: net for net in result["networks"]}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (key, title) in zip(axes, METRICS):
        info = result["metrics"][key]
        ax.set_title(title)
        ax.set_xlabel(title)
        ax.set_ylabel("accuracy (%)")
        if not info["available"]:
            ax.text(0.5, 0.5, "no power source on this host", ha="center", transform=ax.transAxes)
            continue
        have = [n for n in result["networks"] if n.get(key) is not None]
        ax.scatter([n[key] for n in have], [100 * n["accuracy"] for n in have], s=12, color="0.6")
        front = sorted((by_id[i] for i in info["front"]), key=lambda n: n[key])
        ax.plot([n[key] for n in front], [100 * n["accuracy"] for n in front], "-o", color="tab:blue", ms=4)
        for pick in info["picks"]:
            ax.annotate(pick["label"], (pick[key], 100 * pick["accuracy"]), xytext=(4, 4),
                        textcoords="offset points", fontweight="bold", color="tab:red")
        if key == "params" and all(n[key] > 0 for n in have):
            ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def register_runs_analyze(runs_sub: Any) -> None:
    """``hostside runs analyze RUN [--board local] [--power SPEC] [--sysfs-root DIR]``."""
    analyze = runs_sub.add_parser("analyze", help="inference time, params and energy of every trained network "
                                                  "(MENNDL's post-hoc analysis): analysis.json/.md/.png")
    analyze.add_argument("run", help="run directory or name under ./runs")
    analyze.add_argument("--board", default="local", help="where to time the networks (this host: local)")
    analyze.add_argument("--power", help="power source: rapl, rapl:package, hwmon[:hwmonN], cmd:COMMAND "
                                         "(default: the first one found, else nvidia-smi when installed)")
    analyze.add_argument("--sysfs-root", type=Path, default=Path("/"), help="root of /sys (for tests)")
    analyze.add_argument("--weights", default="0.5,0.5", help="trade-off weights metric,error (default 0.5,0.5)")
    analyze.set_defaults(handler=_run_analyze)


def _run_analyze(args: Any) -> int:
    import sys

    from hostside.search.run import find_run

    if args.board != "local":
        raise UserError(f"runs analyze times the networks on this host; --board {args.board!r} is not supported yet "
                        f"(use --board local, or copy the run to the board's host)")
    try:
        weights = tuple(float(w) for w in args.weights.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"--weights {args.weights!r}: give two non-negative numbers metric,error, e.g. 0.5,0.5")
    run_dir = find_run(args.run)
    result = analyze_run(run_dir, args.power, args.sysfs_root, weights,
                         progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(markdown(result))
    print(f"wrote {run_dir}/analysis.json, analysis.md, analysis.png")
    return 0
