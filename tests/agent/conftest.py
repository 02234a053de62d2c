"""Fixtures for the device-agent tests: small ONNX models and sysfs fixture trees.

This machine has no RAPL counters, INA2xx sensors, cpufreq or thermal zones, so the power and
board-state tests point the agent (``DEVICE_AGENT_SYSFS_ROOT``) at fixture trees laid out like
the kernel's sysfs, and a fixture ``vcgencmd`` stands in for the Raspberry Pi firmware tool.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def agent_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "agent-home"
    monkeypatch.setenv("DEVICE_AGENT_HOME", str(home))
    return home


@pytest.fixture
def slow_model(tmp_path: Path, onnx_models) -> Path:
    """Smaller than the shared one: the agent's own timeout tests need only a few ms a run."""
    return onnx_models.slow_net(tmp_path / "slow.onnx", size=256)


@pytest.fixture
def pi_sysfs_fixture(tmp_path: Path) -> Path:
    """A Raspberry Pi 3B+-like tree: cpuinfo, meminfo, cpufreq (ondemand), one thermal zone,
    and an INA219 on hwmon0 reporting 2.5 W."""
    root = tmp_path / "pi-sysfs"
    write(root / "proc/cpuinfo", "processor\t: 0\nCPU part\t: 0xd03\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 3 Model B Plus Rev 1.3\n")
    write(root / "proc/meminfo", "MemTotal:         948280 kB\nMemFree:          500000 kB\nMemAvailable:     700000 kB\n")
    write(root / "etc/os-release", 'PRETTY_NAME="Raspbian GNU/Linux 11 (bullseye)"\n')
    cpufreq = root / "sys/devices/system/cpu/cpu0/cpufreq"
    for name, value in (("scaling_governor", "ondemand"), ("scaling_cur_freq", "1400000"),
                        ("scaling_min_freq", "600000"), ("scaling_max_freq", "1400000")):
        write(cpufreq / name, value + "\n")
    write(root / "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root / "sys/class/thermal/thermal_zone0/temp", "61234\n")
    hwmon = root / "sys/class/hwmon/hwmon0"
    write(hwmon / "name", "ina219\n")
    write(hwmon / "power1_input", "2500000\n")
    write(hwmon / "curr1_input", "500\n")
    write(hwmon / "in1_input", "5000\n")
    return root


@pytest.fixture
def rapl_sysfs_fixture(tmp_path: Path) -> Path:
    """An Intel-like powercap tree: package-0 with a dram subdomain, small wrap range."""
    root = tmp_path / "rapl-sysfs"
    package = root / "sys/class/powercap/intel-rapl:0"
    write(package / "name", "package-0\n")
    write(package / "energy_uj", "1000\n")
    write(package / "max_energy_range_uj", "262143328850\n")
    write(package / "constraint_0_max_power_uw", "65000000\n")
    dram = root / "sys/class/powercap/intel-rapl:0:1"
    write(dram / "name", "dram\n")
    write(dram / "energy_uj", "500\n")
    write(dram / "max_energy_range_uj", "65712999613\n")
    return root


@pytest.fixture
def vcgencmd_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for the Pi firmware's ``vcgencmd`` on PATH: throttled=0x50005 (under-voltage
    and throttling now and since boot), ARM clock 1.2 GHz."""
    bin_dir = tmp_path / "fixture-bin"
    script = write(
        bin_dir / "vcgencmd",
        "#!/bin/sh\ncase \"$1\" in\n  get_throttled) echo throttled=0x50005 ;;\n"
        "  measure_clock) echo frequency\\(48\\)=1200000000 ;;\n  *) exit 1 ;;\nesac\n",
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def set_sysfs_value(path: Path, text: str) -> None:
    """Change a fixture attribute atomically, as the kernel does: a reader never sees it empty."""
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    os.replace(partial, path)


@pytest.fixture
def set_value():
    return set_sysfs_value
