"""Power sources on sysfs fixture trees (this machine has no RAPL or INA2xx) and a real command."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from device_agent.bench import measure_model
from device_agent.power import CommandSource, HwmonSource, PowerError, PowerSampler, RaplSource, available_sources, open_source


def test_rapl_fixture_counter_wraparound(rapl_sysfs_fixture):
    package = rapl_sysfs_fixture / "sys/class/powercap/intel-rapl:0"
    (package / "max_energy_range_uj").write_text("1000000\n")  # wraps at 1 J
    source = RaplSource([package])
    (package / "energy_uj").write_text("900000\n")
    source.begin()
    (package / "energy_uj").write_text("100000\n")  # wrapped: +0.2 J
    source.poll()
    (package / "energy_uj").write_text("600000\n")  # +0.5 J
    energy_j, readings, window_s = source.end()
    assert energy_j == pytest.approx(0.7)
    assert readings == 3 and window_s >= 0


def test_rapl_fixture_package_and_dram_domains_and_sampling_interval(rapl_sysfs_fixture):
    source = open_source("rapl", rapl_sysfs_fixture)
    assert source.name == "rapl:package-0+dram"
    assert 0 < source.interval_s <= 0.1
    package = RaplSource([rapl_sysfs_fixture / "sys/class/powercap/intel-rapl:0"])
    package.domains[0].range_uj = 65_000  # 65 mJ at 65 W max: wraps every ms, so sample far faster
    assert package.domains[0].safe_interval_s() == pytest.approx(0.00025)
    specs = [s["spec"] for s in available_sources(rapl_sysfs_fixture)]
    assert specs == ["rapl:package", "rapl:dram"]


def test_rapl_missing_is_a_clear_power_error(tmp_path):
    with pytest.raises(PowerError, match="no Intel RAPL"):
        open_source("rapl", tmp_path)
    with pytest.raises(PowerError, match="unknown power source"):
        open_source("volts", tmp_path)


def test_hwmon_fixture_power_and_current_times_voltage(pi_sysfs_fixture):
    hwmon = pi_sysfs_fixture / "sys/class/hwmon/hwmon0"
    assert HwmonSource(hwmon).read_w() == pytest.approx(2.5)
    (hwmon / "power1_input").unlink()
    assert HwmonSource(hwmon).read_w() == pytest.approx(0.5 * 5.0)  # 500 mA x 5000 mV


def test_hwmon_fixture_sampler_integrates_a_changing_power(pi_sysfs_fixture, set_value):
    hwmon = pi_sysfs_fixture / "sys/class/hwmon/hwmon0"
    source = open_source("hwmon", pi_sysfs_fixture)
    with PowerSampler(source) as sampler:
        time.sleep(0.3)
        set_value(hwmon / "power1_input", "4500000\n")
        time.sleep(0.3)
    window = sampler.result()
    assert window["readings"] >= 10
    assert 2.5 < window["avg_w"] < 4.5
    assert window["energy_j"] == pytest.approx(window["avg_w"] * window["duration_s"])


def test_measure_with_hwmon_fixture_reports_energy_per_inference(conv_model, pi_sysfs_fixture, monkeypatch, set_value):
    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(pi_sysfs_fixture))
    hwmon = pi_sysfs_fixture / "sys/class/hwmon/hwmon0"
    (hwmon / "power1_input").write_text("2000000\n")
    # idle at 2.0 W, then 3.0 W well after the 0.3 s idle baseline, during the timed runs
    timer = threading.Timer(0.6, lambda: set_value(hwmon / "power1_input", "3000000\n"))
    timer.start()
    result = measure_model(conv_model, warmup=1, runs=None, min_time_s=1.0, power="hwmon", idle_s=0.3)
    timer.join()
    power = result["power"]
    assert power["source"] == "hwmon:hwmon0:ina219"
    assert power["idle_w"] == pytest.approx(2.0, rel=1e-3)
    assert 2.0 < power["avg_w"] < 3.0
    count = result["latency_ms"]["count"]
    assert power["energy_per_inference_mj"] == pytest.approx(power["energy_total_mj"] / count)
    expected_above = (power["avg_w"] - power["idle_w"]) * power["window_s"] * 1e3
    assert power["energy_above_idle_mj"] == pytest.approx(expected_above, rel=1e-6)


def test_external_command_meter(tmp_path):
    source = CommandSource(f"{sys.executable} -c 'print(\"3.25 W\")'")
    assert source.read_w() == 3.25
    with pytest.raises(PowerError, match="must print watts"):
        CommandSource(f"{sys.executable} -c 'print(\"hello\")'")
    with pytest.raises(PowerError, match="exited 3"):
        CommandSource(f"{sys.executable} -c 'raise SystemExit(3)'")


def test_measure_reports_a_bad_power_source_with_its_code(conv_model, tmp_path, monkeypatch):
    from device_agent.bench import MeasureError

    monkeypatch.setenv("DEVICE_AGENT_SYSFS_ROOT", str(tmp_path))
    with pytest.raises(MeasureError) as caught:
        measure_model(conv_model, runs=3, power="hwmon")
    assert caught.value.code == "power_error" and "new_device" in str(caught.value)


def test_a_slow_meter_averages_its_constant_power_exactly(tmp_path):
    """Each reading of this command takes about 0.1 s: the mean power must still be the
    constant it prints, since energy and window span the same readings."""
    source = open_source(f"cmd:{sys.executable} -c 'import time; time.sleep(0.1); print(4.0)'", tmp_path)
    with PowerSampler(source) as sampler:
        time.sleep(0.3)
    result = sampler.result()
    assert result["readings"] >= 2 and result["duration_s"] > 0.1
    assert result["avg_w"] == pytest.approx(4.0, rel=1e-9)
