"""``report.html``: the run report a person opens, sorts and clicks through in a browser.

Why a single self-contained file: a run directory is copied around (to a laptop, into an
issue, onto a USB stick) and opened from there, often offline. So the page carries its data
(one JSON block), its style and its script inline, loads nothing from a server or CDN, and
links only files inside the run directory (the ONNX models). The script is hand-written
(``hostside/report_assets/report.js``, about 15 kB of plain JavaScript, no framework): the page
needs a scatter chart with hover, a sortable / filterable table and a few lists, and the
smallest charting library that does this inlined (plotly.js, 3.5 MB minified) would make
every run directory megabytes larger for a tenth of its features.

The page is rewritten after every generation (or every few results under steady-state
evaluation) while the run is live, atomically (write then rename) so a browser reloading it
never reads half a file; while the journal says the run is running the page reloads itself
every ``REFRESH_S`` seconds and keeps its sort order, filters and scroll position.

Two public functions: :func:`build_report_data` reads a run's journal into the ``data`` dict
(documented in ``docs/ARCHITECTURE.md``; plain JSON, no journal rows), and
:func:`write_report_html` renders any such dict into ``<run_dir>/report.html``.
"""

from __future__ import annotations

import datetime
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from hostside.journal import Journal
from hostside.search.screening import with_screening

#: How a candidate's screening figures are named among its attributes on the page.
SCREEN_PREFIX = "screen."

REPORT_HTML = "report.html"
DATA_FORMAT = "hostside.search.report-data"
DATA_VERSION = 1
#: Seconds between reloads of the page while the run is live.
REFRESH_S = 10
#: Lineage shown per front model: ancestors up to this many generations back.
LINEAGE_DEPTH = 6

#: Objective name -> what the chart and table call it, its candidate key, log axis or not.
METRICS: Dict[str, Dict[str, Any]] = {
    "val_accuracy": {"key": "val_accuracy", "label": "validation accuracy", "log": False},
    "params": {"key": "params", "label": "parameters", "log": True},
    "macs": {"key": "macs", "label": "MACs", "log": True},
    "predicted_latency_ms": {"key": "predicted_latency_ms", "label": "predicted latency (ms)", "log": False},
    "latency_ms": {"key": "latency_ms", "label": "measured latency (ms)", "log": False},
    "energy_mj": {"key": "energy_mj", "label": "energy per inference (mJ)", "log": False},
    "activation_bytes": {"key": "activation_bytes", "label": "peak activation memory (bytes)", "log": True},
}

#: A candidate's test accuracy is not among them: the search never evaluates the test split
#: (an older journal's ``accuracy`` column held it; the page does not show it).
_CANDIDATE_KEYS = ("id", "status", "generation", "operator", "parents", "val_accuracy", "params", "macs",
                   "activation_bytes", "predicted_latency_ms", "latency_ms", "energy_mj", "train_seconds")
_MODEL_KEYS = ("id", "onnx", "test_accuracy", "val_accuracy", "params", "macs", "activation_bytes",
               "predicted_latency_ms", "latency_ms", "energy_mj", "search_val_accuracy", "search_latency_ms",
               "meets_budgets", "best_tradeoff", "operator", "parents", "onnx_problem", "multiplier",
               "trained_with_truncated_table")
#: Keys of a model entry that are not a summary of its genotype (what is left is, e.g. ``arch_str``).
_NOT_SUMMARY = set(_MODEL_KEYS) | {"accuracy", "onnx_sha256", "arch_hash", "genotype", "n_mult", "energy_per_mult_pj",
                                   "mult_energy_mj"}


def arch_summary(spec: Optional[Mapping[str, Any]]) -> str:
    """One line naming each layer of an ArchSpec dict, e.g. ``conv 16 3x3 > bn > relu > ... > linear 10``.

    Reads the JSON form only (no validation, no torch), so a report of any run renders even
    when this hostside no longer knows one of its ops.
    """
    if not spec or not isinstance(spec.get("nodes"), list):
        return ""
    return " > ".join(_node_summary(node) for node in spec["nodes"] if isinstance(node, Mapping))


