"""Post-hoc analysis of every network a run trained (MENNDL, Young et al., section V and table I).

``hostside runs analyze RUN`` takes each trained candidate's ONNX file and measures inference
time per image at batch 100 (as MENNDL measured it) and at batch 1, the parameter count, and
energy per inference when a power source is present. Per metric it finds the Pareto front of
accuracy vs the metric, the lowest-metric model, the most accurate model and the best trade-off,
labels them A, B, ... in a three-panel PNG and writes a table like the paper's table I
(``analysis.json`` and ``analysis.md``).

Where the networks are timed (``--board``):

* ``local`` (default): on this host, over the real validation images: the whole split run at
  batch 100 and at batch 1, wall time / images. Energy from a power source of this host (RAPL,
  an INA2xx on hwmon, a command printing watts, or ``nvidia-smi``) sampled every 100 ms during
  the timed batch-100 pass by ``device_agent.power`` and integrated.
* a board of the inventory (``hostside.boards``, over SSH to its device agent): the agent times
  ceil(images / 100) runs at batch 100 and one run per image at batch 1 of its seeded random
  input (latency does not depend on the pixel values); time per image = the mean latency of a
  run / batch, i.e. total time / images as the paper has it. Energy per image = the mean power
  of the agent's batch-100 measurement x that time per image (``--power NAME``, else the first
  readable source the board's ``device-agent info`` lists). Accuracy is still computed on this host with
  onnxruntime over the validation split: the board runs the same ONNX file, which gives the
  same predictions, and the images need not travel to it.

``analysis.json`` is rewritten after every network (``"complete": false`` until the last), so a
failed measurement (one error line naming the candidate and the agent's error code) loses none
of the networks measured before it, and a rerun on the same board reuses them.

Best trade-off: the smallest weighted Euclidean distance to the ideal point (metric 0, accuracy
100 %), with the metric divided by its largest value over all networks (so it lies in [0, 1])
and the error (1 - accuracy) in [0, 1] as it is; weights 0.5 / 0.5 unless given.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from device_agent.protocol import DEFAULT_TIMEOUT_S, LIMIT_OPTION_TABLE, option_type
from hostside.errors import UserError

#: MENNDL's timing batch; batch 1 is what an edge board sees.
BATCH = 100
POWER_INTERVAL_S = 0.1
#: Per board measurement; a batch-1 pass over a large split on a slow board may need more.
METRICS = (("time_per_image_ms", "inference time per image at batch 100 (ms)"),
           ("params", "parameters"),
           ("energy_per_image_mj", "energy per inference (mJ)"))
NVIDIA_SMI = "nvidia-smi --query-gpu=power.draw --format=csv,noheader,nounits"
#: The facts of the board's ``device-agent info`` kept in analysis.json.
AGENT_FACTS = ("hostname", "cpu_model", "cores", "architecture", "agent_version", "protocol_version", "python")


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


def board_power(spec: Optional[str], facts: Dict[str, Any]) -> Optional[str]:
    """The power source a board measures with: ``spec`` as given (the agent checks it), else
    the first readable source its ``device-agent info`` lists, else None (no energy)."""
    if spec:
        return spec
    found = [s["spec"] for s in facts.get("power_sources") or () if s.get("readable")]
    return found[0] if found else None


def _session(onnx_path: Path, candidate: Any):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        raise UserError(f"candidate {candidate}: onnxruntime cannot load {onnx_path} ({str(exc)[:200]}); "
                        f"the file is damaged: restore it, or delete it to leave this network out") from None


def _batches(x: np.ndarray, batch: int) -> List[np.ndarray]:
    return [np.ascontiguousarray(x[i:i + batch]) for i in range(0, len(x), batch)]


def predict(onnx_path: Path, x: np.ndarray, candidate: Any = "?") -> np.ndarray:
    """The model's logits for every row of ``x`` (untimed), for its accuracy."""
    from hostside.onnx.runtime import predict as run_model

    return run_model(_session(onnx_path, candidate), x, BATCH)  # in chunks the file's batch axis takes


