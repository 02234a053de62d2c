"""The per-format multiplication energy keeps its cited anchors and EA4CNN's c1."""

import pytest

from hostside.precision.energy import (
    C1_FX16_VS_FP32, e_mult_reduction, energy_per_mult_pj, energy_table, mult_energy_mj,
)
from hostside.precision.formats import FX16, FixedFormat, FloatFormat, parse_format


def test_anchors_and_paper_ratio():
    fp32, _ = energy_per_mult_pj(parse_format("float"))
    assert fp32 == 3.7 and energy_per_mult_pj(parse_format("half"))[0] == 1.1
    assert energy_per_mult_pj(parse_format("int8"))[0] == 0.2
    assert fp32 / energy_per_mult_pj(FX16)[0] == pytest.approx(C1_FX16_VS_FP32) == pytest.approx(2.4)
    assert energy_table()["fx16"]["fp32_ratio"] == pytest.approx(2.4)


def test_estimates_are_monotonic_and_labelled():
    floats = [energy_per_mult_pj(FloatFormat(8, t))[0] for t in range(1, 24)]
    assert floats == sorted(floats) and floats[-1] == 3.7
    # the fit passes exactly through both anchors
    assert energy_per_mult_pj(FloatFormat(4, 10))[0] == pytest.approx(1.1)
    assert "fitted" in energy_per_mult_pj(FloatFormat(4, 3))[1]
    assert energy_per_mult_pj(FixedFormat(4, 4))[0] == pytest.approx(energy_per_mult_pj(FX16)[0] / 4)


def test_mult_energy_is_count_times_energy():
    n = 1_000_000
    assert mult_energy_mj(n, FX16) == pytest.approx(n * 3.7 / 2.4 * 1e-9)
    assert mult_energy_mj(n, parse_format("float")) / mult_energy_mj(n, FX16) == pytest.approx(2.4)
    assert mult_energy_mj(n, FX16, table={"fx16": 0.5}) == pytest.approx(n * 0.5e-9)
    with pytest.raises(ValueError):
        mult_energy_mj(-1, FX16)


@pytest.mark.parametrize("params,fmt,paper", [
    (36_720, "fx16", 23.6), (30_672, "fx16", 28.2), (19_632, "fx16", 44.0),  # CNN1-3-FX
    (12_784, "float", 28.1), (15_728, "float", 22.9), (23_120, "float", 15.6),  # CNN2-4-FP
])
def test_reproduces_ea4cnn_table_2(params, fmt, paper):
    """E_mult reduction against the 360,264-parameter FP baseline, as EA4CNN's table 2 lists it
    (the table's own rounding is off by up to 0.08)."""
    assert e_mult_reduction(360_264, params, parse_format(fmt)) == pytest.approx(paper, abs=0.1)
