"""A product table as exact product + low-rank error, so a table-lookup convolution costs
float convolutions instead of one gather per product.

For a circuit's table T, T[a, b] = a*b + E[a, b] with E the (256 x 256) error matrix. With the
SVD E = sum_k s_k u_k v_k^T truncated at E's numerical rank r, a convolution whose products are
all read from T is

    sum_taps T[a, b] = conv(a, b) + sum_k conv(u_k(a), v_k(b)) * s_k,

i.e. one ordinary convolution plus one convolution with r times the input channels over the
per-value lookups u_k(a), v_k(b) (cheap elementwise gathers). Nothing is approximated: the
rank is E's numerical rank, and :func:`expansion` checks that the factors rebuild every one
of the 65,536 entries of E to within ``RESIDUAL_LIMIT``; a sum of K such products is then
within K * RESIDUAL_LIMIT of the exact integer, far below 0.5 for any layer (K < 10^6), so in
float64 the rounded sum *is* the table-lookup sum (tests/approx checks it against a direct
per-product lookup). In float32 (training) the sums carry float32's usual rounding, as any
float convolution does.

Signs: both operands arrive as signed integers in [-255, 255] (sign-magnitude, see
``hostside.approx.conv``); the circuit multiplies magnitudes and the sign is reapplied, so the
lookups are tabulated over the 511 signed values: u(k) = sign(k) u(|k|).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hostside.approx.library import get_multiplier

RESIDUAL_LIMIT = 1e-6
_VALUES = np.arange(256, dtype=np.float64)


@dataclass(frozen=True)
class Expansion:
    """Signed lookups of the error factors: ``left[k + 255, j]`` for an activation k,
    ``right[k + 255, j]`` for a weight k (j < rank); rank 0 for an exact circuit."""

    name: str
    rank: int
    left: np.ndarray    # (511, rank) float64
    right: np.ndarray   # (511, rank) float64
    max_residual: float  # max |E - left right^T| over the table, in product units

    def error_table(self) -> np.ndarray:
        """The error matrix the factors rebuild (unsigned part), for checks."""
        return self.left[255:] @ self.right[255:].T


def _signed(factor: np.ndarray) -> np.ndarray:
    """(256, r) per magnitude -> (511, r) per signed value: f(-k) = -f(k)."""
    return np.concatenate([-factor[:0:-1], factor], axis=0)


@lru_cache(maxsize=64)
def expansion(name: str) -> Expansion:
    """The verified low-rank expansion of circuit ``name``'s error matrix."""
    table = get_multiplier(name).table.astype(np.float64)
    error = table - np.outer(_VALUES, _VALUES)
    if not error.any():
        empty = np.zeros((511, 0))
        return Expansion(name, 0, empty, empty, 0.0)
    u, s, vt = np.linalg.svd(error)
    rank = int(np.sum(s > s[0] * 1e-12))
    root = np.sqrt(s[:rank])
    left, right = u[:, :rank] * root, vt[:rank].T * root
    residual = float(np.abs(error - left @ right.T).max())
    if residual > RESIDUAL_LIMIT:
        raise ValueError(f"multiplier {name}: rank-{rank} expansion leaves {residual:g} > {RESIDUAL_LIMIT:g}")
    return Expansion(name, rank, _signed(left), _signed(right), residual)
