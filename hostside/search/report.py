"""The run report: ``pareto.json``, ``report.json``, ``report.md``, ``report.html`` and Pareto plots (PNG).

Everything is computed from the journal, so ``hostside runs show`` and a notebook can
rebuild the report of any run, finished or not. Plots show every measured candidate in grey,
the front highlighted, the re-trained front models as stars, and the candidates the filter
rejected before training as crosses on a strip under the axis (they have no accuracy).

Every figure a choice was made on is a validation accuracy; the test accuracy belongs to the
re-trained front alone (the search never evaluates the test split), and every place that
shows it says "not used in any choice".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from hostside import extensions
from hostside.journal import Journal, run_status
from hostside.search.config import BUDGETS, OBJECTIVES, SearchConfig
from hostside.search.objectives import objective
from hostside.search.pareto import best_tradeoff, missed_budgets, pareto_front, violation
from hostside.search.screening import screened_summaries, with_screening

PARETO_FILE = "pareto.json"
REPORT_FILE = "report.json"
REPORT_MD = "report.md"
NEAREST_MISSES = 5

TEST_LABEL = "test accuracy (not used in any choice)"
_LABELS = {
    "val_accuracy": "validation accuracy", "params": "parameters", "macs": "MACs",
    "predicted_latency_ms": "predicted latency (ms)", "latency_ms": "measured latency (ms)",
    "energy_mj": "energy per inference (mJ)", "activation_bytes": "peak activation memory (bytes)",
}


def estimated_train_seconds(trained: Sequence[Dict[str, Any]], rejected: Sequence[Dict[str, Any]]) -> float:
    """What training the rejected candidates would have cost.

    Same data, same epochs: training time grows with the network's MACs, so a least-squares
    line through the trained candidates' (MACs, seconds) predicts it (``numpy.polyfit``; one
    feature needs no more), floored at the fastest training seen. With fewer than three
    trained candidates, or no spread in MACs, each rejected one counts as the median.
    """
    seconds = np.array([r["train_seconds"] for r in trained], dtype=float)
    macs = np.array([r["macs"] for r in trained], dtype=float)
    if not rejected or not len(seconds):
        return 0.0
    rejected_macs = np.array([r["macs"] for r in rejected], dtype=float)
    if len(seconds) < 3 or np.ptp(macs) == 0:
        return float(np.median(seconds)) * len(rejected)
    slope, intercept = np.polyfit(macs, seconds, 1)
    return float(np.maximum(slope * rejected_macs + intercept, seconds.min()).sum())


def filter_statistics(rows: Sequence[Dict[str, Any]], spot_checks: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Training time the filter saved (estimated) and its false-reject rate (from spot checks).

    The saved fraction is of the training time the search would have spent without the
    filter: saved / (saved + spent).
    """
    trained = [r for r in rows if r["train_seconds"] is not None]
    rejected = [r for r in rows if r["status"] == "rejected"]
    spent_s = float(sum(r["train_seconds"] for r in trained))
    saved_s = estimated_train_seconds(trained, rejected)
    checked = [r for r in spot_checks if r.get("meets_budget") is not None]
    false_rejects = [r["candidate_id"] for r in checked if r["meets_budget"]]
    return {
        "rejected": len(rejected),
        "trained": len(trained),
        "train_seconds_spent": spent_s,
        "train_seconds_saved_estimate": saved_s,
        "saved_fraction": saved_s / (saved_s + spent_s) if saved_s + spent_s > 0 else 0.0,
        "spot_checked": len(checked),
        "false_rejects": false_rejects,
        "false_reject_rate": (len(false_rejects) / len(checked)) if checked else None,
    }


def genotype_fields(space: Any, genotype: Any) -> Dict[str, Any]:
    """What the space says a person should read of a genotype (NB201's ``arch_str``); {} for a
    space without ``genotype_summary`` or one that cannot summarise this genotype."""
    summary = getattr(space, "genotype_summary", None)
    if space is None or summary is None:
        return {}
    try:
        return dict(summary(genotype) or {})
    except Exception:  # noqa: BLE001 - a summary is for reading; the report must not fail over it
        return {}


