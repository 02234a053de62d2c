"""Board facts: CPU, memory, OS, frequency, governor, temperature and throttling.

Every probe returns None when a fact is unavailable (a container, an x86 laptop without
thermal zones, a board without ``vcgencmd``): ``device-agent info`` must never crash on a
board that merely lacks something. File paths are resolved under a root directory so tests
can point the agent at a fixture tree that mimics sysfs/procfs (``DEVICE_AGENT_SYSFS_ROOT``).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT_ENV = "DEVICE_AGENT_SYSFS_ROOT"

#: ``vcgencmd get_throttled`` bits: 0-3 describe now, 16-19 "has happened since boot".
THROTTLED_BITS = {
    0: "under_voltage_now",
    1: "arm_frequency_capped_now",
    2: "throttled_now",
    3: "soft_temperature_limit_now",
    16: "under_voltage_occurred",
    17: "arm_frequency_capped_occurred",
    18: "throttled_occurred",
    19: "soft_temperature_limit_occurred",
}


def system_root() -> Path:
    """Root under which /sys and /proc are read; '/' except in fixture-driven tests."""
    return Path(os.environ.get(ROOT_ENV) or "/")


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_int(path: Path) -> Optional[int]:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _run(argv: List[str], timeout_s: float = 2.0) -> Optional[str]:
    """Output of a helper command, or None if it is missing, fails or hangs."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def cpu_model(root: Path) -> Optional[str]:
    """'model name' on x86, 'Model'/'Hardware' or the first 'CPU part' on ARM."""
    text = _read(root / "proc/cpuinfo")
    if not text:
        return None
    fields: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    for key in ("model name", "Model", "Hardware", "Processor"):
        if fields.get(key):
            return fields[key]
    part = fields.get("CPU part")
    return f"ARM CPU part {part}" if part else None


def memory_bytes(root: Path) -> Dict[str, Optional[int]]:
    """MemTotal and MemAvailable from /proc/meminfo (kB there, bytes here)."""
    text = _read(root / "proc/meminfo") or ""
    found: Dict[str, Optional[int]] = {"MemTotal": None, "MemAvailable": None}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in found:
            try:
                found[key] = int(rest.split()[0]) * 1024
            except (IndexError, ValueError):
                pass
    return {"ram_total_bytes": found["MemTotal"], "ram_available_bytes": found["MemAvailable"]}


def default_memory_limit_mb() -> Optional[int]:
    """80% of the board's RAM: a model that needs more fails cleanly instead of swapping a Pi to death."""
    total = memory_bytes(system_root())["ram_total_bytes"]
    return int(total * 0.8 / (1024 * 1024)) if total else None


def os_name(root: Path) -> Optional[str]:
    text = _read(root / "etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return None


def frequency(root: Path, cpu: int = 0) -> Dict[str, Any]:
    """Governor and frequencies of one CPU, in kHz as the kernel reports them.

    ``scaling_cur_freq`` is what the governor asked for; ``cpuinfo_cur_freq`` (root only on
    many kernels) and, on a Pi, ``vcgencmd measure_clock arm`` are what the clock really runs
    at, which is what a throttled board changes.
    """
    base = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
    arm_clock = _run(["vcgencmd", "measure_clock", "arm"])
    arm_clock_hz = None
    if arm_clock and "=" in arm_clock:
        try:
            arm_clock_hz = int(arm_clock.split("=", 1)[1])
        except ValueError:
            arm_clock_hz = None
    return {
        "governor": _read(base / "scaling_governor"),
        "cur_freq_khz": _read_int(base / "scaling_cur_freq"),
        "actual_freq_khz": _read_int(base / "cpuinfo_cur_freq"),
        "min_freq_khz": _read_int(base / "scaling_min_freq"),
        "max_freq_khz": _read_int(base / "scaling_max_freq"),
        "arm_clock_hz": arm_clock_hz,
    }


def temperature_c(root: Path) -> Optional[float]:
    """Hottest CPU-ish thermal zone in degrees Celsius (kernel reports millidegrees)."""
    zones = sorted((root / "sys/class/thermal").glob("thermal_zone*"))
    preferred, others = [], []
    for zone in zones:
        millideg = _read_int(zone / "temp")
        if millideg is None:
            continue
        kind = (_read(zone / "type") or "").lower()
        target = preferred if any(k in kind for k in ("cpu", "soc", "pkg", "x86")) else others
        target.append(millideg / 1000.0)
    values = preferred or others
    return max(values) if values else None


def throttled() -> Optional[Dict[str, Any]]:
    """Decoded ``vcgencmd get_throttled`` (Raspberry Pi only), or None elsewhere."""
    text = _run(["vcgencmd", "get_throttled"])
    if not text or "=" not in text:
        return None
    try:
        value = int(text.split("=", 1)[1], 16)
    except ValueError:
        return None
    return decode_throttled(value)


def decode_throttled(value: int) -> Dict[str, Any]:
    flags = {name: bool(value & (1 << bit)) for bit, name in THROTTLED_BITS.items()}
    return {"raw": hex(value), "now": bool(value & 0xF), "since_boot": bool(value & 0xF0000), **flags}


def snapshot(root: Optional[Path] = None) -> Dict[str, Any]:
    """Cheap state read before and after a measurement: temperature, clocks, throttling."""
    root = root or system_root()
    freq = frequency(root)
    return {
        "temperature_c": temperature_c(root),
        "cur_freq_khz": freq["cur_freq_khz"],
        "actual_freq_khz": freq["actual_freq_khz"],
        "arm_clock_hz": freq["arm_clock_hz"],
        "throttled": throttled(),
    }


def onnxruntime_facts() -> Dict[str, Any]:
    try:
        import onnxruntime as ort
    except Exception as exc:  # a broken wheel can raise anything at import
        return {"version": None, "providers": None, "import_error": f"{type(exc).__name__}: {exc}"}
    return {"version": ort.__version__, "providers": ort.get_available_providers(), "import_error": None}


def info(root: Optional[Path] = None) -> Dict[str, Any]:
    """Everything ``device-agent info`` reports; missing facts are None."""
    from device_agent import __version__
    from device_agent.power import available_sources
    from device_agent.protocol import PROTOCOL_VERSION

    root = root or system_root()
    try:
        import numpy

        numpy_version: Optional[str] = numpy.__version__
    except ImportError:
        numpy_version = None
    return {
        "agent_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "hostname": platform.node() or None,
        "cpu_model": cpu_model(root),
        "cores": os.cpu_count(),
        "architecture": platform.machine() or None,
        **memory_bytes(root),
        "os": os_name(root),
        "kernel": platform.release() or None,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "numpy": numpy_version,
        "onnxruntime": onnxruntime_facts(),
        "frequency": frequency(root),
        "temperature_c": temperature_c(root),
        "throttled": throttled(),
        "power_sources": available_sources(root),
        "emulated": emulated(root),
    }


EMULATION_MARKER = "etc/hostside/emulated-board.json"


def emulated(root: Path) -> bool:
    """Whether this is one of our qemu-user board rigs (deploy/emulated writes this marker).

    Timings taken under emulation are hundreds of times too slow, so the host refuses to
    calibrate such a board."""
    return (root / EMULATION_MARKER).is_file()
