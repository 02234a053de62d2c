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

Forward: s_a s_w (conv(q_a, q_w) + error expansion), see ``hostside.approx.expansion``. In
evaluation mode (``module.eval()``) the expansion has the error matrix's full rank: every product is the
table's, exactly. In training, circuits whose error rank exceeds ``TRAIN_RANK`` use its first
``TRAIN_RANK`` terms (the best rank-16 approximation of the error): a rank-228 circuit would
otherwise cost ~100 float convolutions per layer and step. The per-product bound of that
truncation is ``truncation_bound(name)`` (printed by ``benchmarks/approx_conv.py``); circuits
of rank <= 16 (among them the exact one, QJD, 7C1, 18DU) are exact in training too.
Backward: straight-through, the gradient of the float convolution at the quantised operands.
The module keeps ``nn.Conv2d``'s parameters (``weight``, ``bias``), so weights inherit by node
id and the ONNX export writes an ordinary Conv. ``float_products()`` switches every module to
plain float products (used when the float ONNX file is compared with torch).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hostside.approx.expansion import expansion

LEVELS = 255
TRAIN_RANK = 16
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
    """(rank * C)-channel maps of the signed factor lookups of integer tensor q (N, C, ...)."""
    rank = table.shape[1]
    picked = table.t()[:, (q.long() + LEVELS)]              # (rank, N, C, ...)
    picked = picked.transpose(0, 1)                          # (N, rank, C, ...)
    return picked.reshape(q.shape[0], rank * q.shape[1], *q.shape[2:])


def lookup_conv2d(qa: torch.Tensor, qw: torch.Tensor, name: str, stride=1, dilation=1) -> torch.Tensor:
    """sum over taps of sign * T[|qa|, |qw|] for integer-valued qa (N, C, H, W, already padded)
    and qw (O, C, kh, kw) in [-255, 255], computed in qa's dtype (float64: exact integers)."""
    out = F.conv2d(qa, qw, stride=stride, dilation=dilation)
    exp = expansion(name)
    if exp.rank:
        left = torch.from_numpy(exp.left).to(qa.dtype)
        right = torch.from_numpy(exp.right).to(qa.dtype)
        out = out + F.conv2d(_lookup(left, qa), _lookup(right, qw), stride=stride, dilation=dilation)
    return out


class ApproxConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward multiplies through an approximate 8-bit circuit."""

    def __init__(self, *args, multiplier: str, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1:
            raise ValueError("approximate convolutions support groups=1 only")
        self.multiplier = multiplier
        exp = expansion(multiplier)
        self.register_buffer("_left", torch.from_numpy(exp.left.astype(np.float32)), persistent=False)
        self.register_buffer("_right", torch.from_numpy(exp.right.astype(np.float32)), persistent=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, multiplier={self.multiplier}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(_STATE, "float", False):
            return super().forward(x)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        qa, sa = quantise(x, (1, 2, 3))
        qw, sw = quantise(self.weight, (1, 2, 3))
        # Straight-through: the value is the quantised operand, the gradient the float one's.
        xa = x + (qa * sa - x).detach()
        xw = self.weight + (qw * sw - self.weight).detach()
        out = F.conv2d(xa, xw, None, self.stride, 0, self.dilation)
        rank = min(self._left.shape[1], TRAIN_RANK) if self.training else self._left.shape[1]
        if rank:
            with torch.no_grad():
                left, right = self._left[:, :rank].to(x.dtype), self._right[:, :rank].to(x.dtype)
                error = F.conv2d(_lookup(left, qa), _lookup(right, qw), None, self.stride, 0, self.dilation)
            out = out + error * (sa * sw.reshape(1, -1, 1, 1))
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
