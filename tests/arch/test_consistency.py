"""Analytic cost == torch's own count == cost read back from the exported ONNX file,
on hundreds of seeded random specs that exercise every op."""

import numpy as np
import pytest
import torch
from torch import nn

from hostside.arch.build import build_module, count_params
from hostside.arch.export import export_onnx
from hostside.arch.onnx_stats import onnx_stats
from hostside.arch.random_specs import random_spec

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 40, 24)]
SEEDS = range(300)


def _hook_macs(net: nn.Module, input_shape) -> int:
    """MACs counted independently of the cost model, from the tensors torch really computes."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        net.eval()(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return total


def _randomise_batchnorms(net: nn.Module, seed: int) -> None:
    """Non-trivial statistics, so a wrong fold shows up in the output comparison."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1, generator=g)
            m.running_var.uniform_(0.5, 2.0, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.uniform_(-0.5, 0.5, generator=g)


@pytest.mark.parametrize("seed", SEEDS)
def test_analytic_equals_torch(seed):
    spec = random_spec(seed, input_shape=SHAPES[seed % len(SHAPES)])
    net = build_module(spec)
    cost = spec.cost
    assert cost.params == count_params(net)
    assert cost.macs == _hook_macs(net, spec.input_shape)
    with torch.no_grad():
        out = net.eval()(torch.zeros(1, *spec.input_shape))
    assert tuple(out.shape) == (1, spec.num_classes)
    by_id = {layer.id: layer.output_shape for layer in cost.layers}
    assert by_id[spec.output] == (spec.num_classes,)


@pytest.mark.parametrize("seed", SEEDS[::3])
def test_analytic_equals_onnx_read_back(seed, tmp_path):
    spec = random_spec(seed, input_shape=SHAPES[seed % len(SHAPES)])
    net = build_module(spec)
    _randomise_batchnorms(net, seed)
    check = seed % 5 == 0  # onnxruntime against torch on a fifth of them (the slow part)
    channels = spec.input_shape[0]
    report = export_onnx(net, tmp_path / "m.onnx", mean=[0.4] * channels, std=[0.3] * channels, check=check)
    stats = onnx_stats(report.path)
    assert stats["params"] == spec.cost.deployed_params
    assert stats["macs"] == spec.cost.macs
    assert list(stats["input_shape"]) == list(spec.input_shape)
    if check:
        assert report.max_abs_diff < 1e-3


def test_export_takes_raw_inputs_with_normalisation_inside(tmp_path):
    import onnxruntime as ort

    spec = random_spec(7, input_shape=(1, 8, 8))
    net = build_module(spec).eval()
    report = export_onnx(net, tmp_path / "m.onnx", mean=[8.0], std=[4.0])
    raw = np.random.default_rng(1).uniform(0, 16, size=(3, 1, 8, 8)).astype(np.float32)
    got = ort.InferenceSession(report.path, providers=["CPUExecutionProvider"]).run(None, {"input": raw})[0]
    with torch.no_grad():
        want = net((torch.from_numpy(raw) - 8.0) / 4.0).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert report.opset >= 17 and len(report.sha256) == 64
