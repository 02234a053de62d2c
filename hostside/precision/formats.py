"""Number formats a model can be emulated in, and their vectorised round-to-format.

Three kinds:

- :class:`FloatFormat`: a binary floating-point type with ``w`` exponent bits and ``t``
  trailing significand bits. ``T(w, t)`` is IEEE 754 behaviour scaled down (the IoT precision
  analysis' types): bias ``2**(w-1) - 1``, subnormals, signed zero, infinities (exponent field
  all ones, significand zero), NaN, round to nearest even, and overflow to infinity. ``half``
  is T(5,10), ``bfloat16`` T(8,7), ``float`` T(8,23) and the IEEE-like 8-bit types are
  ``float8_e5m2`` = T(5,2), ``float8_e4m3`` = T(4,3) (the paper's best 8-bit type) and
  ``float8_e3m4`` = T(3,4). The *other* float8/6/4 types of ml_dtypes are NOT T(w,t): they
  spend the all-ones exponent on finite values. They are modelled faithfully, with their own
  bias, largest finite value and overflow rule: ``fn`` types have no infinity (overflow and
  infinity become NaN for float8, saturate to the largest finite value for float6/float4,
  which have no NaN either), ``fnuz`` types also have no negative zero (a result rounding to
  -0 is +0) and a bias one larger. The only deliberate difference from ml_dtypes: a NaN
  input stays NaN in float6/float4 (ml_dtypes, lacking a NaN encoding, returns -0), so the
  precision analysis can report that the model produced NaN instead of hiding it.
- :class:`FixedFormat`: signed two's-complement fixed point Qm.n (``m`` integer bits
  including the sign, ``n`` fractional bits, ``m + n`` bits stored), round to nearest even,
  saturating. ``fx16`` is Q8.8, EA4CNN's 16-bit format with 8 fractional bits.
- :class:`Int8Format`: the deployed INT8 of onnxruntime's static quantization (affine, a
  scale and zero point per tensor or channel found by calibration). It is not a fixed
  rounding of values, so it has no :meth:`round`; ``hostside.precision.quantize`` produces it.

Rounding works on the float32 bit patterns with numpy integer operations (a handful of
passes over the array, no per-element Python), because the 184-type grid rounds every
activation map of a network 184 times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple, Union

import numpy as np

from hostside.errors import UserError

W_RANGE = (1, 8)
T_RANGE = (1, 23)
FLOAT32_MANTISSA_BITS = 23
FLOAT32_EMIN = -126
# Fixed-point values must be exact in the float32 the emulated model computes in.
FIXED_MAX_BITS = 24
_SIGN = np.uint32(0x80000000)
_ABS = np.uint32(0x7FFFFFFF)
_EXP_ALL_ONES = np.uint32(0x7F800000)


@dataclass(frozen=True)
class FloatFormat:
    """A binary float type: ``w`` exponent bits, ``t`` trailing significand bits, 1 sign bit.

    ``bias``, ``max_finite``, ``overflow`` (``"inf"``, ``"nan"`` or ``"saturate"``) and
    ``signed_zero`` default to IEEE 754 behaviour; the ml_dtypes ``fn``/``fnuz`` variants
    set them (see the module docstring).
    """

    w: int
    t: int
    name: str = field(default="", compare=False)
    bias: int = -1
    max_finite: float = -1.0
    overflow: str = "inf"
    signed_zero: bool = True

    def __post_init__(self) -> None:
        check_wt(self.w, self.t)
        if self.bias < 0:
            object.__setattr__(self, "bias", 2 ** (self.w - 1) - 1)
        if self.max_finite < 0:
            top_field = 2 ** self.w - 2  # the all-ones exponent field is infinity / NaN
            if top_field == 0:  # w = 1: no normal numbers, the largest value is subnormal
                largest = (1.0 - 2.0 ** -self.t) * 2.0 ** self.emin
            else:
                largest = (2.0 - 2.0 ** -self.t) * 2.0 ** (top_field - self.bias)
            object.__setattr__(self, "max_finite", float(largest))
        if not self.name:
            object.__setattr__(self, "name", f"T({self.w},{self.t})")

    kind = "float"

    @property
    def bits(self) -> int:
        return 1 + self.w + self.t

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.bias

    @property
    def is_ieee(self) -> bool:
        return self == FloatFormat(self.w, self.t, self.name)

    def round(self, x: np.ndarray) -> np.ndarray:
        """``x`` (float32) rounded to this format, as a new float32 array of the same shape."""
        return round_float(np.asarray(x, dtype=np.float32), self)


@dataclass(frozen=True)
class FixedFormat:
    """Signed fixed point Qm.n: ``m`` integer bits (sign included) and ``n`` fractional bits."""

    m: int
    n: int
    name: str = field(default="", compare=False)

    kind = "fixed"

    def __post_init__(self) -> None:
        if not (1 <= self.m and 0 <= self.n and 2 <= self.m + self.n <= FIXED_MAX_BITS):
            raise UserError(
                f"fixed point Q{self.m}.{self.n}: need m >= 1 (integer bits, sign included), n >= 0 and "
                f"2 <= m + n <= {FIXED_MAX_BITS} so every value is exact in float32"
            )
        if not self.name:
            object.__setattr__(self, "name", f"Q{self.m}.{self.n}")

    @property
    def bits(self) -> int:
        return self.m + self.n

    @property
    def max_finite(self) -> float:
        return float((2 ** (self.bits - 1) - 1) * 2.0 ** -self.n)

    def round(self, x: np.ndarray) -> np.ndarray:
        """Round half to even onto the grid 2**-n, saturate to the representable range; NaN stays NaN."""
        x = np.asarray(x, dtype=np.float32)
        top = float(2 ** (self.bits - 1))
        scaled = np.rint(x.reshape(-1) * np.float32(2.0 ** self.n))  # 1-D: a 0-d result would be a scalar
        np.clip(scaled, -top, top - 1, out=scaled)
        scaled *= np.float32(2.0 ** -self.n)
        return scaled.reshape(x.shape)


@dataclass(frozen=True)
class Int8Format:
    """onnxruntime's static INT8 quantization (QDQ, per-channel weights): 8-bit weights and
    activations, 32-bit biases, scales from calibration."""

    name: str = "int8"
    kind = "int8"
    bits = 8


Format = Union[FloatFormat, FixedFormat, Int8Format]


def check_wt(w: int, t: int) -> None:
    """Refuse exponent/significand widths outside the grid the analysis covers."""
    if not (isinstance(w, int) and W_RANGE[0] <= w <= W_RANGE[1]):
        raise UserError(f"T(w,t): exponent width w={w!r} is out of range; w must be {W_RANGE[0]}..{W_RANGE[1]}")
    if not (isinstance(t, int) and T_RANGE[0] <= t <= T_RANGE[1]):
        raise UserError(f"T(w,t): significand width t={t!r} is out of range; t must be {T_RANGE[0]}..{T_RANGE[1]}")


def round_float(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round float32 ``x`` to ``fmt`` with round to nearest, ties to even.

    Normal range: adding ``half ulp - 1 + (lowest kept bit)`` to the magnitude's bit pattern
    and clearing the dropped bits is exact round-half-even, and a carry out of the significand
    moves into the exponent exactly as the value does. Below the format's smallest normal
    number the spacing is fixed (``2**(emin - t)``): adding and subtracting ``2**(emin-t+23)``
    in float32 rounds onto that spacing with the FPU's own round-half-even. Overflow is judged
    on the value rounded with an unbounded exponent, as IEEE 754 specifies.
    """
    x = np.asarray(x, dtype=np.float32)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity inputs are handled below
        # A 0-d array (a scalar constant such as a normalisation's divisor) as a 1-element one:
        # numpy's bit operations turn 0-d arrays into scalars, which cannot be written in place.
        return _round_bits(x.reshape(-1), fmt).reshape(x.shape) if x.ndim == 0 else _round_bits(x, fmt)


