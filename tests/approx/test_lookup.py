"""The approximate convolution takes every product from the circuit's table, exactly."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hostside.approx.conv import (GATHER_ABOVE_RANK, ApproxConv2d, float_products, gather_conv2d, lookup_conv2d, quantise,
                                  truncation_bound)
from hostside.approx.expansion import expansion
from hostside.approx.library import DEFAULT_LIBRARY, EXACT, check_names, check_table, get_multiplier, load_tables
from hostside.errors import UserError


def direct_lookup(qa: np.ndarray, qw: np.ndarray, table: np.ndarray, stride: int = 1) -> np.ndarray:
    """sum over taps of sign(a) sign(w) T[|a|, |w|], one product at a time (int64)."""
    n, c, h, w = qa.shape
    o, _, kh, kw = qw.shape
    ho, wo = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, o, ho, wo), dtype=np.int64)
    for y in range(ho):
        for x in range(wo):
            patch = qa[:, :, y * stride:y * stride + kh, x * stride:x * stride + kw]   # (n, c, kh, kw)
            a, b = patch[:, None], qw[None]                                             # (n, o, c, kh, kw)
            prod = np.sign(a) * np.sign(b) * table[np.abs(a), np.abs(b)].astype(np.int64)
            out[:, :, y, x] = prod.reshape(n, o, -1).sum(axis=2)
    return out


@pytest.mark.parametrize("name", ["mul8u_QKX", "mul8u_12N4", "mul8u_7C1", "mul8u_L40", EXACT])
def test_lookup_conv_equals_direct_per_product_lookup_on_random_integers(name):
    rng = np.random.default_rng(1)
    qa = rng.integers(-255, 256, size=(2, 3, 7, 6))
    qw = rng.integers(-255, 256, size=(4, 3, 3, 3))
    want = direct_lookup(qa, qw, get_multiplier(name).table, stride=2)
    got = lookup_conv2d(torch.from_numpy(qa).double(), torch.from_numpy(qw).double(), name, stride=2)
    assert np.array_equal(np.rint(got.numpy()).astype(np.int64), want)
    gathered = gather_conv2d(torch.from_numpy(qa).float(), torch.from_numpy(qw).float(), name, stride=2)
    assert np.array_equal(gathered.numpy().astype(np.int64), want)
    if name != EXACT:  # the circuit really differs from exact products here
        assert not np.array_equal(want, direct_lookup(qa, qw, get_multiplier(EXACT).table, stride=2))


def test_conv_layer_forward_is_the_scaled_table_lookup_including_padding():
    torch.manual_seed(0)
    name = "mul8u_185Q"
    layer = ApproxConv2d(3, 5, 3, padding=1, multiplier=name).double().eval()
    x = torch.relu(torch.randn(2, 3, 6, 6, dtype=torch.float64))
    with torch.no_grad():
        got = layer(x)
    padded = F.pad(x, (1, 1, 1, 1))
    qa, sa = quantise(padded, (1, 2, 3))
    qw, sw = quantise(layer.weight, (1, 2, 3))
    ints = direct_lookup(qa.long().numpy(), qw.long().numpy(), get_multiplier(name).table)
    want = ints * (sa.numpy() * sw.reshape(1, -1, 1, 1).numpy()) + layer.bias.detach().numpy().reshape(1, -1, 1, 1)
    assert np.allclose(got.numpy(), want, rtol=0, atol=1e-9 * np.abs(want).max())
    with float_products(), torch.no_grad():
        assert torch.allclose(layer(x), F.conv2d(x, layer.weight, layer.bias, padding=1))


def test_a_high_rank_circuit_evaluates_every_product_exactly_in_float32():
    torch.manual_seed(2)
    name = "mul8u_12N4"
    assert expansion(name).rank > GATHER_ABOVE_RANK  # evaluated by one table read per product
    layer = ApproxConv2d(6, 4, 3, padding=1, stride=2, multiplier=name).eval()
    x = torch.relu(torch.randn(2, 6, 9, 9))
    with torch.no_grad():
        got = layer(x)
    qa, sa = quantise(F.pad(x, (1, 1, 1, 1)), (1, 2, 3))
    qw, sw = quantise(layer.weight, (1, 2, 3))
    ints = direct_lookup(qa.long().numpy(), qw.long().numpy(), get_multiplier(name).table, stride=2)
    want = ints * (sa.numpy() * sw.reshape(1, -1, 1, 1).numpy()) + layer.bias.detach().numpy().reshape(1, -1, 1, 1)
    assert np.allclose(got.numpy(), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


def test_backward_is_straight_through_float():
    layer = ApproxConv2d(2, 3, 3, multiplier="mul8u_QKX")
    x = torch.rand(1, 2, 5, 5, requires_grad=True)
    layer(x).sum().backward()
    ref = torch.nn.Conv2d(2, 3, 3)
    ref.load_state_dict(layer.state_dict())
    xr = x.detach().clone().requires_grad_(True)
    qa, sa = quantise(xr, (1, 2, 3))
    qw, sw = quantise(ref.weight, (1, 2, 3))
    F.conv2d(qa * sa, qw * sw, ref.bias).sum().backward()
    assert torch.allclose(layer.bias.grad, torch.full((3,), 9.0))
    assert torch.allclose(x.grad, torch.autograd.grad(F.conv2d(xr, (qw * sw), None).sum(), xr)[0], atol=1e-6)


def test_every_shipped_expansion_rebuilds_its_error_matrix():
    values = np.arange(256)
    for name in DEFAULT_LIBRARY:
        exp = expansion(name)
        error = get_multiplier(name).table.astype(np.int64) - np.outer(values, values)
        assert np.array_equal(np.rint(exp.error_table()).astype(np.int64), error)
        assert exp.max_residual < 1e-6


def test_library_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="unknown"):
        check_names(["mul8u_NOPE", EXACT])
    with pytest.raises(UserError, match="lacks the exact circuit"):
        check_names(["mul8u_QKX"])
    with pytest.raises(UserError, match="256x256 uint16"):
        check_table("mul8u_X", np.zeros((256, 255), np.uint16), "t.npz")
    with pytest.raises(UserError, match="256x256 uint16"):
        check_table("mul8u_X", np.zeros((256, 256), np.float32), "t.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mul8u_QKX=np.zeros((16, 16), np.int32))
    with pytest.raises(UserError, match="shape \\[16, 16\\] and dtype int32"):
        load_tables(bad, ["mul8u_QKX"])
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot be read"):
        load_tables(junk, ["mul8u_QKX"])


def test_training_forward_is_exact_up_to_rank_16_and_bounded_above():
    torch.manual_seed(1)
    x = torch.relu(torch.randn(2, 4, 6, 6, dtype=torch.float64))
    for name, exact_in_training in (("mul8u_QJD", True), ("mul8u_12N4", False)):
        layer = ApproxConv2d(4, 3, 3, multiplier=name).double()
        with torch.no_grad():
            train_out = layer.train()(x)
            eval_out = layer.eval()(x)
        qa, sa = quantise(x, (1, 2, 3))
        qw, sw = quantise(layer.weight, (1, 2, 3))
        scale = (sa * sw.reshape(1, -1, 1, 1)).numpy()
        gap = np.abs((train_out - eval_out).numpy()) / scale
        if exact_in_training:
            assert gap.max() < 1e-6
        else:
            assert 0 < gap.max() <= 4 * 9 * truncation_bound(name)