def _model_entry(final: Dict[str, Any], row: Dict[str, Any], budgets: Dict[str, float], space: Any) -> Dict[str, Any]:
    entry = {
        "id": row["id"],
        "onnx": final["onnx_path"],
        "onnx_sha256": final["onnx_sha256"],
        "test_accuracy": final["test_accuracy"],
        # The older name of test_accuracy, read by ``hostside search``'s closing line.
        "accuracy": final["test_accuracy"],
        "val_accuracy": final["val_accuracy"],
        "params": row["params"],
        "macs": row["macs"],
        "activation_bytes": row["activation_bytes"],
        "predicted_latency_ms": row["predicted_latency_ms"],
        "latency_ms": final["latency_ms"],
        "energy_mj": final["energy_mj"],
        "search_val_accuracy": row["val_accuracy"],
        "search_latency_ms": row["latency_ms"],
        "arch_hash": row["arch_hash"],
        "genotype": row["genotype"],
        "operator": row["operator"],
        "parents": row["parents"],
    }
    # What the space summarises of the genotype (NB201's arch_str), never over a figure above.
    entry.update({k: v for k, v in genotype_fields(space, row["genotype"]).items() if k not in entry})
    entry.update(extensions.report_fields(row.get("train_metrics")))  # e.g. an approximate multiplier's figures
    entry["meets_budgets"] = violation(entry, budgets) == 0
    return entry


def _with_search_figures(model: Dict[str, Any], row: Dict[str, Any]) -> Dict[str, Any]:
    """A re-trained model's figures, one its final training did not take (the validation
    accuracy of a model trained on train+val) read from the search row that chose it."""
    return {**row, **{k: v for k, v in model.items() if v is not None}}


def build_report(run_dir: Path, journal: Journal) -> Dict[str, Any]:
    """The report as a dict (also what ``runs show --json`` prints, plus the candidate list)."""
    config = SearchConfig.from_dict(journal.meta("config"))
    rows = journal.candidates()
    by_id = {r["id"]: r for r in rows}
    measured = with_screening([r for r in rows if r["status"] == "measured"], journal)
    feasible = [r for r in measured if violation(r, config.budgets) == 0]
    space = _space_of(config, journal)
    models = [_model_entry(f, by_id[f["candidate_id"]], config.budgets, space)
              for f in journal.results("final") if f["status"] == "measured"]
    best: Optional[Dict[str, Any]] = None
    if models:
        chosen_on = {r["id"]: r for r in measured}
        index = best_tradeoff([_with_search_figures(m, chosen_on[m["id"]]) for m in models], config.objectives,
                              [1.0] * len(config.objectives))
        best = models[index]
        for i, model in enumerate(models):
            model["best_tradeoff"] = i == index
    onnx_warning = check_onnx_files(run_dir, rows, models)
    nearest = []
    if not feasible:
        for r in sorted(measured, key=lambda r: violation(r, config.budgets))[:NEAREST_MISSES]:
            nearest.append({"id": r["id"], "violation": violation(r, config.budgets),
                            "missed": missed_budgets(r, config.budgets), "val_accuracy": r["val_accuracy"],
                            "latency_ms": r["latency_ms"], "params": r["params"], "macs": r["macs"]})
    return {
        "run": str(run_dir),
        "status": run_status(journal),
        "config": config.to_dict(),
        "provenance": journal.meta("provenance", {}),
        "counts": journal.counts(),
        "search_front": [r["id"] for r in pareto_front(feasible, config.objectives)],
        "screened": screened_summaries(journal),
        "models": models,
        "best_tradeoff": best,
        "nothing_meets_budgets": bool(measured) and not feasible,
        "nearest_misses": nearest,
        "failed": [{"id": r["id"], "error": r["error"]} for r in rows if r["status"] == "failed"],
        "filter": filter_statistics(rows, journal.results("spot_check")),
        "onnx_warning": onnx_warning,
    }


def _space_of(config: SearchConfig, journal: Journal) -> Any:
    """The run's search space, for ``genotype_summary``; None when it cannot be built here (a
    space registered by a plugin this process does not load), since the report only reads it."""
    from hostside.spaces import make_space

    try:
        data = journal.meta("dataset") or {}
        return make_space(config.space, tuple(data["input_shape"]), data["num_classes"], **config.space_options)
    except Exception:  # noqa: BLE001 - the report does not depend on the space
        return None


