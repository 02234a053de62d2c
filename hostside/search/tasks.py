"""Work shipped to training workers (local processes or Dask workers): plain data in and out.

A task is a dict (spec, dataset source, split, training config, parent weights as ``.npz``
bytes, data seed, train fraction); the result is a dict with the metrics and every file the
training wrote, as bytes. Workers write only to a temporary directory of their own, so the
master alone writes the run directory and the journal, and a worker on another machine
needs no shared file system. The module imports torch only inside the function, so
pickling the function reference for a worker never drags the engine along.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from hostside import extensions


def training_task(spec: Mapping[str, Any], dataset: str, split: Mapping[str, Any], config: Mapping[str, Any],
                  parent_weights: Sequence[bytes] = (), data_seed: Optional[int] = None,
                  train_fraction: float = 1.0, precision: Optional[str] = None) -> Dict[str, Any]:
    """The plain-data task ``run_training_task`` takes (``parent_weights`` in priority order;
    ``precision``: also judge the trained model in that number format)."""
    return {"spec": dict(spec), "dataset": dataset, "split": dict(split), "config": dict(config),
            "parent_weights": list(parent_weights), "data_seed": data_seed, "train_fraction": train_fraction,
            "precision": precision}


def run_training_task(task: Mapping[str, Any]) -> Dict[str, Any]:
    """Inherit, train and export one candidate with one intra-op thread; return metrics and files.

    One thread per worker: with N workers on N cores, more threads only make them fight,
    and the measurements taken later must not find a machine still busy with spare threads.
    """
    import torch

    from hostside.train.worker import train_and_export

    torch.set_num_threads(1)
    init, fraction = _inherited_state(task)
    with tempfile.TemporaryDirectory(prefix="hostside-train-") as out:
        metrics = train_and_export(task["spec"], task["dataset"], task["split"], task["config"], out,
                                   init_weights=init, data_seed=task.get("data_seed"),
                                   train_fraction=task.get("train_fraction", 1.0))
        metrics.update(extensions.model_metrics(Path(out) / "model.onnx", task))  # e.g. a number format's
        files = {path.name: path.read_bytes() for path in sorted(Path(out).iterdir()) if path.is_file()}
    metrics["inherited_fraction"] = fraction
    return {"metrics": metrics, "files": files}


def _inherited_state(task: Mapping[str, Any]):
    """(initial state or None, inherited fraction): the child's fresh init with every tensor a
    parent has copied in. The fresh init is drawn exactly as ``train_model`` would draw it."""
    parents: List[bytes] = list(task.get("parent_weights") or ())
    if not parents:
        return None, 0.0
    import torch

    from hostside.arch.build import build_module
    from hostside.arch.spec import ArchSpec
    from hostside.arch.weights import inherit, state_from_bytes, state_of

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(task["config"].get("seed", 0)))
        fresh = state_of(build_module(ArchSpec.from_dict(task["spec"])))
    state, fraction, _ = inherit(fresh, [state_from_bytes(b, "parent weights") for b in parents])
    return state, fraction
