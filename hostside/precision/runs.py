"""``hostside runs precision RUN``: the precision analysis of every trained model of a search.

As in the IoT paper's figure 5, each model is scored under float, half, T(4,3) (the best
8-bit type) and its own best type from the full T(w,t) grid, and the four accuracy-vs-weight-
memory Pareto fronts are drawn in one PNG: reduced precision moves the whole front to less
memory. ``precision.json`` beside it keeps every model's figures. Each model's best type is
chosen on the validation part and scored, with the other three, on the test part, which
enters no choice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from hostside.errors import UserError

RESULT_FILE = "precision.json"
PLOT_FILE = "precision_fronts.png"
SERIES = ("float", "half", "T(4,3)", "best")
_NAMED_ROWS = {"half": "T(5,10)", "T(4,3)": "T(4,3)"}


def trained_models(run_dir: Path, journal: Any) -> List[Dict[str, Any]]:
    """Every candidate with an ONNX file, then every re-trained final model; a file deleted
    leaves its model out, a file that is not the one the journal hashed is refused in one line
    (its figures would be reported as the journal's network)."""
    from hostside.safe_io import check_run_file, run_file

    models = []
    for source, rows in (("candidate", journal.candidates()), ("final", journal.results("final"))):
        for row in rows:
            onnx = row.get("onnx_path")
            if not onnx or not run_file(run_dir, onnx).exists():
                continue
            model_id = row.get("id", row.get("candidate_id"))
            path = check_run_file(run_dir, onnx, row.get("onnx_sha256"), f"{source} {model_id}'s ONNX file")
            models.append({"id": model_id, "source": source, "onnx": str(path)})
    return models


def _entry(model: Dict[str, Any], analysis: Dict[str, Any], best: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    by_wt = {f"T({r['w']},{r['t']})": r for r in analysis["formats"] if r.get("grid")}
    entry = dict(model, params=analysis["params"])
    entry["float"] = {"format": "float", "bits": 32, **analysis["float"]}
    for series, name in _NAMED_ROWS.items():
        row = by_wt[name]
        entry[series] = {"format": row["format"], "bits": row["bits"], "accuracy": row["accuracy"],
                         "weight_bytes": row["weight_bytes"], "reason": row["reason"]}
    entry["best"] = best
    return entry


def _analyse(onnx: str, dataset: Any, split: Any, part: str, mode: str) -> Tuple[Dict[str, Any], Any]:
    """(the scored analysis, the best type's entry or None). The best type is a choice, so it is
    made on the validation part (the full T(w,t) grid there); the test part then scores float,
    half, T(4,3) and that one type, and takes part in no choice. With ``part`` val, or a split
    without a validation part, choice and scores share the part, as the figures then say."""
    from hostside.precision.analysis import analyze_model
    from hostside.precision.formats import FloatFormat, grid

    scored_part = getattr(split, part)
    if part == "val" or not len(split.val):
        analysis = analyze_model(onnx, dataset, scored_part, grid(), mode)
        best = analysis.get("best")
        return analysis, None if best is None else {
            "format": best["format"], "bits": best["bits"], "accuracy": best["accuracy"],
            "weight_bytes": best["weight_bytes"], "chosen_on": part}
    chosen = analyze_model(onnx, dataset, split.val, grid(), mode).get("best")
    formats = [FloatFormat(5, 10), FloatFormat(4, 3)]
    if chosen is not None:
        formats.append(FloatFormat(chosen["w"], chosen["t"]))
    analysis = analyze_model(onnx, dataset, scored_part, formats, mode)
    if chosen is None:
        return analysis, None
    row = next(r for r in analysis["formats"] if r.get("w") == chosen["w"] and r.get("t") == chosen["t"])
    return analysis, {"format": row["format"], "bits": row["bits"], "accuracy": row["accuracy"],
                      "weight_bytes": row["weight_bytes"], "chosen_on": "val", "val_accuracy": chosen["accuracy"]}


def front(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    """Non-dominated (weight bytes down, accuracy up) points, by weight bytes (pymoo sorting)."""
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    if not points:
        return []
    f = np.array([[b, -a] for b, a in points], dtype=float)
    first = NonDominatedSorting().do(f, only_non_dominated_front=True)
    return sorted((points[i] for i in first), key=lambda p: p[0])


def precision_of_run(run: Union[str, Path], mode: str = "extrinsic", part: str = "test",
                     progress: Callable[[str], None] = lambda _m: None) -> Dict[str, Any]:
    """Analyse every trained model of ``run``; write ``precision.json`` and the fronts PNG there."""
    from hostside.journal import Journal
    from hostside.run_dirs import find_run
    from hostside.train.datasets import load_dataset
    from hostside.train.splits import Split

    run_dir = find_run(run)
    journal = Journal.open(run_dir)
    try:
        config = journal.meta("config") or {}
        models = trained_models(run_dir, journal)
    finally:
        journal.close()
    if not models:
        raise UserError(f"{run_dir}: no trained model with an ONNX file yet; run or resume the search first")
    dataset = load_dataset(config.get("dataset", "digits"))
    split = Split.load(run_dir / "split.json")
    split.check(dataset, str(run_dir / "split.json"))
    indices = getattr(split, part)
    entries = []
    for number, model in enumerate(models, 1):
        analysis, best = _analyse(model["onnx"], dataset, split, part, mode)
        entries.append(_entry(model, analysis, best))
        progress(f"[{number}/{len(models)}] {model['source']} {model['id']}: float "
                 f"{100 * analysis['float']['accuracy']:.2f}%, best type "
                 f"{best['format'] + ' ' + format(100 * best['accuracy'], '.2f') + '%' if best else 'none'} "
                 f"({analysis['emulation_seconds']:.1f} s)")
    fronts = {}
    for series in SERIES:
        points = [(e[series]["weight_bytes"], e[series]["accuracy"]) for e in entries
                  if e[series] is not None and e[series]["accuracy"] is not None]
        fronts[series] = [{"weight_bytes": b, "accuracy": a} for b, a in front(points)]
    result = {"run": str(run_dir), "dataset": dataset.name, "part": part, "images": int(len(indices)), "mode": mode,
              "models": entries, "fronts": fronts}
    (run_dir / RESULT_FILE).write_text(json.dumps(result, indent=1) + "\n")
    result["plot"] = str(plot_fronts(result, run_dir / PLOT_FILE))
    return result


def plot_fronts(result: Dict[str, Any], path: Path) -> Path:
    """All models per series (faint) and each series' Pareto front (line) in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"float": "#444444", "half": "#1f77b4", "T(4,3)": "#2ca02c", "best": "#d62728"}
    labels = {"float": "float (32 bit)", "half": "half T(5,10)", "T(4,3)": "T(4,3) (8 bit)",
              "best": "per-model best type"}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for series in SERIES:
        points = [(e[series]["weight_bytes"], e[series]["accuracy"]) for e in result["models"]
                  if e[series] is not None and e[series]["accuracy"] is not None]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, [100 * y for y in ys], s=14, alpha=0.35, color=colours[series])
        line = result["fronts"][series]
        if line:
            ax.step([p["weight_bytes"] for p in line], [100 * p["accuracy"] for p in line], where="post",
                    color=colours[series], linewidth=2, label=labels[series], marker="o", markersize=4)
    ax.set_xscale("log")
    ax.set_xlabel("weight memory (bytes, deployed parameters x bits per value)")
    ax.set_ylabel(f"accuracy on {result['part']} (%)")
    ax.set_title(f"{Path(result['run']).name}: accuracy vs weight memory per number format "
                 f"({len(result['models'])} models, {result['mode']})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
