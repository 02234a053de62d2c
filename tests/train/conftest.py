"""Fixtures for the datasets/training tests: a small CNN for digits and the real digits set."""

from __future__ import annotations

import pytest

SMALL_CNN = {
    "name": "digits-small-cnn",
    "input_shape": [1, 8, 8],
    "num_classes": 10,
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


@pytest.fixture
def small_cnn_dict():
    return dict(SMALL_CNN)


@pytest.fixture(scope="session")
def digits():
    from hostside.train.datasets import load_dataset

    return load_dataset("digits")
