"""The narrow constraint grid: one narrow search per dataset and params constraint.

The narrow-space paper's figure 8 repeats the constraint search (``hostside.laws.constraint``
picks what to train) for several datasets and params budgets; this module runs those searches
through the search engine and draws one PNG of the best model per dataset and constraint. It
lives with the search because it starts and resumes runs; the laws it uses know nothing of runs.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from hostside.errors import UserError


def best_model(report: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The final-front model with the best search-time validation accuracy among those that meet
    the run's budgets, with its test accuracy (reported, never used to choose)."""
    ok = [m for m in report.get("models", []) if m.get("meets_budgets") and m.get("search_val_accuracy") is not None
          and m.get("test_accuracy") is not None]
    if not ok:
        return None
    best = max(ok, key=lambda m: m["search_val_accuracy"])
    return {k: best.get(k) for k in ("onnx", "search_val_accuracy", "test_accuracy", "params", "macs", "latency_ms",
                                     "predicted_latency_ms")}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(text).name or text).strip("_") or "dataset"


def run_constraint_grid(config: Any, datasets: Sequence[str], constraints: Sequence[float],
                        out_dir: Optional[Path] = None, progress: Callable[[str], None] = print) -> Dict[str, Any]:
    """One narrow search per (dataset, params constraint); writes grid.json and grid.png.

    A run directory that already holds a journal is resumed, so a killed grid loses nothing.
    """
    from hostside.journal import JOURNAL_FILE
    from hostside.run_dirs import new_run_dir
    from hostside.search.run import resume_run, start_run

    if config.strategy != "narrow":
        raise UserError(f"--datasets/--constraints repeat the narrow constraint search; use --strategy narrow "
                        f"(got {config.strategy!r})")
    if not datasets or not constraints:
        raise UserError("give at least one dataset in --datasets and one params constraint in --constraints")
    for c in constraints:
        if not (isinstance(c, (int, float)) and math.isfinite(c) and c > 0):
            raise UserError(f"--constraints: {c!r} is not a positive number of params")
    out_dir = Path(out_dir) if out_dir is not None else new_run_dir().with_name(new_run_dir().name + "-narrow-grid")
    out_dir.mkdir(parents=True, exist_ok=True)
    results: List[Dict[str, Any]] = []
    for dataset in datasets:
        for constraint in constraints:
            run_dir = out_dir / f"{_slug(dataset)}-params{constraint:g}"
            budgets = {**config.budgets, "params": float(constraint)}
            run_config = dataclasses.replace(config, dataset=dataset, budgets=budgets)
            progress(f"narrow constraint search: dataset {dataset}, params <= {constraint:g} -> {run_dir}")
            if (run_dir / JOURNAL_FILE).is_file():
                report = resume_run(run_dir, progress)
            else:
                report = start_run(run_config, run_dir, progress)
            best = best_model(report)
            results.append({"dataset": dataset, "params_constraint": constraint, "run": str(run_dir), "best": best})
            progress("  best: " + ("none meets the budgets" if best is None else
                                    f"test accuracy {best['test_accuracy']:.3f}, {best['params']} params, "
                                    f"{best['latency_ms']:.4f} ms"))
    summary = {"datasets": list(datasets), "constraints": list(constraints), "results": results,
               "best": [r for r in results if r["best"] is not None]}
    (out_dir / "grid.json").write_text(json.dumps(summary, indent=1) + "\n")
    summary["png"] = str(plot_grid(out_dir / "grid.png", results))
    return summary


def plot_grid(path: Path, results: Sequence[Mapping[str, Any]]) -> Path:
    """Best accuracy per params constraint, one line per dataset (the paper's figure 8)."""
    from hostside.laws.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for dataset in dict.fromkeys(r["dataset"] for r in results):
        points = [(r["best"]["params"], r["best"]["test_accuracy"]) for r in results
                  if r["dataset"] == dataset and r["best"] is not None]
        if points:
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=dataset)
    for c in sorted({r["params_constraint"] for r in results}):
        ax.axvline(c, color="0.8", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("params of the best model (dashed: constraints)")
    ax.set_ylabel("test accuracy (not used in any choice)")
    ax.set_title("narrow constraint search: best model per dataset and constraint", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
