"""Fixtures for the datasets/training tests: a small CNN for digits and the real digits set."""

from __future__ import annotations

import pytest

from hostside.arch.examples import digits_small_cnn


@pytest.fixture
def small_cnn_dict():
    return digits_small_cnn()


@pytest.fixture(scope="session")
def digits():
    from hostside.train.datasets import load_dataset

    return load_dataset("digits")