def time_model(onnx_path: Path, x: np.ndarray, batch: int, power=None, candidate: Any = "?") -> Dict[str, Any]:
    """Run the whole array through the model at ``batch``; seconds, and joules when sampled."""
    from device_agent.power import PowerSampler

    from hostside.onnx.runtime import fixed_batch

    session = _session(onnx_path, candidate)
    name = session.get_inputs()[0].name
    fixed = fixed_batch(session.get_inputs()[0].shape)
    if fixed is not None and fixed != batch:
        raise UserError(f"candidate {candidate}: {onnx_path} has a fixed batch of {fixed}, so it cannot be timed at "
                        f"batch {batch}; export it with a dynamic batch axis")
    batches = _batches(x, batch)
    session.run(None, {name: batches[0]})  # warm-up: first-run allocation is not inference time
    logits: List[np.ndarray] = []
    sampler = PowerSampler(power) if power is not None else None
    with sampler or contextlib.nullcontext():
        started = time.perf_counter()
        for b in batches:
            logits.append(session.run(None, {name: b})[0])
        seconds = time.perf_counter() - started
    energy_j = None
    if sampler is not None:
        # Why mean power x timed seconds: the sampler's window also holds up to one 100 ms
        # sampling interval after the last batch (stopping the thread); a short pass would be
        # charged for that idle tail.
        energy_j = sampler.result()["avg_w"] * seconds
    return {"seconds": seconds, "energy_j": energy_j, "logits": np.concatenate(logits)}


def measure_locally(row: Dict[str, Any], onnx_path: Path, x: np.ndarray, y: np.ndarray, power) -> Dict[str, Any]:
    """One network timed on this host over the real validation images."""
    big = time_model(onnx_path, x, BATCH, power, row["id"])
    single = time_model(onnx_path, x, 1, candidate=row["id"])
    return {
        "accuracy": float((big["logits"].argmax(1) == y).mean()),
        "time_per_image_ms": 1e3 * big["seconds"] / len(x),
        "time_per_image_batch1_ms": 1e3 * single["seconds"] / len(x),
        "energy_per_image_mj": None if big["energy_j"] is None else 1e3 * big["energy_j"] / len(x),
    }


def measure_on_board(board: Any, row: Dict[str, Any], onnx_path: Path, x: np.ndarray, y: np.ndarray,
                     power: Optional[str], timeout_s: float) -> Dict[str, Any]:
    """One network timed by the board's agent at batch 100 and 1; accuracy from this host."""
    passes = {}
    for batch, runs, source in ((BATCH, math.ceil(len(x) / BATCH), power), (1, len(x), None)):
        result = board.measure(onnx_path, threads=1, batch=batch, runs=runs, warmup=1, power=source, timeout_s=timeout_s)
        if result.get("error"):
            problem = result["error"]
            message = " ".join(str(problem.get("message")).split())  # one line, whatever the agent wrote
            raise UserError(f"candidate {row['id']} on board {board.name!r} at batch {batch}: {problem.get('code')}: "
                            f"{message} (the networks measured before it are kept in analysis.json; rerun to go on)")
        passes[batch] = result
    time_per_image_ms = passes[BATCH]["latency_ms"]["mean"] / BATCH
    avg_w = (passes[BATCH].get("power") or {}).get("avg_w")
    return {
        "accuracy": float((predict(onnx_path, x, row["id"]).argmax(1) == y).mean()),
        "time_per_image_ms": time_per_image_ms,
        "time_per_image_batch1_ms": passes[1]["latency_ms"]["mean"],
        # Mean power of the agent's window x the timed time, not the window's energy_per_image_mj:
        # as in time_model, the window also holds the sampler's start and stop, which on a few
        # short batch-100 runs (ms here) is a large share of it (it doubled the figure on a loaded host).
        "energy_per_image_mj": None if avg_w is None else avg_w * time_per_image_ms,
    }


