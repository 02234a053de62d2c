"""Work shipped to training workers (local processes or Dask workers): plain data in and out.

Kept in a module of its own, importing torch only inside the function, so pickling the
function reference for a worker never drags the engine along.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping


def train_candidate(spec_dict: Mapping[str, Any], dataset_source: str, split_dict: Mapping[str, Any],
                    config_dict: Mapping[str, Any], out_dir: str) -> Dict[str, Any]:
    """Train and export one candidate with one intra-op thread.

    One thread per worker: with N workers on N cores, more threads only make them fight,
    and the measurements taken later must not find a machine still busy with spare threads.
    """
    import torch

    from hostside.train.worker import train_and_export

    torch.set_num_threads(1)
    return train_and_export(spec_dict, dataset_source, split_dict, config_dict, out_dir)
