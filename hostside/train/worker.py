"""The unit of work a search hands to a process pool or Dask worker: plain data in (spec
dict, dataset source, split dict, config dict, optional initial weights), files
(``model.onnx``, ``weights.npz``, ``metrics.json``, ``split.json``) and a plain metrics dict out.

The dataset is cached per process (``cached_dataset``), so a worker that trains dozens of
candidates decodes its files once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np

from hostside import extensions
from hostside.arch.cost import analyze
from hostside.arch.spec import ArchSpec
from hostside.train.datasets import Dataset, cached_dataset
from hostside.train.loop import TrainConfig, TrainResult, train_model
from hostside.train.onnx_eval import evaluate_onnx
from hostside.train.splits import Split, make_split

MODEL_FILE = "model.onnx"
WEIGHTS_FILE = "weights.npz"
METRICS_FILE = "metrics.json"
SPLIT_FILE = "split.json"


def _finite(value: float) -> Optional[float]:
    """JSON has no NaN: a value that is not finite (empty val set, diverged net) becomes null."""
    return value if math.isfinite(value) else None


def export_and_measure(spec: ArchSpec, dataset: Dataset, split: Split, config: TrainConfig,
                       result: TrainResult, out_dir: Union[str, Path]) -> Dict[str, Any]:
    """Write ``model.onnx``, ``weights.npz`` (the unfolded, trainable state), ``split.json``
    and ``metrics.json`` for a finished training and return the metrics. The ONNX accuracy is
    measured on the same test indices, and like the test accuracy only when ``config.evaluate_test``:
    a search's candidates never touch the test split."""
    from hostside.arch.export import export_onnx
    from hostside.arch.weights import save_state, state_of, with_normalisation

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split.save(out / SPLIT_FILE)
    weights_sha256 = save_state(with_normalisation(state_of(result.module), result.mean, result.std), out / WEIGHTS_FILE)
    report = export_onnx(result.module, out / MODEL_FILE, mean=result.mean, std=result.std)
    cost = analyze(spec)
    test_accuracy = _finite(result.test_accuracy)
    metrics: Dict[str, Any] = {
        "val_accuracy": _finite(result.val_accuracy),
        "test_accuracy": test_accuracy,
        # The older name of test_accuracy, still read by the search engine and ``hostside prune``.
        "accuracy": test_accuracy,
        "onnx_accuracy": (_finite(evaluate_onnx(report.path, dataset, split.test, threads=config.threads))
                          if config.evaluate_test else None),
        "params": cost.params,
        "deployed_params": cost.deployed_params,
        "macs": cost.macs,
        "activation_bytes": cost.activation_bytes,
        **extensions.spec_metrics(spec),  # e.g. an approximate multiplier's energy
        "train_seconds": result.train_seconds,
        "epochs_run": len(result.history),
        "diverged": result.diverged,
        "onnx": report.path,
        "onnx_sha256": report.sha256,
        "onnx_size_bytes": report.size_bytes,
        "weights": str(out / WEIGHTS_FILE),
        "weights_sha256": weights_sha256,
        "max_abs_diff": _finite(report.max_abs_diff),
        "dataset": dataset.name,
        "dataset_source": dataset.source,
        "split_sizes": {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
        "mean": result.mean,
        "std": result.std,
        "config": config.to_dict(),
        "spec_sha256": spec.content_hash(),
        "history": [{k: _finite(v) if isinstance(v, float) else v for k, v in row.items()} for row in result.history],
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


InitWeights = Union[None, str, Path, bytes, Mapping[str, np.ndarray]]


def initial_state(init_weights: InitWeights) -> Optional[Dict[str, np.ndarray]]:
    """A state from an ``.npz`` path, its bytes, or a state mapping (None: fresh init)."""
    from hostside.arch.weights import load_weights, state_from_bytes

    if init_weights is None:
        return None
    if isinstance(init_weights, bytes):
        return state_from_bytes(init_weights, "initial weights")
    if isinstance(init_weights, (str, Path)):
        return load_weights(init_weights)
    return dict(init_weights)


def train_and_export(spec_dict: Mapping[str, Any], dataset_source: str, split_dict: Optional[Mapping[str, Any]],
                     config_dict: Optional[Mapping[str, Any]], out_dir: Union[str, Path],
                     init_weights: InitWeights = None, data_seed: Optional[int] = None,
                     train_fraction: float = 1.0) -> Dict[str, Any]:
    """Train ``spec_dict`` on ``dataset_source`` and export it to ``out_dir``.

    ``split_dict`` is a :meth:`Split.to_dict` (None draws one from the config's seed);
    ``init_weights`` (an ``.npz`` path, its bytes or a state) are the starting weights, which
    must fit the spec exactly (else one ``UserError`` naming the first tensor that differs);
    ``data_seed`` and ``train_fraction`` as in :func:`train_model`. Returns the metrics dict
    also written to ``metrics.json``: ``val_accuracy``, ``test_accuracy`` and ``onnx_accuracy``
    (null unless the config's ``evaluate_test``),
    ``params``, ``macs``, ``train_seconds``, ``onnx``, ``onnx_sha256``, ``weights``,
    ``weights_sha256``, ``max_abs_diff`` and more.
    """
    spec = ArchSpec.from_dict(spec_dict)
    dataset = cached_dataset(dataset_source)
    config = TrainConfig.from_dict(config_dict)
    split = Split.from_dict(split_dict) if split_dict is not None else make_split(dataset, config.seed)
    result = train_model(spec, dataset, split, config, init_state=initial_state(init_weights), data_seed=data_seed,
                         train_fraction=train_fraction)
    return export_and_measure(spec, dataset, split, config, result, out_dir)