def _round_bits(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    bits = x.view(np.uint32)
    magnitude = bits & _ABS
    shift = FLOAT32_MANTISSA_BITS - fmt.t
    if shift:
        rounded = np.right_shift(magnitude, np.uint32(shift))
        rounded &= np.uint32(1)
        rounded += np.uint32((1 << (shift - 1)) - 1)
        rounded += magnitude
        rounded &= np.uint32(~((1 << shift) - 1) & 0xFFFFFFFF)
    else:
        rounded = magnitude.copy()
    y = rounded.view(np.float32)
    if fmt.emin > FLOAT32_EMIN:
        absolute = magnitude.view(np.float32)
        magic = np.float32(2.0 ** (fmt.emin - fmt.t + FLOAT32_MANTISSA_BITS))
        subnormal = absolute + magic
        subnormal -= magic
        np.copyto(y, subnormal, where=absolute < np.float32(2.0 ** fmt.emin))
    if not rounded.size:
        return y
    # Whole-array reductions first: the masks are only built when something needs fixing.
    if rounded.max() > np.float32(fmt.max_finite).view(np.uint32):
        over = y > np.float32(fmt.max_finite)
        y[over] = {"inf": np.inf, "nan": np.nan, "saturate": fmt.max_finite}[fmt.overflow]
    if magnitude.max() > _EXP_ALL_ONES:
        y[magnitude > _EXP_ALL_ONES] = np.nan
    sign = bits & _SIGN
    if not fmt.signed_zero:
        sign *= (rounded != 0).astype(np.uint32)
    rounded |= sign
    return y


def grid() -> List[FloatFormat]:
    """All 184 IEEE-like types T(w,t), w in 1..8 (outer), t in 1..23."""
    return [FloatFormat(w, t) for w in range(W_RANGE[0], W_RANGE[1] + 1) for t in range(T_RANGE[0], T_RANGE[1] + 1)]


FX16 = FixedFormat(8, 8, "fx16")
INT8 = Int8Format()
HALF = FloatFormat(5, 10, "half")
BFLOAT16 = FloatFormat(8, 7, "bfloat16")
FLOAT = FloatFormat(8, 23, "float")

#: Named formats; ml_dtypes names map to their exact model (IEEE-like ones are plain T(w,t)).
NAMED: Dict[str, Format] = {
    "float": FLOAT, "float32": FLOAT, "fp32": FLOAT,
    "half": HALF, "float16": HALF, "fp16": HALF,
    "bfloat16": BFLOAT16, "bf16": BFLOAT16,
    "float8_e5m2": FloatFormat(5, 2, "float8_e5m2"),
    "float8_e4m3": FloatFormat(4, 3, "float8_e4m3"),
    "float8_e3m4": FloatFormat(3, 4, "float8_e3m4"),
    "float8_e4m3fn": FloatFormat(4, 3, "float8_e4m3fn", bias=7, max_finite=448.0, overflow="nan"),
    "float8_e4m3fnuz": FloatFormat(4, 3, "float8_e4m3fnuz", bias=8, max_finite=240.0, overflow="nan",
                                   signed_zero=False),
    "float8_e4m3b11fnuz": FloatFormat(4, 3, "float8_e4m3b11fnuz", bias=11, max_finite=30.0, overflow="nan",
                                      signed_zero=False),
    "float8_e5m2fnuz": FloatFormat(5, 2, "float8_e5m2fnuz", bias=16, max_finite=57344.0, overflow="nan",
                                   signed_zero=False),
    "float6_e2m3fn": FloatFormat(2, 3, "float6_e2m3fn", bias=1, max_finite=7.5, overflow="saturate"),
    "float6_e3m2fn": FloatFormat(3, 2, "float6_e3m2fn", bias=3, max_finite=28.0, overflow="saturate"),
    "float4_e2m1fn": FloatFormat(2, 1, "float4_e2m1fn", bias=1, max_finite=6.0, overflow="saturate"),
    "fx16": FX16,
    "int8": INT8,
}
_T_NAME = re.compile(r"^t\(?\s*(\d+)\s*[.,]\s*(\d+)\s*\)?$")
_Q_NAME = re.compile(r"^q(\d+)\.(\d+)$")


def parse_format(name: str) -> Format:
    """A format from its name: a :data:`NAMED` alias, ``t4.3`` / ``T(4,3)``, ``q8.8``."""
    key = name.strip().lower()
    if key in NAMED:
        return NAMED[key]
    match = _T_NAME.match(key)
    if match:
        return FloatFormat(int(match.group(1)), int(match.group(2)))
    match = _Q_NAME.match(key)
    if match:
        return FixedFormat(int(match.group(1)), int(match.group(2)))
    raise UserError(
        f"unknown number format {name!r}; use grid, tW.T (e.g. t4.3, w 1..8, t 1..23), qM.N fixed point "
        f"(e.g. q8.8) or one of: {', '.join(sorted(NAMED))}"
    )


def parse_formats(text: str) -> Tuple[List[Format], bool]:
    """``--formats`` value: comma-separated names, ``grid`` for all 184 T(w,t). Returns the
    formats (grid first, no duplicates) and whether the grid was asked for."""
    names = [n for n in (part.strip() for part in text.split(",")) if n]
    if not names:
        raise UserError("--formats is empty; give e.g. grid or half,bfloat16,t4.3,fx16,int8")
    with_grid = any(n.lower() == "grid" for n in names)
    formats: List[Format] = grid() if with_grid else []
    for n in names:
        if n.lower() != "grid":
            fmt = parse_format(n)
            if fmt in formats:  # a grid type asked for by name (half = T(5,10)): keep that name
                formats[formats.index(fmt)] = fmt
            else:
                formats.append(fmt)
    return formats, with_grid