def check_onnx_files(run_dir: Path, rows: Sequence[Dict[str, Any]], models: Sequence[Dict[str, Any]]) -> Optional[str]:
    """Mark each front model whose ONNX file is not the one the run wrote (``onnx_problem``:
    missing, changed, not a regular file) and return one line about all such files, or None.

    Why a mark, not an error as ``runs analyze`` gives: the report is the summary of a
    finished (or live) search, written at its end; failing it over one file would lose the
    whole summary, while the mark tells the reader which file no longer backs its figures.
    Only the front models' files are hashed (the report's deliverables, a handful); every
    other candidate's file is only checked to exist, since hashing hundreds of them after
    every generation would slow the search down.
    """
    from hostside.safe_io import run_file, run_file_problem

    for model in models:
        model["onnx_problem"] = run_file_problem(run_dir, model["onnx"], model["onnx_sha256"]) if model["onnx"] else None
    listed = list(dict.fromkeys([r["onnx_path"] for r in rows if r.get("onnx_path")] +
                                [m["onnx"] for m in models if m["onnx"]]))
    missing = [path for path in listed if not run_file(run_dir, path).exists()]
    changed = [m["onnx"] for m in models if m["onnx_problem"] not in (None, "missing")]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the {len(listed)} ONNX files this run's journal lists are missing "
                     f"under {run_dir} (first: {missing[0]}); was the journal copied without its run directory? "
                     f"copy the whole run directory")
    if changed:
        parts.append(f"{', '.join(changed)} {'is' if len(changed) == 1 else 'are'} not the file the run wrote "
                     f"(sha256 differs from the journal's); restore the run's own file")
    return "; ".join(parts) or None


def warn_about_onnx_files(report: Dict[str, Any]) -> None:
    """One warning line on stderr when the report's ONNX files are missing or changed."""
    import sys

    if report.get("onnx_warning"):
        print(f"hostside: warning: {report['onnx_warning']}", file=sys.stderr)


def candidate_summaries(journal: Journal) -> List[Dict[str, Any]]:
    """One flat dict per candidate for ``runs show --json``."""
    keys = ("id", "status", "generation", "operator", "parents", "val_accuracy", "params", "macs",
            "activation_bytes", "predicted_latency_ms", "latency_ms", "energy_mj", "train_seconds",
            "filter_accepted", "filter_reason", "onnx_path", "onnx_sha256", "arch_hash", "error")
    spot_checks = {r["candidate_id"]: r for r in journal.results("spot_check")}
    return [{**{k: r[k] for k in keys}, "spot_check": spot_checks.get(r["id"])} for r in journal.candidates()]


