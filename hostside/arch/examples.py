"""Reference architectures written as ArchSpec JSON: a known network to train, benchmark and
test against, so those places share one definition instead of copies."""

from __future__ import annotations

import copy
from typing import Any, Dict

_DIGITS_SMALL_CNN: Dict[str, Any] = {
    "name": "digits-small-cnn", "input_shape": [1, 8, 8], "num_classes": 10,
    "nodes": [
        {"id": "c1", "op": "conv2d", "inputs": ["input"], "out_channels": 16, "kernel": 3, "padding": 1},
        {"id": "b1", "op": "batchnorm", "inputs": ["c1"]},
        {"id": "r1", "op": "relu", "inputs": ["b1"]},
        {"id": "c2", "op": "conv2d", "inputs": ["r1"], "out_channels": 32, "kernel": 3, "padding": 1},
        {"id": "b2", "op": "batchnorm", "inputs": ["c2"]},
        {"id": "r2", "op": "relu", "inputs": ["b2"]},
        {"id": "p", "op": "maxpool", "inputs": ["r2"], "kernel": 2},
        {"id": "f", "op": "flatten", "inputs": ["p"]},
        {"id": "d", "op": "dropout", "inputs": ["f"], "p": 0.1},
        {"id": "fc", "op": "linear", "inputs": ["d"], "out_features": 10},
    ],
}


def digits_small_cnn() -> Dict[str, Any]:
    """Two conv-BN-ReLU layers, max-pool and a linear classifier for 1x8x8 digits (a fresh copy
    each call, so callers may edit it)."""
    return copy.deepcopy(_DIGITS_SMALL_CNN)
