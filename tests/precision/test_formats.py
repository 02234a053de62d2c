"""Rounding to every format, checked bit for bit against ml_dtypes / numpy and against
independent references (exact rationals for fixed point, frexp/ldexp for the whole grid)."""

from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest

from hostside.errors import UserError
from hostside.precision.formats import (
    FX16, NAMED, FixedFormat, FloatFormat, grid, parse_format, parse_formats,
)

# Each ml_dtypes / numpy type with the format modelling it.
LIBRARY_TYPES = [
    (np.float16, "half"),
    (ml_dtypes.bfloat16, "bfloat16"),
    (ml_dtypes.float8_e5m2, "float8_e5m2"),
    (ml_dtypes.float8_e4m3, "float8_e4m3"),
    (ml_dtypes.float8_e3m4, "float8_e3m4"),
    (ml_dtypes.float8_e4m3fn, "float8_e4m3fn"),
    (ml_dtypes.float8_e4m3fnuz, "float8_e4m3fnuz"),
    (ml_dtypes.float8_e4m3b11fnuz, "float8_e4m3b11fnuz"),
    (ml_dtypes.float8_e5m2fnuz, "float8_e5m2fnuz"),
    (ml_dtypes.float6_e2m3fn, "float6_e2m3fn"),
    (ml_dtypes.float6_e3m2fn, "float6_e3m2fn"),
    (ml_dtypes.float4_e2m1fn, "float4_e2m1fn"),
]


def _all_values(dtype) -> np.ndarray:
    """Every encoding of ``dtype`` decoded to float32."""
    width = np.dtype(dtype).itemsize * 8
    bits = ml_dtypes.finfo(dtype).bits if dtype is not np.float16 else 16
    codes = np.arange(2 ** bits, dtype=np.uint16 if width == 16 else np.uint8)
    return codes.view(dtype).astype(np.float32)


