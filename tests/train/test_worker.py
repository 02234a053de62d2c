"""The plain-data worker entry point, run the way a search runs it: in a spawned process."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from hostside.errors import UserError
from hostside.train.splits import make_split
from hostside.train.worker import train_and_export


@pytest.mark.slow
def test_spawned_worker_reproduces_the_in_process_model(small_cnn_dict, digits, tmp_path):
    split = make_split(digits, 0).to_dict()
    config = {"epochs": 2, "seed": 1, "threads": 1}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_and_export, small_cnn_dict, "digits", split, config, tmp_path / f"w{i}")
                   for i in range(2)]
        remote = [f.result() for f in futures]
    local = train_and_export(small_cnn_dict, "digits", split, config, tmp_path / "local")
    assert remote[0]["onnx_sha256"] == remote[1]["onnx_sha256"] == local["onnx_sha256"]
    assert remote[0]["accuracy"] == local["accuracy"]
    assert json.loads(json.dumps(remote[0])) == remote[0]  # plain data all the way


def test_worker_without_a_split_draws_one_from_the_seed(small_cnn_dict, digits, tmp_path):
    metrics = train_and_export(small_cnn_dict, "digits", None, {"epochs": 1, "seed": 5}, tmp_path)
    recorded = json.loads((tmp_path / "split.json").read_text())
    assert recorded["seed"] == 5 and recorded["test"] == make_split(digits, 5).test.tolist()
    assert metrics["split_sizes"]["test"] == len(recorded["test"])


def test_worker_refuses_a_bad_config(small_cnn_dict, tmp_path):
    with pytest.raises(UserError, match="unknown key"):
        train_and_export(small_cnn_dict, "digits", None, {"epochz": 1}, tmp_path)
