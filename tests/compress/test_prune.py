"""K-means++ filter pruning: the pruned network stays valid (torch == ONNX, read-back params
equal the reported ones), channels are fixed through batchnorm, concat and flatten, the share
limit holds, and bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hostside import cli
from hostside.arch.build import build_module
from hostside.arch.onnx_stats import onnx_stats
from hostside.arch.spec import ArchSpec
from hostside.arch.weights import load_weights, save_state, state_of, with_normalisation
from hostside.compress.prune import apply_keep, kmeans_keep, prunable_convs
from hostside.spaces import make_space

GENES = {"left": "elu", "right": "relu", "condense_layers": 2, "fels": 16, "kernel": 3, "optimizer": "adam",
         "lr": 0.002}


def _dense(tmp_path):
    spec = make_space("dense", (1, 8, 8), 10, growth=24, dropout=0.0).decode(GENES)
    spec.save(tmp_path / "spec.json")
    state = with_normalisation(state_of(build_module(spec)), [0.0], [1.0])
    save_state(state, tmp_path / "w.npz")
    return spec, state


def test_kmeans_keeps_one_filter_per_cluster_of_duplicates():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 2, 3, 3))
    weight = np.concatenate([base, base + 1e-4, base[:2] - 1e-4])  # 10 filters, 4 distinct
    keep = kmeans_keep(weight, 0.4, seed=0)
    assert len(keep) == 4
    assert sorted({int(i) % 4 for i in keep}) == [0, 1, 2, 3]


def test_channels_are_fixed_through_batchnorm_concat_and_flatten(tmp_path):
    import torch

    spec, state = _dense(tmp_path)
    convs = prunable_convs(spec)
    assert convs == [n.id for n in spec.nodes if n.op == "conv2d"]
    keep = {convs[0]: np.array([0, 2, 5]), convs[-1]: np.array([1, 3])}
    pruned, new_state = apply_keep(spec, state, keep)
    net = build_module(pruned)
    from hostside.arch.weights import load_state

    load_state(net, new_state)
    x = torch.randn(3, 1, 8, 8)
    # zeroing the removed filters in the full network computes what the pruned one does
    zeroed = {k: v.copy() for k, v in state.items()}
    for conv, kept in keep.items():
        dropped = np.setdiff1d(np.arange(zeroed[f"{conv}/weight"].shape[0]), kept)
        zeroed[f"{conv}/weight"][dropped] = 0
    full = build_module(spec)
    load_state(full, zeroed)
    with torch.no_grad():
        assert torch.allclose(full.eval()(x), net.eval()(x), atol=1e-5)


def test_prune_command_keeps_the_network_valid_and_reports_read_back_params(tmp_path, capsys):
    _dense(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["prune", "--spec", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "w.npz"),
                     "--max-prune", "0.3", "--iterations", "3", "--fine-tune-epochs", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "prune.json").read_text())
    last = report["iterations"][-1]
    assert 0 < last["pruned_share"] <= 0.3
    assert all(r["nid"] == pytest.approx(r["accuracy"] / r["params"]) for r in report["iterations"])
    pruned = ArchSpec.load(out / "pruned_spec.json")
    assert pruned.cost.params == last["params"]
    assert onnx_stats(out / "pruned.onnx")["params"] == pruned.cost.deployed_params
    from hostside.arch.weights import load_state

    load_state(build_module(pruned), load_weights(out / "pruned_weights.npz"))
    assert (out / "prune.png").stat().st_size > 1000


@pytest.mark.parametrize("flags,message", [
    (["--max-prune", "1.2"], "--max-prune 1.2 is not allowed; give the largest share"),
    (["--max-prune", "0"], "--max-prune 0.0 is not allowed"),
])
def test_a_share_outside_0_1_is_one_line(tmp_path, capsys, flags, message):
    _dense(tmp_path)
    code = cli.main(["prune", "--spec", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "w.npz"),
                     "--out", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1


def test_weights_of_another_network_are_one_line(tmp_path, capsys):
    _dense(tmp_path)
    other = make_space("dense", (1, 8, 8), 10).decode({**GENES, "condense_layers": 1})
    save_state(with_normalisation(state_of(build_module(other)), [0.0], [1.0]), tmp_path / "other.npz")
    code = cli.main(["prune", "--spec", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "other.npz"),
                     "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and "belong" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "prune.json").exists()
