"""Power sources behind one small interface, sampled in a background thread.

Two kinds exist: energy *counters* (Intel RAPL through ``/sys/class/powercap``) and power
*meters* (Linux hwmon, e.g. an INA219/INA226/INA260 on the ``ina2xx`` driver, or an external
meter behind a user command that prints watts). Both report energy over a window: a counter
by differencing, a meter by integrating its samples over time. Energy is always taken over a
window of many inferences, because one INA219 read alone takes ~0.6 ms.

Source specs, as given to ``--power``:
  ``rapl`` (every package and dram domain), ``rapl:package``, ``rapl:dram``,
  ``hwmon`` (the first INA2xx sensor) or ``hwmon:hwmonN``, ``cmd:COMMAND ARGS...``.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

INA_NAMES = ("ina209", "ina219", "ina220", "ina226", "ina230", "ina231", "ina238", "ina260", "ina2xx")
#: Assumed ceiling of package power when the kernel gives none; it only shortens sampling.
FALLBACK_MAX_POWER_W = 250.0


class PowerError(Exception):
    """A power source that is missing, unreadable or misbehaving; message says how to fix it."""


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError:
        raise PowerError(
            f"cannot read {path}: it is readable only by root (RAPL energy_uj since Linux 5.10, "
            "CVE-2020-8694); run `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
            "/sys/class/powercap/intel-rapl:*:*/energy_uj` (until reboot) or use "
            "deploy/device-agent.service, which does this at start"
        ) from None
    except (OSError, ValueError) as exc:
        raise PowerError(f"cannot read {path}: {exc}") from None


class PowerSource:
    """One way to learn how much energy the board used over a window.

    The sampler calls ``begin`` once, ``poll`` every ``interval_s`` from its thread, and
    ``end`` once; ``end`` returns (energy in joules, number of readings, seconds between the
    first and the last reading). Why the source states its own window: a reading takes time (a
    command source spawns a process), so a clock around the sampler would not span the same
    interval as the energy, and the average power would be off by the difference.
    """

    name = "power"
    interval_s = 0.05

    def begin(self) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        raise NotImplementedError

    def end(self) -> Tuple[float, int, float]:
        raise NotImplementedError

    def warnings(self) -> List[str]:
        return []


class _RaplDomain:
    """One powercap counter with its wrap-around bookkeeping."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.name = (directory / "name").read_text().strip() if (directory / "name").exists() else directory.name
        self.range_uj = _read_int(directory / "max_energy_range_uj")
        self.max_power_w = self._max_power_w()
        _read_int(directory / "energy_uj")  # fail now, with the root-only message, not mid-run

    def _max_power_w(self) -> float:
        path = self.directory / "constraint_0_max_power_uw"
        try:
            value = int(path.read_text().strip()) / 1e6
        except (OSError, ValueError):
            value = 0.0
        return value if value > 0 else FALLBACK_MAX_POWER_W

    def safe_interval_s(self) -> float:
        """How long the counter surely takes to wrap once, at worst-case power, halved twice."""
        return (self.range_uj / 1e6) / self.max_power_w / 4.0

    def read(self) -> int:
        return _read_int(self.directory / "energy_uj")


