"""The approximate-multiplier convolution as a torch module: every product from the circuit.

Quantisation and signs (chosen so each product is exactly one unsigned 8x8 product of the
circuit): activations and weights are both symmetric sign-magnitude 8-bit numbers,
q = round(x / s) clipped to [-255, 255], with the magnitude |q| the circuit's unsigned operand
and the sign reapplied to its product (XOR of the signs, as a sign-magnitude MAC does).
Activations use one scale per sample (max |x| / 255; inputs after ReLU are all non-negative,
so the sign costs them nothing and the full 8-bit range holds magnitudes), weights one scale
per output channel. An affine uint8 activation with a zero point would instead need the
products (a - z) * w, which the unsigned circuit does not compute.

Zero padding is applied to the quantised input before the lookups, so a padded position is
the circuit's product T[0, w] (not assumed 0: some circuits err there too).

Forward: s_a s_w sum_taps T[q_a, q_w], as one convolution over per-value lookups whose first
column is the operand itself (the exact product) and the others the error factors (see
``hostside.approx.expansion``). In evaluation mode (``module.eval()``) every product is the
table's, exactly: the expansion at the error matrix's full rank, or, above
``GATHER_ABOVE_RANK``, one table read per product in int32 (:func:`gather_conv2d`), whichever
is faster. In training, circuits whose error rank exceeds ``TRAIN_RANK`` use its first
``TRAIN_RANK`` terms (the best rank-16 approximation of the error): a rank-228 circuit would
otherwise cost ~100 float convolutions per layer and step. The per-product bound of that
truncation is ``truncation_bound(name)`` (printed by ``benchmarks/approx_conv.py``); circuits
of rank <= 16 (among them the exact one, QJD, 7C1, 18DU) are exact in training too.
Backward: straight-through, the gradient of the float convolution at the quantised operands,
without running that float convolution forward (``_TableProducts``).
The module keeps ``nn.Conv2d``'s parameters (``weight``, ``bias``), so weights inherit by node
id and the ONNX export writes an ordinary Conv. ``float_products()`` switches every module to
plain float products (used when the float ONNX file is compared with torch).
"""

from __future__ import annotations

import contextlib
import threading
from functools import lru_cache
from typing import Iterator, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hostside.approx.expansion import expansion
from hostside.approx.library import get_multiplier

LEVELS = 255
TRAIN_RANK = 16
#: In evaluation, circuits of a higher error rank read every product from the table
#: (:func:`gather_conv2d`) instead of running the rank-r expansion: above this rank the gather
#: is the faster of the two (``benchmarks/approx_conv.py`` prints both).
GATHER_ABOVE_RANK = 60
_STATE = threading.local()


@contextlib.contextmanager
def float_products() -> Iterator[None]:
    """Inside: approximate convolutions compute ordinary float convolutions."""
    previous = getattr(_STATE, "float", False)
    _STATE.float = True
    try:
        yield
    finally:
        _STATE.float = previous


def quantise(x: torch.Tensor, dims: Tuple[int, ...]) -> Tuple[torch.Tensor, torch.Tensor]:
    """(q, scale): q = round(x / scale) in [-255, 255] (integer-valued, x's dtype), scale =
    max |x| / 255 over ``dims`` (kept as size-1 dims)."""
    scale = x.detach().abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / LEVELS
    q = torch.clamp(torch.round(x.detach() / scale), -LEVELS, LEVELS)
    return q, scale


