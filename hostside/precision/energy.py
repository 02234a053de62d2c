"""Energy of one multiplication per number format, and ``mult_energy`` of a network.

EA4CNN (section 3.6) scores a network by E_mult, the energy of all multiplications of one
inference in the conv and fully connected layers, and replaces FP32 by 16-bit fixed point
multipliers at c1 = 2.4 times less energy per multiplication (65 nm, its reference [2]).
We keep that ratio for ``fx16`` and take every other figure from one consistent source:

  [H14] M. Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
        45 nm, 0.9 V, table "Energy per operation": 8-bit integer multiply 0.2 pJ, 32-bit
        integer multiply 3.1 pJ, 16-bit float multiply 1.1 pJ, 32-bit float multiply 3.7 pJ.

Formats [H14] does not list are estimated, and said to be in ``source``:

- T(w,t) floats: a float multiplier's energy is dominated by its (t+1) x (t+1) significand
  array, so E = a + b (t+1)^2, with a and b fitted exactly through [H14]'s fp16 (t=10) and
  fp32 (t=23) points (a covers exponent add, normalisation and rounding).
- Qm.n fixed point of b bits: an integer array multiplier grows with b^2 ([H14]'s 8-bit and
  32-bit points agree with 0.003 pJ/bit^2 within 4 %), scaled from the fx16 anchor.

The CGP helper passes its approximate multipliers' energies through ``energy_per_mult_pj``'s
``table`` argument, so the same ``mult_energy`` scores them.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

from hostside.precision.formats import FLOAT, FixedFormat, FloatFormat, Format, Int8Format, parse_format

FP32_MULT_PJ = 3.7   # [H14]
FP16_MULT_PJ = 1.1   # [H14]
INT8_MULT_PJ = 0.2   # [H14]
INT32_MULT_PJ = 3.1  # [H14]
C1_FX16_VS_FP32 = 2.4  # EA4CNN section 3.6 (65 nm, its reference [2])
FX16_MULT_PJ = FP32_MULT_PJ / C1_FX16_VS_FP32

# E = a + b (t+1)^2 through the fp16 and fp32 points of [H14].
_B = (FP32_MULT_PJ - FP16_MULT_PJ) / (24 ** 2 - 11 ** 2)
_A = FP16_MULT_PJ - _B * 11 ** 2


def energy_per_mult_pj(fmt: Format, table: Optional[Mapping[str, float]] = None) -> Tuple[float, str]:
    """Energy of one multiplication in ``fmt`` (pJ) and where the figure comes from.

    ``table`` (format name -> pJ) overrides the built-in figures, e.g. for approximate
    multipliers characterised elsewhere.
    """
    if table and fmt.name in table:
        return float(table[fmt.name]), "caller's table"
    if isinstance(fmt, Int8Format):
        return INT8_MULT_PJ, "Horowitz ISSCC 2014, 45 nm: 8-bit integer multiply"
    if isinstance(fmt, FixedFormat):
        if fmt.bits == 16:
            return FX16_MULT_PJ, "fp32 (Horowitz ISSCC 2014) / c1 = 2.4 (EA4CNN section 3.6)"
        return FX16_MULT_PJ * (fmt.bits / 16) ** 2, "fx16 figure scaled by (bits/16)^2 (array multiplier)"
    if isinstance(fmt, FloatFormat):
        if fmt.t == 23:
            return FP32_MULT_PJ, "Horowitz ISSCC 2014, 45 nm: 32-bit float multiply"
        if (fmt.w, fmt.t) == (5, 10):
            return FP16_MULT_PJ, "Horowitz ISSCC 2014, 45 nm: 16-bit float multiply"
        return _A + _B * (fmt.t + 1) ** 2, "a + b (t+1)^2 fitted to Horowitz's fp16 and fp32 multiplies"
    raise TypeError(f"not a number format: {fmt!r}")


def energy_table() -> Dict[str, Dict[str, float]]:
    """pJ per multiplication of the named formats, with ratios to FP32 (the c1 of each)."""
    rows = {}
    for name in ("float", "half", "bfloat16", "float8_e4m3", "fx16", "q4.4", "int8"):
        pj, source = energy_per_mult_pj(parse_format(name))
        rows[name] = {"pj": pj, "fp32_ratio": FP32_MULT_PJ / pj, "source": source}
    return rows


def mult_energy_mj(n_mult: int, fmt: Format, table: Optional[Mapping[str, float]] = None) -> float:
    """E_mult of one inference in millijoules: conv/FC multiplications x energy per multiplication."""
    if n_mult < 0:
        raise ValueError(f"n_mult must be >= 0, got {n_mult}")
    pj, _ = energy_per_mult_pj(fmt, table)
    return n_mult * pj * 1e-9


def e_mult_reduction(params_orig: int, params_red: int, fmt: Format, baseline: Format = FLOAT) -> float:
    """EA4CNN's E_mult reduction of a network with ``params_red`` parameters in ``fmt`` against
    a baseline of ``params_orig`` in ``baseline`` (FP32): energy ratio per multiplication x
    params_orig / params_red, "because each parameter is associated with at least one
    multiplication" (section 3.6; c1 = 2.4 for fx16)."""
    if params_orig <= 0 or params_red <= 0:
        raise ValueError("parameter counts must be positive")
    return energy_per_mult_pj(baseline)[0] / energy_per_mult_pj(fmt)[0] * params_orig / params_red
