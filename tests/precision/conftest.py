"""A digits CNN trained once per test session (a few seconds), exported as the ONNX file the
precision tests analyse, with its torch module and split."""

from pathlib import Path
from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    from hostside.arch.examples import digits_small_cnn
    from hostside.arch.spec import ArchSpec
    from hostside.train.datasets import load_dataset
    from hostside.train.loop import TrainConfig, train_model
    from hostside.train.splits import make_split
    from hostside.train.worker import export_and_measure

    out = Path(tmp_path_factory.mktemp("digits_cnn"))
    spec = ArchSpec.from_dict(digits_small_cnn())
    dataset = load_dataset("digits")
    split = make_split(dataset, 0)
    config = TrainConfig(epochs=3, seed=0)
    result = train_model(spec, dataset, split, config)
    metrics = export_and_measure(spec, dataset, split, config, result, out)
    return SimpleNamespace(onnx=Path(metrics["onnx"]), dir=out, dataset=dataset, split=split, result=result,
                           metrics=metrics)