def _lookup(table: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """(N, C * k, ...) maps of the factor lookups of integer tensor q (N, C, H, W) in a
    (511, k) table: channel c * k + j holds ``table[q[:, c] + 255, j]``.

    One ``index_select`` of rows over q in channels-last order, so the result is a view in
    torch's channels-last layout (no copy; its convolutions run faster there too). The order
    of the channels is the same for activations and weights, which is all the sum needs."""
    n, c, h, w = q.shape
    k = table.shape[1]
    picked = table.index_select(0, q.permute(0, 2, 3, 1).reshape(-1).long() + LEVELS)   # (N*H*W*C, k)
    return picked.view(n, h, w, c * k).permute(0, 3, 1, 2)


def product_factors(name: str, rank: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """(activation, weight) lookups (511, 1 + rank): column 0 the signed operand itself (the
    exact product a*b), then the first ``rank`` error factors. One convolution over both sums
    exact product and error at once: T[a, b] = a*b + sum_k u_k(a) v_k(b)."""
    exp = expansion(name)
    values = np.arange(-LEVELS, LEVELS + 1, dtype=np.float64)[:, None]
    left = np.concatenate([values, exp.left[:, :rank]], axis=1)
    right = np.concatenate([values, exp.right[:, :rank]], axis=1)
    return torch.from_numpy(left).to(dtype), torch.from_numpy(right).to(dtype)


def _factor_conv2d(qa: torch.Tensor, qw: torch.Tensor, act_factors: torch.Tensor, weight_factors: torch.Tensor,
                   stride, dilation) -> torch.Tensor:
    if act_factors.shape[1] == 1:  # exact circuit: the lookups would return the operands
        return F.conv2d(qa, qw, None, stride, 0, dilation)
    return F.conv2d(_lookup(act_factors, qa), _lookup(weight_factors, qw), None, stride, 0, dilation)


def lookup_conv2d(qa: torch.Tensor, qw: torch.Tensor, name: str, stride=1, dilation=1) -> torch.Tensor:
    """sum over taps of sign * T[|qa|, |qw|] for integer-valued qa (N, C, H, W, already padded)
    and qw (O, C, kh, kw) in [-255, 255], computed in qa's dtype (float64: exact integers)."""
    act_factors, weight_factors = product_factors(name, expansion(name).rank, qa.dtype)
    return _factor_conv2d(qa, qw, act_factors, weight_factors, stride, dilation)


@lru_cache(maxsize=16)
def signed_table(name: str) -> torch.Tensor:
    """(511, 511) int32: ``[a + 255, b + 255]`` = sign(a) sign(b) T[|a|, |b|], the product the
    sign-magnitude MAC forms from the circuit's unsigned one."""
    table = torch.from_numpy(get_multiplier(name).table.astype(np.int32))
    values = torch.arange(-LEVELS, LEVELS + 1)
    magnitude = values.abs()
    signs = torch.sign(values).to(torch.int32)
    return signs[:, None] * table[magnitude][:, magnitude] * signs[None, :]


def gather_conv2d(qa: torch.Tensor, qw: torch.Tensor, name: str, stride=1, dilation=1) -> torch.Tensor:
    """The same sum as :func:`lookup_conv2d`, one table read per product, in exact int32.

    Why: a circuit whose error matrix has a high rank (12N4: 228) would need hundreds of
    float convolutions; reading every product costs a fixed ~50 float convolutions instead.
    Per tap j, the table's columns for the O weights of that tap form a (511, O) table whose
    rows are gathered at the activations (contiguous rows, accumulated in place). int32 holds
    any sum of up to 33,000 products of at most 255 x 255 exactly."""
    n, c, h, w = qa.shape
    o, _, kh, kw = qw.shape
    stride_h = stride if isinstance(stride, int) else stride[0]
    dilation_h = dilation if isinstance(dilation, int) else dilation[0]
    cols = F.unfold(qa, (kh, kw), dilation=dilation, stride=stride)                   # (N, C*K, P)
    positions = cols.shape[2]
    activations = (cols.long() + LEVELS).transpose(0, 1).reshape(cols.shape[1], -1)   # (C*K, N*P)
    weights = qw.reshape(o, -1).long() + LEVELS                                        # (O, C*K)
    table = signed_table(name)
    out = torch.zeros((n * positions, o), dtype=torch.int32)
    for tap in range(activations.shape[0]):
        out += table.index_select(1, weights[:, tap]).index_select(0, activations[tap])
    ho = (h - dilation_h * (kh - 1) - 1) // stride_h + 1
    return out.view(n, positions, o).permute(0, 2, 1).reshape(n, o, ho, positions // ho).to(qa.dtype)


class _TableProducts(torch.autograd.Function):
    """Forward: the scaled sums of the circuit's products at the quantised operands (one
    convolution over the factor lookups, or one table read per product). Backward:
    straight-through, the float convolution's gradients at the quantised operands, from one
    ``convolution_backward`` call (no float forward is run for it)."""

    @staticmethod
    def forward(ctx, x, weight, act_factors, weight_factors, stride, dilation, gather_name):
        qa, sa = quantise(x, (1, 2, 3))
        qw, sw = quantise(weight, (1, 2, 3))
        if gather_name:
            sums = gather_conv2d(qa, qw, gather_name, stride, dilation)
        else:
            sums = _factor_conv2d(qa, qw, act_factors, weight_factors, stride, dilation)
        ctx.save_for_backward(qa.mul_(sa), qw.mul_(sw))
        ctx.stride, ctx.dilation = stride, dilation
        return sums.mul_(sa * sw.reshape(1, -1, 1, 1))

    @staticmethod
    def backward(ctx, grad):
        xa, xw = ctx.saved_tensors
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad, xa, xw, None, list(ctx.stride), [0, 0], list(ctx.dilation), False, [0, 0], 1,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[1], False])
        return grad_x, grad_w, None, None, None, None, None


class ApproxConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward multiplies through an approximate 8-bit circuit."""

    def __init__(self, *args, multiplier: str, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1:
            raise ValueError("approximate convolutions support groups=1 only")
        self.multiplier = multiplier
        self.full_rank = expansion(multiplier).rank
        act_factors, weight_factors = product_factors(multiplier, self.full_rank, torch.float32)
        self.register_buffer("_act_factors", act_factors, persistent=False)
        self.register_buffer("_weight_factors", weight_factors, persistent=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, multiplier={self.multiplier}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(_STATE, "float", False):
            return super().forward(x)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        gather = not self.training and self.full_rank > GATHER_ABOVE_RANK
        columns = 1 + (min(self.full_rank, TRAIN_RANK) if self.training else self.full_rank)
        out = _TableProducts.apply(x, self.weight, self._act_factors[:, :columns].to(x.dtype),
                                   self._weight_factors[:, :columns].to(x.dtype), self.stride, self.dilation,
                                   self.multiplier if gather else None)
        if self.bias is not None:
            out = out + self.bias.reshape(1, -1, 1, 1)
        return out


def truncation_bound(name: str, rank: int = TRAIN_RANK) -> float:
    """Max |table product - product of the rank-``rank`` expansion| over all operand pairs."""
    exp = expansion(name)
    if exp.rank <= rank:
        return exp.max_residual
    left, right = exp.left[255:, :rank], exp.right[255:, :rank]
    return float(np.abs(exp.error_table() - left @ right.T).max())