class RaplSource(PowerSource):
    """Intel RAPL: package (and dram) energy counters in microjoules that wrap at
    ``max_energy_range_uj``. A counter can wrap more than once between two reads if they are
    far apart, which no arithmetic can recover, so the sampling interval is derived from the
    range and the domain's maximum power, and a late read is reported as a warning."""

    def __init__(self, domains: List[Path]) -> None:
        self.domains = [_RaplDomain(d) for d in domains]
        self.name = "rapl:" + "+".join(d.name for d in self.domains)
        self.interval_s = min([0.1] + [d.safe_interval_s() for d in self.domains])
        self._last: List[int] = []
        self._total_uj: List[int] = []
        self._first_t = 0.0
        self._last_t = 0.0
        self._readings = 0
        self._late_reads = 0

    def begin(self) -> None:
        self._last = [d.read() for d in self.domains]
        self._total_uj = [0 for _ in self.domains]
        self._first_t = self._last_t = time.perf_counter()
        self._readings = 1
        self._late_reads = 0

    def poll(self) -> None:
        now = time.perf_counter()
        values = [d.read() for d in self.domains]
        for i, (domain, value) in enumerate(zip(self.domains, values)):
            delta = value - self._last[i]
            if delta < 0:
                delta += domain.range_uj
            self._total_uj[i] += delta
            if now - self._last_t > 4 * domain.safe_interval_s():
                self._late_reads += 1
        self._last = values
        self._last_t = now
        self._readings += 1

    def end(self) -> Tuple[float, int, float]:
        self.poll()
        return sum(self._total_uj) / 1e6, self._readings, self._last_t - self._first_t

    def domain_energy_j(self) -> Dict[str, float]:
        return {d.name: total / 1e6 for d, total in zip(self.domains, self._total_uj)}

    def warnings(self) -> List[str]:
        if self._late_reads:
            return [f"{self._late_reads} RAPL reads came later than the counter's wrap time; energy may be low"]
        return []


class _MeterSource(PowerSource):
    """A source that reads instantaneous watts; energy is the trapezoid integral over time."""

    def read_w(self) -> float:
        raise NotImplementedError

    def _stamped_read(self) -> Tuple[float, float]:
        """(time, watts): a reading is dated at the middle of the read, which may take long."""
        before = time.perf_counter()
        w = self.read_w()
        return (before + time.perf_counter()) / 2.0, w

    def begin(self) -> None:
        self._t, self._w = self._stamped_read()
        self._first_t = self._t
        self._energy_j = 0.0
        self._readings = 1

    def poll(self) -> None:
        t, w = self._stamped_read()
        self._energy_j += (t - self._t) * (w + self._w) / 2.0
        self._t, self._w = t, w
        self._readings += 1

    def end(self) -> Tuple[float, int, float]:
        self.poll()
        return self._energy_j, self._readings, self._t - self._first_t


class HwmonSource(_MeterSource):
    """An INA2xx current/power sensor on the Linux ``ina2xx`` hwmon driver.

    ``power1_input`` is in microwatts; without it, power is ``curr1_input`` (mA) times the bus
    voltage ``in1_input`` (mV). Each read crosses I2C (~0.6 ms on an INA219), so the sampling
    interval stays well above that.
    """

    interval_s = 0.02

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        chip = (directory / "name").read_text().strip() if (directory / "name").exists() else "hwmon"
        self.name = f"hwmon:{directory.name}:{chip}"
        self.read_w()

    def read_w(self) -> float:
        power = self.directory / "power1_input"
        if power.exists():
            return _read_int(power) / 1e6
        current_ma = _read_int(self.directory / "curr1_input")
        bus_mv = _read_int(self.directory / "in1_input")
        return current_ma * bus_mv / 1e6


class CommandSource(_MeterSource):
    """An external meter: a user command that prints the present power in watts.

    Run without a shell (``shlex.split``) and with a timeout, so a hung meter cannot hang the
    agent.
    """

    interval_s = 0.2

    def __init__(self, command: str, timeout_s: float = 5.0) -> None:
        self.argv = shlex.split(command)
        if not self.argv:
            raise PowerError("the power command is empty; use --power 'cmd:PROGRAM ARGS' that prints watts")
        self.timeout_s = timeout_s
        self.name = "cmd:" + self.argv[0]
        self.read_w()

    def read_w(self) -> float:
        try:
            done = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PowerError(f"power command {self.argv[0]!r} failed: {exc}") from None
        if done.returncode != 0:
            raise PowerError(f"power command {self.argv[0]!r} exited {done.returncode}: {done.stderr.strip()[:200]}")
        try:
            return float(done.stdout.split()[0])
        except (IndexError, ValueError):
            raise PowerError(
                f"power command {self.argv[0]!r} printed {done.stdout.strip()[:80]!r}; it must print watts, e.g. 3.42"
            ) from None