@np.errstate(over="ignore", invalid="ignore")
def _probe_values(dtype) -> np.ndarray:
    """Every encoding, the midpoint between each pair of neighbours (ties) and the float32
    values just either side of each midpoint, beyond the largest finite value, and specials."""
    values = _all_values(dtype)
    finite = np.unique(values[np.isfinite(values)].astype(np.float64))
    mids = (finite[:-1] + finite[1:]) / 2
    top = float(ml_dtypes.finfo(dtype).max)
    edges = np.array([top * 1.01, top * 1.5, top * 2, 3e38, np.inf, -np.inf, np.nan, 0.0, -0.0, 1e-45, -1e-45])
    probes = np.concatenate([finite, mids, edges, -mids]).astype(np.float32)
    up = np.nextafter(probes, np.float32(np.inf))
    down = np.nextafter(probes, np.float32(-np.inf))
    return np.concatenate([values, probes, up, down])


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit-identical, or both NaN."""
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


@pytest.mark.parametrize("dtype,name", LIBRARY_TYPES, ids=[n for _, n in LIBRARY_TYPES])
def test_bit_exact_against_library_on_every_encoding_and_tie(dtype, name):
    x = _probe_values(dtype)
    fmt = NAMED[name]
    got = fmt.round(x)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(dtype).astype(np.float32)
    if fmt.overflow == "saturate":  # no NaN encoding: ml_dtypes returns -0, we keep NaN (documented)
        nan_in = np.isnan(x)
        assert np.isnan(got[nan_in]).all()
        x, got, want = x[~nan_in], got[~nan_in], want[~nan_in]
    bad = ~_same(got, want)
    assert not bad.any(), f"{name}: {x[bad][:5]} -> {got[bad][:5]}, library {want[bad][:5]}"
    # Every encoding maps to itself (idempotent on representable values).
    values = _all_values(dtype)
    assert _same(fmt.round(values), values)[~np.isnan(values)].all()


def test_ieee_aliases_are_plain_t_types():
    assert NAMED["half"] == FloatFormat(5, 10) and NAMED["bfloat16"] == FloatFormat(8, 7)
    assert NAMED["float8_e4m3"] == parse_format("t4.3") == parse_format("T(4,3)")
    assert NAMED["float"] == FloatFormat(8, 23) and NAMED["float"].is_ieee
    assert not NAMED["float8_e4m3fn"].is_ieee
    assert len(grid()) == 184 and len(set(grid())) == 184


def _reference_round(x: float, w: int, t: int) -> float:
    """IEEE round-to-nearest-even to T(w,t) in float64, written from the definition."""
    if np.isnan(x) or np.isinf(x):
        return x
    bias = 2 ** (w - 1) - 1
    emin, emax = 1 - bias, 2 ** w - 2 - bias
    if x == 0:
        return x
    _, e = np.frexp(abs(x))  # abs(x) = m * 2**e, m in [0.5, 1)
    exponent = max(int(e) - 1, emin)
    quantum = 2.0 ** (exponent - t)
    q = abs(x) / quantum
    r = np.round(q)  # numpy rounds halves to even
    y = r * quantum
    largest = (2 - 2.0 ** -t) * 2.0 ** emax if emax >= emin else (1 - 2.0 ** -t) * 2.0 ** emin
    if y > largest:
        y = np.inf
    return float(np.copysign(y, x))


def test_whole_grid_matches_a_reference_written_from_the_definition():
    rng = np.random.default_rng(0)
    x = np.concatenate([
        rng.standard_normal(300) * np.exp2(rng.integers(-40, 40, 300)),
        rng.standard_normal(100) * 1e-3, np.array([1.5, 2.5, -0.75, 1 + 2 ** -23, 65520.0, 1e-40]),
    ]).astype(np.float32)
    for fmt in grid():
        got = fmt.round(x)
        want = np.array([_reference_round(float(v), fmt.w, fmt.t) for v in x], dtype=np.float32)
        bad = ~_same(got, want)
        assert not bad.any(), f"{fmt.name}: {x[bad][:3]} -> {got[bad][:3]}, want {want[bad][:3]}"


def test_t1_types_have_only_subnormals_and_infinity():
    fmt = FloatFormat(1, 2)  # bias 0: exponent field 0 = subnormals 0, 0.5, 1, 1.5; field 1 = inf/NaN
    assert fmt.max_finite == 1.5
    got = fmt.round(np.array([0.2, 0.25, 0.3, 0.75, 1.25, 1.74, 1.75, -3.0], np.float32))
    assert got.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0, 1.5, np.inf, -np.inf]


@pytest.mark.parametrize("fmt", [FX16, FixedFormat(4, 3), FixedFormat(1, 7), FixedFormat(12, 12)], ids=str)
def test_fixed_point_against_integer_arithmetic(fmt):
    rng = np.random.default_rng(1)
    top = fmt.max_finite
    ties = (rng.integers(-2 ** (fmt.bits - 1), 2 ** (fmt.bits - 1), 200) + 0.5) * 2.0 ** -fmt.n
    x = np.concatenate([rng.uniform(-1.2 * top, 1.2 * top, 500), ties, [0.0, top, -top - 2.0 ** -fmt.n, 1e30, -np.inf]])
    x = x.astype(np.float32)
    got = fmt.round(x)
    lo, hi = -(2 ** (fmt.bits - 1)), 2 ** (fmt.bits - 1) - 1
    for v, g in zip(x.tolist(), got.tolist()):
        if np.isinf(v):
            code = hi if v > 0 else lo
        else:
            code = min(max(round(Fraction(v) * 2 ** fmt.n), lo), hi)  # Fraction rounds half to even
        assert Fraction(g) == Fraction(code, 2 ** fmt.n), (v, g, code)
    assert np.isnan(fmt.round(np.array([np.nan], np.float32)))[0]


def test_format_names_and_bad_input():
    assert parse_format("fx16") is FX16 and FX16.bits == 16 and FX16.name == "fx16"
    assert parse_format("q4.4") == FixedFormat(4, 4)
    assert parse_format("int8").kind == "int8"
    formats, with_grid = parse_formats("grid,half,t4.3,fx16,int8")
    assert with_grid and len(formats) == 184 + 2  # half and t4.3 are in the grid
    assert "half" in [f.name for f in formats] and formats[:23] == grid()[:23]
    for bad, words in [("t9.3", "w must be 1..8"), ("t4.0", "t must be 1..23"), ("t4.24", "t must be 1..23"),
                       ("float12", "unknown number format"), ("q20.8", r"m \+ n <= 24"), ("", "empty")]:
        with pytest.raises(UserError, match=words):
            parse_formats(bad)