def _pair(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return f"{value}x{value}"


def _node_summary(node: Mapping[str, Any]) -> str:
    op = str(node.get("op", "?"))
    words = [op]
    if "out_channels" in node:
        words.append(str(node["out_channels"]))
    if "out_features" in node:
        words.append(str(node["out_features"]))
    if "kernel" in node:
        words.append(_pair(node["kernel"]))
    stride = node.get("stride")
    if stride not in (None, 1, [1, 1]):
        sides = _pair(stride).split("x")
        words.append("/" + (sides[0] if len(set(sides)) == 1 else "x".join(sides)))
    groups = node.get("groups")
    if isinstance(groups, int) and groups > 1:
        words.append(f"g{groups}")
    if "p" in node and op == "dropout":
        words.append(str(node["p"]))
    return " ".join(words)


def strategy_attributes(attrs: Mapping[str, Any]) -> Dict[str, Any]:
    """The strategy's own attributes of a candidate (``ea4cnn.age`` shown as ``age``), without
    the engine's bookkeeping; the namespace stays where two strategies use the same key."""
    own = {k: v for k, v in attrs.items() if not k.startswith("engine.")}
    short = [_short_name(k) for k in own]
    return {(_short_name(k) if short.count(_short_name(k)) == 1 else k): v for k, v in sorted(own.items())}


def _screening_attributes(result: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A screened candidate's screening figures, shown beside its attributes as ``screen.*``."""
    if result is None:
        return {}
    figures = {k: result.get(k) for k in ("epochs", "val_accuracy", "train_seconds", "error")}
    return {SCREEN_PREFIX + k: v for k, v in figures.items() if v is not None}


def _short_name(key: str) -> str:
    """``ea4cnn.age`` -> ``age``; screening figures keep their namespace (``screen.val_accuracy``),
    which a bare ``val_accuracy`` beside the candidate's own would misread."""
    return key if key.startswith(SCREEN_PREFIX) else key.split(".", 1)[-1]


def _reason(row: Mapping[str, Any]) -> Optional[str]:
    """Why a candidate went nowhere: the filter's reason when rejected, the error when failed."""
    if row.get("status") == "rejected":
        return row.get("filter_reason") or "rejected before training"
    if row.get("status") == "failed":
        return row.get("error") or "failed"
    return None


def _relative_link(run_dir: Path, path: Optional[str]) -> Optional[str]:
    """A path the page can link: relative to the run directory (the page lives there)."""
    if not path:
        return None
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            return candidate.relative_to(run_dir.resolve()).as_posix()
        except ValueError:
            return candidate.as_posix()
    return candidate.as_posix()


def metric_table(objectives: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """The known metrics plus any objective a later module registered (e.g. ``mult_energy``):
    those are keyed by their registered column, labelled with their name, on a linear axis."""
    from hostside.search.objectives import objective

    table = dict(METRICS)
    for name in objectives:
        if name not in table:
            table[name] = {"key": objective(name).column, "label": name.replace("_", " "), "log": False}
    return table


def _extra_value(row: Mapping[str, Any], name: str) -> Any:
    """A registered objective's figure, read the way the search reads it (its registered reader,
    over the row and the training's metrics, where figures such as ``mult_energy_mj`` are kept)."""
    from hostside.search.objectives import objective

    return objective(name).value({**(row.get("train_metrics") or {}), **{k: v for k, v in row.items() if v is not None}})


def _charts(objectives: Sequence[str]) -> List[Dict[str, str]]:
    """(x, y) pairs as in the PNG plots: accuracy on y against every other objective."""
    from hostside.search.report import plot_pairs

    return [{"x": x, "y": y} for x, y in plot_pairs(objectives)]


def build_report_data(run_dir: Union[str, Path], journal: Optional[Journal] = None) -> Dict[str, Any]:
    """The page's data for one run, from its journal (open one if ``journal`` is None).

    Works on a live run (no front models yet) as on a finished one; every value is plain
    JSON, so a notebook or another tool can render the same dict.
    """
    from hostside.search.report import build_report

    run_dir = Path(run_dir)
    own = journal is None
    journal = journal if journal is not None else Journal.open(run_dir)
    try:
        report = build_report(run_dir, journal)
        rows = with_screening(journal.candidates(), journal)
        attributes = journal.all_attrs()
        screenings = {r["candidate_id"]: r for r in journal.results("screening")}
        spot_checked = journal.results("spot_check")
    finally:
        if own:
            journal.close()
    config = report["config"]
    metrics = metric_table(config.get("objectives", []))
    extra = {name: m["key"] for name, m in metrics.items() if name not in METRICS}
    front = set(report["search_front"])
    final_ids = {m["id"] for m in report["models"]}
    candidates = []
    for row in rows:
        entry = {key: row.get(key) for key in _CANDIDATE_KEYS}
        entry.update({key: _extra_value(row, name) for name, key in extra.items()})
        entry["parents"] = list(row.get("parents") or [])
        entry["reason"] = _reason(row)
        entry["arch"] = arch_summary(row.get("spec"))
        entry["onnx"] = _relative_link(run_dir, row.get("onnx_path"))
        entry["inherited_fraction"] = row.get("inherited_fraction")
        entry["attrs"] = {**strategy_attributes(attributes.get(row["id"], {})),
                          **_screening_attributes(screenings.get(row["id"]))}
        entry["front"] = row["id"] in front
        entry["final"] = row["id"] in final_ids
        candidates.append(entry)
    specs = {row["id"]: row.get("spec") for row in rows}
    models = []
    for model in report["models"]:
        entry = {key: model.get(key) for key in _MODEL_KEYS}
        entry["onnx"] = _relative_link(run_dir, model.get("onnx"))
        entry["arch"] = arch_summary(specs.get(model["id"]))
        entry["spec"] = specs.get(model["id"])
        entry["summary"] = {k: v for k, v in model.items() if k not in _NOT_SUMMARY}
        models.append(entry)
    predicted = {row["id"]: row.get("predicted_latency_ms") for row in rows}
    spot_checks = [{"id": check["candidate_id"], "predicted_latency_ms": predicted.get(check["candidate_id"]),
                    "latency_ms": check.get("latency_ms"), "meets_budget": check.get("meets_budget"),
                    "onnx": _relative_link(run_dir, check.get("onnx")), "error": check["error"]}
                   for check in spot_checked]
    status = report["status"]
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "format": DATA_FORMAT,
        "version": DATA_VERSION,
        "run": {"name": run_dir.name, "status": status, "live": status == "running", "refresh_s": REFRESH_S,
                "generated_at": now.strftime("%Y-%m-%d %H:%M:%S UTC"), "generated_at_s": now.timestamp(),
                "strategy": config.get("strategy"), "space": config.get("space"), "dataset": config.get("dataset"),
                "board": config.get("board"), "objectives": list(config.get("objectives", [])),
                "budgets": dict(config.get("budgets") or {}), "final_epochs": config.get("final_epochs"),
                "final_data": config.get("final_data", "train"), "counts": report["counts"]},
        "metrics": metrics,
        "charts": _charts(config.get("objectives", [])),
        "candidates": candidates,
        "models": models,
        "best_tradeoff": (report["best_tradeoff"] or {}).get("id"),
        "nothing_meets_budgets": report["nothing_meets_budgets"],
        "nearest_misses": report["nearest_misses"],
        "filter": {**report["filter"], "spot_checks": spot_checks},
        "lineage": {"shown": any(c["parents"] for c in candidates), "depth": LINEAGE_DEPTH},
        "onnx_warning": report.get("onnx_warning"),
    }


def _asset(name: str) -> str:
    return resources.files("hostside").joinpath("report_assets", name).read_text(encoding="utf-8")


def render_html(data: Mapping[str, Any]) -> str:
    """The page as text: the template with the style, the script and ``data`` inlined."""
    # "</" inside a <script> block would end it early; "<\/" is the same string to JSON.
    payload = json.dumps(data, allow_nan=False, default=str).replace("</", "<\\/")
    title = f"hostside run {data.get('run', {}).get('name', '')}"
    page = _asset("report.html")
    for marker, text in (("/*STYLE*/", _asset("report.css")), ("/*SCRIPT*/", _asset("report.js")),
                         ("/*DATA*/", payload), ("<!--TITLE-->", _html_escape(title))):
        page = page.replace(marker, text, 1)
    return page


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_report_html(run_dir: Union[str, Path], data: Mapping[str, Any]) -> Path:
    """Write ``<run_dir>/report.html`` from ``data`` (see :func:`build_report_data`), atomically."""
    path = Path(run_dir) / REPORT_HTML
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{REPORT_HTML}.{os.getpid()}.tmp")
    try:
        partial.write_text(render_html(_finite(data)), encoding="utf-8")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _finite(value: Any) -> Any:
    """NaN and infinities become null: JSON has no such numbers, and the page shows them as '-'."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