def write_report(run_dir: Path, journal: Journal) -> Dict[str, Any]:
    """Write pareto.json, report.json, report.md, report.html and the plots; return the report dict."""
    from hostside.search.report_html import build_report_data, write_report_html

    run_dir = Path(run_dir)
    report = build_report(run_dir, journal)
    (run_dir / PARETO_FILE).write_text(json.dumps(report["models"], indent=1) + "\n")
    report["plots"] = write_plots(run_dir, journal, report)
    (run_dir / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
    (run_dir / REPORT_MD).write_text(markdown(report))
    write_report_html(run_dir, build_report_data(run_dir, journal))
    return report


def _axis_value(row: Dict[str, Any], name: str, rejected: bool) -> Optional[float]:
    """The row's figure for objective ``name``, read by the objective's registered reader (so
    objectives other modules register, such as ``mult_energy_mj``, plot too); a rejected
    candidate has no measured latency and is placed at its predicted one."""
    if rejected and name == "latency_ms":
        value = row.get("predicted_latency_ms")
        return None if value is None else float(value)
    return objective(name).value(row)


def plot_pairs(objectives: Sequence[str]) -> List[Tuple[str, str]]:
    """(x, y) pairs: accuracy on y against every other objective, else the first against the rest."""
    y = next((name for name in objectives if name == "val_accuracy"), objectives[0])
    return [(x, y) for x in objectives if x != y]


def write_plots(run_dir: Path, journal: Journal, report: Dict[str, Any]) -> List[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = report["config"]
    rows = with_screening(journal.candidates(), journal)
    front_ids = set(report["search_front"])
    screened_ids = {s["id"] for s in report["screened"] if s["val_accuracy"] is not None}
    written = []
    for x_name, y_name in plot_pairs(config["objectives"]):
        fig, ax = plt.subplots(figsize=(7, 5))
        measured = [r for r in rows if r["status"] == "measured"]
        placed = [(r, (_axis_value(r, x_name, False), _axis_value(r, y_name, False))) for r in measured]
        placed = [(r, p) for r, p in placed if None not in p]  # a figure this run never took is not a point
        points = [p for _, p in placed]
        ax.scatter([p[0] for p in points], [p[1] for p in points], c="0.7", s=18, label="measured candidates")
        screened = [p for r, p in placed if r["id"] in screened_ids]
        if screened:
            ax.scatter([p[0] for p in screened], [p[1] for p in screened], marker="D", s=40, facecolors="none",
                       edgecolors="tab:green", zorder=4, label=f"screened ({report['screened'][0]['epochs']} epochs)")
        front = sorted((p for r, p in placed if r["id"] in front_ids), key=lambda p: p[0])
        if front:
            ax.plot([p[0] for p in front], [p[1] for p in front], "o-", c="tab:blue", ms=6, label="search Pareto front")
        final_key, final_what = OBJECTIVES[y_name][0], ""
        if final_key == "val_accuracy" and config.get("final_data") == "train+val":
            # They have no validation figure; the test one is shown, and said to be.
            final_key, final_what = "test_accuracy", f" on train+val, {TEST_LABEL}"
        finals = [(_axis_value(m, x_name, False), m.get(final_key)) for m in report["models"]]
        finals = [p for p in finals if None not in p]
        if finals:
            ax.scatter([p[0] for p in finals], [p[1] for p in finals], marker="*", s=160, c="tab:orange",
                       edgecolors="k", zorder=5,
                       label=f"re-trained front ({config['final_epochs']} epochs{final_what})")
        rejected = [_axis_value(r, x_name, True) for r in rows if r["status"] == "rejected"]
        rejected = [v for v in rejected if v is not None]
        if rejected:
            ax.scatter(rejected, [0.02] * len(rejected), transform=ax.get_xaxis_transform(), marker="x", c="tab:red",
                       s=20, label="rejected before training" + (" (predicted)" if x_name == "latency_ms" else ""))
        if x_name in config["budgets"]:  # an objective and the budget on its figure share the name
            ax.axvline(config["budgets"][x_name], ls="--", c="tab:red", lw=1, label="budget")
        every_x = [p[0] for p in points if p[0] is not None] + rejected
        if every_x:
            # The rejected strip uses a blended transform, which autoscaling ignores: widen by hand.
            low, high = min(every_x), max(every_x)
            if x_name in ("params", "macs", "activation_bytes") or high > 20 * low > 0:
                ax.set_xscale("log")
                ax.set_xlim(low / 1.15, high * 1.15)
            else:
                pad = 0.05 * (high - low or high or 1.0)
                ax.set_xlim(low - pad, high + pad)
        ax.set_xlabel(_LABELS.get(x_name, x_name))
        ax.set_ylabel(_LABELS.get(y_name, y_name))
        ax.set_title(f"{Path(report['run']).name}: {config['strategy']} on {config['dataset']}, board {config['board']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
        path = run_dir / f"pareto_{y_name}_vs_{x_name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "-" if value is None else format(value, spec)


def _evaluated_on(config: Dict[str, Any]) -> str:
    """Where the figures come from: a dataset and board, or a table's columns (nothing trained)."""
    table = config.get("table") or {}
    if table.get("path"):
        return f"looked up in the table **{Path(table['path']).name}** (nothing trained or measured)"
    return f"on **{config['dataset']}**, board **{config['board']}**"


def markdown(report: Dict[str, Any]) -> str:
    """The report a person reads first."""
    config = report["config"]
    lines = [f"# Search run {Path(report['run']).name}", "",
             f"Strategy **{config['strategy']}** over the **{config['space']}** space {_evaluated_on(config)}; "
             f"objectives: {', '.join(config['objectives'])}; "
             f"budgets: {', '.join(f'{k} {v}' for k, v in config['budgets'].items()) or 'none'}.", "",
             "Candidates: " + ", ".join(f"{v} {k}" for k, v in report["counts"].items() if v) + ".", ""]
    if report.get("onnx_warning"):
        lines += [f"**Warning:** {report['onnx_warning']}.", ""]
    if report["nothing_meets_budgets"]:
        lines += ["**No candidate meets the budgets.** Those that miss them by least:", "",
                  "| id | missed budgets | val. accuracy | latency (ms) | params |", "|---|---|---|---|---|"]
        for miss in report["nearest_misses"]:
            missed = "; ".join(f"{k} {_fmt(v['value'])} > {_fmt(v['limit'])}" if BUDGETS[k][1] == "max"
                               else f"{k} {_fmt(v['value'])} < {_fmt(v['limit'])}" for k, v in miss["missed"].items())
            lines.append(f"| {miss['id']} | {missed} | {_fmt(miss['val_accuracy'], '.3f')} | {_fmt(miss['latency_ms'])} | {miss['params']} |")
        lines.append("")
    if report["models"]:
        on = " on train+val" if config.get("final_data") == "train+val" else ""
        how = (f"looked up at {config['final_epochs']} epochs" if (config.get("table") or {}).get("path") else
               f"re-trained for {config['final_epochs']} epochs{on}, measured on the board")
        lines += [f"## Pareto front ({how})", "",
                  f"| id | ONNX | val. accuracy (search) | {TEST_LABEL} | params | MACs | predicted ms | "
                  "measured ms | energy mJ |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for m in report["models"]:
            mark = " **best trade-off**" if m.get("best_tradeoff") else ""
            problem = f" **({m['onnx_problem']})**" if m.get("onnx_problem") else ""
            onnx = f"`{m['onnx']}`" if m["onnx"] else "none (table run)"
            lines.append(f"| {m['id']}{mark} | {onnx}{problem} | {_fmt(m['search_val_accuracy'], '.3f')} | "
                         f"{_fmt(m['test_accuracy'], '.3f')} | {m['params']} | {m['macs']} | "
                         f"{_fmt(m['predicted_latency_ms'])} | {_fmt(m['latency_ms'])} | {_fmt(m['energy_mj'])} |")
        lines.append("")
        truncated = sorted({m["multiplier"] for m in report["models"] if m.get("trained_with_truncated_table")})
        if truncated:
            lines += [f"Multiplier{'s' if len(truncated) > 1 else ''} {', '.join(truncated)}: an error rank above 16, "
                      "so training used the best rank-16 approximation of the product table (evaluation and the "
                      "accuracies above use the exact table).", ""]
    if report.get("screened"):
        lines += [f"## Screening (the most accurate candidates trained {report['screened'][0]['epochs']} epochs on the "
                  f"whole training part before the front was chosen)", "",
                  "| id | search val. accuracy | screened val. accuracy | params |",
                  "|---|---|---|---|"]
        for s in report["screened"]:
            lines.append(f"| {s['id']} | {_fmt(s['search_val_accuracy'], '.3f')} | "
                         f"{_fmt(s['val_accuracy'], '.3f') if s['error'] is None else s['error']} | {s['params']} |")
        lines.append("")
    best = report["best_tradeoff"]
    if best:
        where = f", `{best['onnx']}`" if best["onnx"] else ""
        lines += [f"Best trade-off (smallest equally weighted distance to the ideal point): candidate "
                  f"{best['id']}{where}.", ""]
    f = report["filter"]
    lines += ["## Pre-training filter", "",
              f"Rejected {f['rejected']} candidate(s) before training; trained {f['trained']}. "
              f"Estimated training time saved: {_fmt(f['train_seconds_saved_estimate'], '.1f')} s "
              f"({100 * f['saved_fraction']:.0f}% of what the search would have spent). "
              + (f"False rejects in spot checks: {len(f['false_rejects'])}/{f['spot_checked']} "
                 f"({100 * f['false_reject_rate']:.0f}%)." if f["false_reject_rate"] is not None
                 else "No spot check measured (no latency budget, or nothing rejected on predicted latency)."), ""]
    if report["failed"]:
        lines += ["## Failed candidates", ""] + [f"- {f['id']}: {f['error']}" for f in report["failed"]] + [""]
    if report.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in report["plots"]] + [""]
    return "\n".join(lines)
