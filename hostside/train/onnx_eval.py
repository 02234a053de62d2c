"""Accuracy of an exported ONNX model with onnxruntime on *raw* inputs.

This is the check that matters for deployment: the board feeds raw values, so the file's
built-in normalisation must reproduce the accuracy torch measured on normalised tensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np

from hostside.errors import UserError
from hostside.train.datasets import Dataset

EVAL_BATCH = 512


def evaluate_onnx(onnx_path: Union[str, Path], dataset: Dataset, indices: Sequence[int], threads: int = 1) -> float:
    """Top-1 accuracy of the model at ``onnx_path`` on ``dataset`` examples ``indices``."""
    from hostside.onnx.graph import network_input
    from hostside.onnx.load import read_model
    from hostside.onnx.runtime import open_session, predict

    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) == 0:
        return float("nan")
    network_input(read_model(onnx_path), onnx_path)  # one float32 input, else one line saying so
    session = open_session(onnx_path, threads)
    dims = session.get_inputs()[0].shape
    fits = len(dims) == 4 and all(not isinstance(d, int) or d == s for d, s in zip(dims[1:], dataset.input_shape))
    if not fits:
        raise UserError(
            f"{onnx_path}: model input {dims} does not fit dataset {dataset.name!r} {list(dataset.input_shape)}"
        )
    correct = 0
    for start in range(0, len(indices), EVAL_BATCH):
        batch = indices[start:start + EVAL_BATCH]
        logits = predict(session, dataset.x[batch], EVAL_BATCH)  # in chunks the file's batch axis takes
        correct += int((logits.argmax(1) == dataset.y[batch]).sum())
    return correct / len(indices)
