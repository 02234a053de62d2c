"""What a search needs from reduced precision (EA4CNN's CNN*-FX networks).

- The objective and budget ``mult_energy_mj``: E_mult of one inference,
  conv/FC multiplications x energy per multiplication in the candidate's format
  (:mod:`hostside.precision.energy`).
- The budget ``weight_bytes``: deployed weights at the candidate's format's bits per value.
- :func:`precision_metrics`: under a ``precision`` setting (e.g. ``fx16``), a trained
  candidate's accuracy is taken with the emulated format (training itself stays float, as in
  EA4CNN), the float figures kept beside it.

A row (journal row or ``Candidate.metrics``) names its format in ``precision`` (absent: float).
Both readers work before training from the analytic figures every row has (``macs``,
``deployed_params``), so the pre-training filter can apply them. The multiplication count is
``macs`` (conv *and* fully connected layers, as EA4CNN's E_mult counts), not the cost's
``n_mult``, which counts convolutions only (CGP's N_mult).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

from hostside import extensions
from hostside.precision.energy import mult_energy_mj
from hostside.precision.formats import FLOAT, Format, parse_format

PRECISION_KEY = "precision"
DEFAULT_MODE = "multiplication"  # EA4CNN's method: only the multiplications are in the format


def row_format(row: Mapping[str, Any]) -> Format:
    """The number format a row was evaluated in (float when it names none)."""
    name = row.get(PRECISION_KEY)
    return parse_format(name) if name else FLOAT


def _first(row: Mapping[str, Any], *keys: str) -> Optional[Any]:
    cost = row.get("cost") if isinstance(row.get("cost"), Mapping) else {}
    for key in keys:
        for source in (row, cost):
            if source.get(key) is not None:
                return source[key]
    return None


def mult_energy_of(row: Mapping[str, Any]) -> Optional[float]:
    """E_mult in mJ of the row's network in the row's format (None without a multiplication count)."""
    if row.get("mult_energy_mj") is not None:
        return float(row["mult_energy_mj"])
    multiplications = _first(row, "macs")
    return None if multiplications is None else mult_energy_mj(int(multiplications), row_format(row))


def weight_bytes_of(row: Mapping[str, Any]) -> Optional[float]:
    """Deployed weight bytes of the row's network in the row's format."""
    from hostside.precision.analysis import weight_bytes

    if row.get("weight_bytes") is not None and not isinstance(row["weight_bytes"], Mapping):
        return float(row["weight_bytes"])
    fmt = row_format(row)
    stored = _first(row, "weight_bytes")
    if fmt.kind == "int8" and isinstance(stored, Mapping) and "int8" in stored:
        return float(stored["int8"])  # the analytic cost's int8 weights + int32 biases
    params = _first(row, "deployed_params", "params")
    if params is None:
        return None
    biases = _first(row, "deployed_biases", "bias_params") or 0
    return float(weight_bytes(fmt, int(params), int(biases)))


#: The figures this package adds to a search, as (kind, name, sense or budget kind, journal
#: column, reader), registered with ``hostside.extensions`` so that neither side imports the other.
extensions.register_search_metrics([
    ("objective", "mult_energy_mj", "min", "mult_energy_mj", mult_energy_of),
    ("budget", "mult_energy_mj", "max", None, mult_energy_of),
    ("budget", "weight_bytes", "max", None, weight_bytes_of),
])


def precision_metrics(onnx_path: Any, dataset: Any, split: Any, precision: str, mode: str = DEFAULT_MODE,
                      multiplications: Optional[int] = None, evaluate_test: bool = True) -> Dict[str, Any]:
    """Metrics of a trained candidate under ``precision``: ``val_accuracy`` (and, with
    ``evaluate_test``, ``test_accuracy``) with the emulated format (the search optimises the
    validation one), the same of the float file prefixed ``float_``, and ``mult_energy_mj`` /
    ``weight_bytes`` at the format. During a search ``evaluate_test`` is off: the test split is
    read only for the final front. ``split`` is a :class:`hostside.train.splits.Split`."""
    from hostside.precision.analysis import parameter_counts, weight_bytes
    from hostside.precision.emulate import OnnxEmulator

    fmt = parse_format(precision)
    if fmt.kind == "int8":
        from hostside.errors import UserError

        raise UserError("--precision int8 is not emulated; use `hostside quantize` on the front's models, "
                        "or a float / fixed-point format such as fx16")
    emulator = OnnxEmulator(onnx_path)
    emulator.check_input(dataset.input_shape, dataset.name)
    metrics: Dict[str, Any] = {PRECISION_KEY: fmt.name, "precision_mode": mode}
    splits = [("val_accuracy", split.val)] + ([("test_accuracy", split.test)] if evaluate_test else [])
    for key, indices in splits:
        metrics[f"float_{key}"] = _score(emulator, dataset, indices, None, mode)
        metrics[key] = _score(emulator, dataset, indices, fmt, mode)
    metrics.setdefault("test_accuracy", None)
    metrics["accuracy"] = metrics["test_accuracy"]  # the worker's legacy key, test or nothing
    counts = parameter_counts(onnx_path)
    metrics["weight_bytes"] = weight_bytes(fmt, counts["params"], counts["bias_params"])
    if multiplications is None:
        from hostside.arch.onnx_stats import onnx_stats

        multiplications = int(onnx_stats(onnx_path)["macs"])
    metrics["mult_energy_mj"] = mult_energy_mj(multiplications, fmt)
    return metrics


def _score(emulator: Any, dataset: Any, indices: Sequence[int], fmt: Optional[Format], mode: str) -> Optional[float]:
    if len(indices) == 0:
        return None
    result = emulator.evaluate(dataset.x[indices], dataset.y[indices], fmt, mode)
    return result.to_dict()["accuracy"]


def _trained_model_metrics(onnx_path: Path, task: Mapping[str, Any]) -> Dict[str, Any]:
    """A trained candidate's accuracy and costs in the run's number format (training stays float);
    nothing for a run without ``precision``."""
    if not task.get("precision"):
        return {}
    from hostside.train.datasets import cached_dataset
    from hostside.train.splits import Split

    return precision_metrics(onnx_path, cached_dataset(task["dataset"]), Split.from_dict(task["split"]),
                             task["precision"], evaluate_test=bool(task["config"].get("evaluate_test", True)))


extensions.register_model_metrics(_trained_model_metrics)
