"""Extension hooks: what packages beside the search add to every candidate and report.

Reduced precision (``hostside.precision``) and approximate multipliers (``hostside.approx``)
add objectives and budgets, figures of each trained network and fields of each report entry.
The search, the training worker and the reports call the hooks below and never import those
packages: the packages are named here as data, imported on first use, and each registers its
parts when imported. A new extension is one module that registers, plus its name in
``EXTENSION_MODULES``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

#: The modules that register extensions, imported once by ``load``.
EXTENSION_MODULES = ("hostside.precision.search", "hostside.approx.metrics")

#: (kind "objective" or "budget", name, sense or bound kind, journal column or None, reader)
SearchMetric = Tuple[str, str, str, Optional[str], Callable[[Mapping[str, Any]], Optional[float]]]
#: A trained network's spec -> figures it adds to the candidate's metrics (approx: the circuit's energy).
SpecMetrics = Callable[[Any], Dict[str, Any]]
#: (exported ONNX file, the training task) -> figures (precision: accuracy in the run's format).
ModelMetrics = Callable[[Path, Mapping[str, Any]], Dict[str, Any]]
#: A candidate's training metrics -> fields of its report entry.
ReportFields = Callable[[Mapping[str, Any]], Dict[str, Any]]

_SEARCH_METRICS: List[SearchMetric] = []
_SPEC_METRICS: List[SpecMetrics] = []
_MODEL_METRICS: List[ModelMetrics] = []
_REPORT_FIELDS: List[ReportFields] = []
_LOADED = False


def register_search_metrics(metrics: List[SearchMetric]) -> None:
    _SEARCH_METRICS.extend(metrics)


def register_spec_metrics(hook: SpecMetrics) -> None:
    _SPEC_METRICS.append(hook)


def register_model_metrics(hook: ModelMetrics) -> None:
    _MODEL_METRICS.append(hook)


def register_report_fields(hook: ReportFields) -> None:
    _REPORT_FIELDS.append(hook)


def load() -> None:
    """Import every extension module once; done on first use, not at import, so the CLI, which
    builds its help from the search's modules, starts fast."""
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for name in EXTENSION_MODULES:
            importlib.import_module(name)


def search_metrics() -> List[SearchMetric]:
    load()
    return list(_SEARCH_METRICS)


def spec_metrics(spec: Any) -> Dict[str, Any]:
    load()
    out: Dict[str, Any] = {}
    for hook in _SPEC_METRICS:
        out.update(hook(spec))
    return out


def model_metrics(onnx_path: Path, task: Mapping[str, Any]) -> Dict[str, Any]:
    load()
    out: Dict[str, Any] = {}
    for hook in _MODEL_METRICS:
        out.update(hook(onnx_path, task))
    return out


def report_fields(train_metrics: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    load()
    out: Dict[str, Any] = {}
    for hook in _REPORT_FIELDS:
        out.update(hook(train_metrics or {}))
    return out
