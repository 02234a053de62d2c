"""Board facts: a Pi-like sysfs fixture tree, this machine, and vcgencmd decoding."""

from __future__ import annotations

import json

from device_agent import protocol, system


def test_info_on_pi_sysfs_fixture(pi_sysfs_fixture, vcgencmd_fixture, monkeypatch):
    monkeypatch.setenv(system.ROOT_ENV, str(pi_sysfs_fixture))
    facts = system.info()
    assert facts["cpu_model"] == "Raspberry Pi 3 Model B Plus Rev 1.3"
    assert facts["ram_total_bytes"] == 948280 * 1024
    assert facts["os"].startswith("Raspbian")
    assert facts["frequency"]["governor"] == "ondemand"
    assert facts["frequency"]["cur_freq_khz"] == 1400000
    assert facts["frequency"]["arm_clock_hz"] == 1200000000  # the real clock, below the requested one
    assert facts["temperature_c"] == 61.234
    assert facts["throttled"]["under_voltage_now"] and facts["throttled"]["throttled_occurred"]
    assert facts["power_sources"] == [{"spec": "hwmon:hwmon0", "path": str(pi_sysfs_fixture / "sys/class/hwmon/hwmon0"), "readable": True}]


def test_info_with_nothing_available_is_all_nulls_not_a_crash(tmp_path, monkeypatch):
    monkeypatch.setenv(system.ROOT_ENV, str(tmp_path / "empty"))
    facts = system.info()
    json.dumps(facts)
    assert facts["cpu_model"] is None and facts["temperature_c"] is None and facts["os"] is None
    assert facts["frequency"]["governor"] is None
    assert facts["power_sources"] == []
    assert facts["python"] and facts["onnxruntime"]["version"]
    assert facts["emulated"] is False


def test_info_flags_an_emulated_rig_by_its_marker_file(tmp_path, monkeypatch):
    marker = tmp_path / system.EMULATION_MARKER
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    monkeypatch.setenv(system.ROOT_ENV, str(tmp_path))
    assert system.info()["emulated"] is True


def test_decode_throttled_bits():
    decoded = system.decode_throttled(0x50000)
    assert decoded["under_voltage_occurred"] and decoded["throttled_occurred"]
    assert not decoded["now"] and decoded["since_boot"]
    assert system.decode_throttled(0x8)["soft_temperature_limit_now"]


def test_device_key_groups_boards_of_one_kind():
    pi = {"architecture": "aarch64", "cpu_model": "Raspberry Pi 4 Model B Rev 1.4", "cores": 4}
    assert protocol.device_key(pi) == "aarch64-raspberry-pi-4-model-b-rev-1-4-4c"
    assert protocol.device_key({}) == "unknown-arch-unknown-cpu-0c"