def _rapl_domains(root: Path) -> Dict[str, List[Path]]:
    base = root / "sys/class/powercap"
    found: Dict[str, List[Path]] = {"package": [], "dram": []}
    for directory in sorted(base.glob("intel-rapl:*")):
        name = (directory / "name").read_text().strip() if (directory / "name").exists() else ""
        if name.startswith("package"):
            found["package"].append(directory)
        elif name == "dram":
            found["dram"].append(directory)
    return found


def _ina_sensors(root: Path) -> List[Path]:
    sensors = []
    for directory in sorted((root / "sys/class/hwmon").glob("hwmon*")):
        name = (directory / "name").read_text().strip() if (directory / "name").exists() else ""
        if name in INA_NAMES:
            sensors.append(directory)
    return sensors


def available_sources(root: Path) -> List[Dict[str, Any]]:
    """What ``--power`` could use on this board, and whether it is readable now."""
    sources: List[Dict[str, Any]] = []
    domains = _rapl_domains(root)
    for kind in ("package", "dram"):
        for directory in domains[kind]:
            readable = True
            try:
                _read_int(directory / "energy_uj")
            except PowerError:
                readable = False
            sources.append({"spec": f"rapl:{kind}", "path": str(directory), "readable": readable})
    for directory in _ina_sensors(root):
        sources.append({"spec": f"hwmon:{directory.name}", "path": str(directory), "readable": True})
    return sources


def open_source(spec: str, root: Path) -> PowerSource:
    """The source a ``--power`` spec names; PowerError says what is missing and how to fix it."""
    kind, _, arg = spec.partition(":")
    if kind == "rapl":
        domains = _rapl_domains(root)
        wanted = [arg] if arg else ["package", "dram"]
        if any(w not in domains for w in wanted):
            raise PowerError(f"unknown RAPL domain {arg!r}; use rapl, rapl:package or rapl:dram")
        chosen = [d for w in wanted for d in domains[w]]
        if not chosen:
            raise PowerError(
                f"no Intel RAPL {arg or 'package'} domain under {root / 'sys/class/powercap'}; "
                "RAPL needs an Intel (or recent AMD) CPU with the intel_rapl_common module loaded"
            )
        return RaplSource(chosen)
    if kind == "hwmon":
        sensors = _ina_sensors(root)
        if arg:
            sensors = [s for s in sensors if s.name == arg]
        if not sensors:
            raise PowerError(
                f"no INA2xx hwmon sensor{(' named ' + arg) if arg else ''} under {root / 'sys/class/hwmon'}; "
                "wire the sensor and bind its driver (`sudo modprobe ina2xx; echo ina219 0x40 | sudo tee "
                "/sys/bus/i2c/devices/i2c-1/new_device`; see deploy/POWER.md)"
            )
        return HwmonSource(sensors[0])
    if kind == "cmd":
        return CommandSource(arg)
    raise PowerError(f"unknown power source {spec!r}; use rapl, rapl:package, rapl:dram, hwmon[:hwmonN] or cmd:COMMAND")


class PowerSampler:
    """Polls a source from a daemon thread while the caller runs inferences.

    The thread sleeps between reads, so it costs the timed loop little; onnxruntime releases
    the GIL during ``run``.
    """

    def __init__(self, source: PowerSource) -> None:
        self.source = source
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None

    def __enter__(self) -> "PowerSampler":
        self.source.begin()
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.source.interval_s):
                self.source.poll()
        except BaseException as exc:  # surfaced to the caller in stop()
            self._error = exc

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def result(self) -> Dict[str, Any]:
        """Energy over the window from the first to the last reading (``duration_s``) and the
        mean power over it; call after the ``with`` block."""
        if self._error is not None:
            raise PowerError(f"power source {self.source.name} failed while sampling: {self._error}")
        energy_j, readings, duration_s = self.source.end()
        return {
            "energy_j": energy_j,
            "duration_s": duration_s,
            "avg_w": energy_j / duration_s if duration_s > 0 else None,
            "readings": readings,
        }


def measure_idle(source: PowerSource, seconds: float) -> Dict[str, Any]:
    """Average power while the agent does nothing: the baseline subtracted from a run."""
    with PowerSampler(source) as sampler:
        time.sleep(seconds)
    return sampler.result()