def _write_json(path: Path, value: Dict[str, Any]) -> None:
    """Replace ``path`` whole, so an interrupted write never leaves half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(partial, path)


def _earlier(path: Path, result: Dict[str, Any], progress) -> Dict[Tuple[Any, str, str], Dict[str, Any]]:
    """Networks of an interrupted analysis of the same run on the same board and power source,
    by (id, onnx, sha256): a rerun after a failed measurement does not measure them again."""
    from hostside.safe_io import read_json

    if not path.is_file():
        return {}
    try:
        before = read_json(path, "earlier analysis.json")
    except UserError as exc:
        progress(f"ignoring {path.name} of an earlier analysis ({exc})")
        return {}
    same = all(before.get(k) == result[k] for k in ("board", "board_key", "images", "batch", "power_source"))
    if before.get("complete") is not False or not same:
        return {}
    return {(n.get("id"), n.get("onnx"), n.get("sha256")): n for n in before.get("networks") or ()}


def _verified_onnx(run_dir: Path, row: Dict[str, Any]) -> Path:
    """The candidate's ONNX file, refused in one line unless it is the one the journal hashed
    (the journal's params are reported beside its measurements)."""
    from hostside.safe_io import check_run_file

    return check_run_file(run_dir, row["onnx_path"], row.get("onnx_sha256"), f"candidate {row['id']}'s ONNX file")


def analyze_run(run_dir: Path, power_spec: Optional[str] = None, sysfs_root: Path = Path("/"),
                weights: Tuple[float, float] = (0.5, 0.5), progress=print, board: Any = None,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> Dict[str, Any]:
    """Measure every trained network of the run (on this host, or on ``board``, a
    ``hostside.boards.Board``), write analysis.json / .md / .png; return the json."""
    from device_agent.protocol import file_sha256
    from hostside.journal import Journal
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import Split

    journal = Journal.open(run_dir)
    try:
        data = journal.meta("dataset") or {}
        rows = [r for r in journal.candidates() if r.get("onnx_path") and (run_dir / r["onnx_path"]).exists()]
    finally:
        journal.close()
    if not rows:
        raise UserError(f"{run_dir}: no trained network with an ONNX file to analyse; run the search first")
    # Every file checked before the first is measured: a swapped one fails now, not an hour in.
    paths = {r["id"]: _verified_onnx(run_dir, r) for r in rows}
    dataset = load_dataset(data.get("source") or data.get("name") or "digits")
    val = Split.load(run_dir / "split.json").val
    x, y = dataset.x[val], dataset.y[val]
    result: Dict[str, Any] = {"run": str(run_dir), "images": int(len(x)), "batch": BATCH, "complete": False}
    measure: Callable[[Dict[str, Any], Path], Dict[str, Any]]
    if board is None:
        power = open_power(power_spec, sysfs_root)
        result.update(board="local", board_key=None, power_source=None if power is None else power.name,
                      timing="this host, real validation images: wall time of the whole split / images")
        measure = functools.partial(measure_locally, x=x, y=y, power=power)
    else:
        facts = board.info()
        source = board_power(power_spec, facts)
        result.update(board=board.name, board_key=board.key, power_source=source,
                      agent={**{k: facts.get(k) for k in AGENT_FACTS},
                             "onnxruntime": (facts.get("onnxruntime") or {}).get("version")},
                      timing="device agent, seeded random input: mean latency of a run / batch "
                             f"({math.ceil(len(x) / BATCH)} runs at batch {BATCH}, {len(x)} at batch 1); "
                             "accuracy on this host over the validation split")
        measure = functools.partial(measure_on_board, board, x=x, y=y, power=source, timeout_s=timeout_s)
    result.update(tradeoff={"weights": {"metric": weights[0], "error": weights[1]},
                            "normalisation": "metric / max(metric) over all networks; error = 1 - accuracy"},
                  networks=[], metrics={})
    json_path = run_dir / "analysis.json"
    earlier = _earlier(json_path, result, progress)
    where = _where(result)
    for n, row in enumerate(rows, 1):
        onnx_path = paths[row["id"]]
        base = {"id": row["id"], "onnx": row["onnx_path"], "sha256": row.get("onnx_sha256") or file_sha256(onnx_path),
                "params": int(row["params"])}
        net = earlier.get((base["id"], base["onnx"], base["sha256"]))
        if net is None:
            net = {**base, **measure(row, onnx_path)}
            verb = "analyzed"
        else:
            verb = "kept from the interrupted analysis"
        result["networks"].append(net)
        _write_json(json_path, result)
        progress(f"{verb} {n}/{len(rows)} on {where}: candidate {row['id']} accuracy {net['accuracy']:.3f}, "
                 f"{net['time_per_image_ms']:.4f} ms/image")
    label = iter("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    for key, _ in METRICS:
        result["metrics"][key] = summarise(result["networks"], key, weights, label)
    result["complete"] = True
    _write_json(json_path, result)
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


def _where(result: Dict[str, Any]) -> str:
    board = result.get("board") or "local"
    return "this host" if board == "local" else f"board {board}"


def markdown(result: Dict[str, Any]) -> str:
    """Table I of the paper: one row per labelled model."""
    where = _where(result)
    lines = [f"# Post-hoc analysis of {len(result['networks'])} networks", "",
             f"{result['images']} validation images; timed on {where} at batch {result['batch']} and 1; power source: "
             f"{result['power_source'] or f'none on {where} (energy not measured)'}.",
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
            lines.append(f"| - | {key} | not measured on {where} | | | | | | |")
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
            ax.text(0.5, 0.5, f"no power source on {_where(result)}", ha="center", transform=ax.transAxes)
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
    """``hostside runs analyze RUN [--board NAME] [--power SPEC] [--sysfs-root DIR] [--timeout-s S]``."""
    analyze = runs_sub.add_parser("analyze", help="inference time, params and energy of every trained network "
                                                  "(MENNDL's post-hoc analysis): analysis.json/.md/.png")
    analyze.add_argument("run", help="run directory or name under ./runs")
    analyze.add_argument("--board", default="local",
                         help="where to time the networks: local (this host, default) or a board of the inventory "
                              "(hostside boards list), timed by its device agent; accuracy is computed on this host")
    analyze.add_argument("--power", help="power source: rapl, rapl:package, hwmon[:hwmonN], cmd:COMMAND (local), or a "
                                         "source the board's agent knows (default: the first one found; locally "
                                         "else nvidia-smi when installed)")
    analyze.add_argument("--sysfs-root", type=Path, default=None, help="root of /sys for --board local (for tests)")
    analyze.add_argument("--timeout-s", type=option_type(LIMIT_OPTION_TABLE[0]), default=DEFAULT_TIMEOUT_S,
                         help=f"time limit of one board measurement (default {DEFAULT_TIMEOUT_S:g})")
    analyze.add_argument("--weights", default="0.5,0.5", help="trade-off weights metric,error (default 0.5,0.5)")
    analyze.set_defaults(handler=_run_analyze)


def _run_analyze(args: Any) -> int:
    import sys

    from hostside.boards import open_board
    from hostside.boards.inventory import LOCAL
    from hostside.run_dirs import find_run

    if args.board != LOCAL and args.sysfs_root is not None:
        raise UserError(f"--sysfs-root applies to --board local only; board {args.board!r} reads its own sensors")
    try:
        weights = tuple(float(w) for w in args.weights.split(","))
    except ValueError:
        weights = ()
    if len(weights) != 2 or min(weights) < 0 or sum(weights) <= 0:
        raise UserError(f"--weights {args.weights!r}: give two non-negative numbers metric,error, e.g. 0.5,0.5")
    run_dir = find_run(args.run)
    board = None
    if args.board != LOCAL:
        try:
            board = open_board(args.board)
        except UserError as exc:
            raise UserError(f"--board {args.board!r}: {exc}") from None
    try:
        result = analyze_run(run_dir, args.power, args.sysfs_root or Path("/"), weights,
                             progress=lambda m: print(m, file=sys.stderr, flush=True), board=board,
                             timeout_s=args.timeout_s)
    finally:
        if board is not None:
            board.close()
    print(markdown(result))
    print(f"wrote {run_dir}/analysis.json, analysis.md, analysis.png")
    return 0
