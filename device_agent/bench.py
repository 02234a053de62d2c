"""Batch-1 latency (and optionally energy) of one ONNX model on this board; at another batch
size on request (``batch``: MENNDL's post-hoc analysis times batch 100, hostside.analysis).

The protocol follows what makes a figure trustworthy on a small board: threads and spinning
set explicitly (onnxruntime's defaults differ between releases), a warm-up, many timed runs
of one pre-built input, temperature and clocks read before and after (a throttled Pi runs at
a lower clock and the median moves with it), and energy over the whole timed window.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from device_agent import __version__
from device_agent import system
from device_agent.protocol import file_sha256
from device_agent.power import PowerError, PowerSampler, measure_idle, open_source
from device_agent.protocol import DEFAULT_RUNS, DEFAULT_SEED, DEFAULT_WARMUP, PROTOCOL_VERSION, error

#: A --min-time-s run still takes at least this many timed runs, so percentiles mean something.
MIN_RUNS_FOR_MIN_TIME = 10
MAX_VALUES = 10000

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


class MeasureError(Exception):
    """A failure with one of the protocol's error codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def make_input(shape: Sequence[int], seed: int, dtype: Any = np.float32) -> np.ndarray:
    """The seeded random input the agent feeds a model; the host regenerates it to compare outputs.

    Floats are standard normal, integers uniform in [0, 10), booleans fair coins, all from
    ``numpy.random.default_rng(seed)`` so any numpy >= 1.17 yields the same bytes.
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    shape = tuple(int(d) for d in shape)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise ValueError(f"no random input for dtype {dtype}")


def concrete_shape(shape: Sequence[Any], name: str = "input", batch: int = 1) -> List[int]:
    """The batch axis (first), when symbolic or unknown, becomes ``batch`` (1: batch-1 latency).
    Any other symbolic axis (a spatial size) has no size the agent could guess, so it is refused
    by name instead of failing inside onnxruntime as ``Invalid input shape: {1,1}``. At a batch
    other than 1, a batch axis fixed at another size (or none at all) is refused the same way:
    onnxruntime would only say the shapes mismatch."""
    if batch != 1 and (not shape or (isinstance(shape[0], int) and shape[0] > 0 and shape[0] != batch)):
        fixed = f"a fixed batch size {shape[0]}" if shape else "no batch axis"
        raise MeasureError(
            "invalid_model",
            f"input {name!r} has {fixed} (shape {list(shape)}), so it cannot be measured at batch {batch}; export the "
            f"model with a dynamic batch axis (a symbolic first dimension, e.g. torch.onnx.export with "
            f"dynamic_axes={{{name!r}: {{0: 'batch'}}}}) or measure it at batch {shape[0] if shape else 1}",
        )
    dims = []
    for axis, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif axis == 0:
            dims.append(batch)
        else:
            raise MeasureError(
                "invalid_model",
                f"input {name!r} has a symbolic size {d!r} at axis {axis} of shape {list(shape)}; the agent fixes only the "
                f"batch axis (to {batch}): export the model with fixed spatial sizes (e.g. torch.onnx.export without "
                "dynamic_axes for them)",
            )
    return dims


def warm_up() -> None:
    """Pay a process's one-time costs before a request arrives: importing onnxruntime, creating
    its environment (one tiny inference), and numpy's lazily loaded submodules (random,
    median). Together ~0.1 s here, seconds on a Pi 3."""
    from device_agent.selftest import run as selftest

    selftest()
    summarize_ms(make_input([4], DEFAULT_SEED, np.float64).tolist())


def _session(model_path: Path, threads: int, spinning: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    except (AttributeError, RuntimeError):
        pass  # releases before the config-entry API spin by default; recorded as such
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    except MemoryError as exc:
        raise MeasureError("out_of_memory", f"loading the model ran out of memory: {exc}") from None
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        text = str(exc)
        if _looks_like_oom(text):
            raise MeasureError("out_of_memory", f"loading the model ran out of memory: {text[:300]}") from None
        raise MeasureError(
            "invalid_model",
            f"{model_path.name} is not a model onnxruntime {ort.__version__} can load: {text[:300]}; "
            "re-export it (opset supported by this onnxruntime) and check it with onnx.checker",
        ) from None


def _looks_like_oom(text: str) -> bool:
    lowered = text.lower()
    return any(k in lowered for k in ("bad_alloc", "failed to allocate", "out of memory", "memoryerror"))


def _run_once(session: Any, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
    try:
        return session.run(None, feeds)
    except MemoryError as exc:
        raise MeasureError("out_of_memory", f"inference ran out of memory: {exc}") from None
    except Exception as exc:
        text = str(exc)
        code = "out_of_memory" if _looks_like_oom(text) else "runtime_error"
        raise MeasureError(code, f"inference failed: {text[:300]}") from None


def summarize_ms(samples_ms: Sequence[float]) -> Dict[str, Any]:
    """The ``latency_ms`` block: median, mean, p90, p99, min, std (population) and count."""
    values = np.asarray(samples_ms, dtype=np.float64)
    return {
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "min": float(values.min()),
        "std": float(values.std()),
        "count": int(values.size),
    }


def describe_output(name: str, value: np.ndarray) -> Dict[str, Any]:
    """Name, shape, sha256 of the float32 little-endian bytes, and the values when small."""
    as_f32 = np.ascontiguousarray(np.asarray(value, dtype="<f4"))
    return {
        "name": name,
        "shape": list(value.shape),
        "sha256": hashlib.sha256(as_f32.tobytes()).hexdigest(),
        "values": as_f32.ravel().tolist() if as_f32.size <= MAX_VALUES else None,
    }


class _ClockWatch:
    """Reads temperature and clock a few times a second during the timed runs, from sysfs only
    (cheap); catches a frequency drop that before/after reads alone would miss."""

    def __init__(self, root: Path, interval_s: float = 0.25) -> None:
        self.root = root
        self.interval_s = interval_s
        self.freqs_khz: List[int] = []
        self.temps_c: List[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="clock-watch", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._read()

    def _read(self) -> None:
        base = self.root / "sys/devices/system/cpu/cpu0/cpufreq"
        for name in ("cpuinfo_cur_freq", "scaling_cur_freq"):
            try:
                self.freqs_khz.append(int((base / name).read_text().strip()))
                break
            except (OSError, ValueError):
                continue
        temp = system.temperature_c(self.root)
        if temp is not None:
            self.temps_c.append(temp)

    def __enter__(self) -> "_ClockWatch":
        self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._read()


def _timed_runs(session: Any, feeds: Dict[str, np.ndarray], runs: Optional[int], min_time_s: Optional[float]) -> List[float]:
    samples: List[float] = []
    clock = time.perf_counter_ns
    deadline = None if min_time_s is None else time.perf_counter() + min_time_s
    while True:
        if runs is not None and len(samples) >= runs:
            break
        if deadline is not None and runs is None and len(samples) >= MIN_RUNS_FOR_MIN_TIME and time.perf_counter() >= deadline:
            break
        start = clock()
        try:
            session.run(None, feeds)
        except Exception:
            _run_once(session, feeds)  # re-raises with an error code
        samples.append((clock() - start) / 1e6)
    return samples


def measure_model(
    model_path: Path,
    *,
    threads: int = 1,
    warmup: int = DEFAULT_WARMUP,
    runs: Optional[int] = None,
    min_time_s: Optional[float] = None,
    power: Optional[str] = None,
    idle_s: float = 1.0,
    spinning: bool = False,
    seed: int = DEFAULT_SEED,
    keep_samples: bool = False,
    batch: int = 1,
) -> Dict[str, Any]:
    """Measure one model and return the result JSON (``error`` is None on success).

    ``keep_samples`` adds every timed run's latency as ``samples_ms`` (in run order), for plots.
    ``batch`` sets the batch axis of every input; a latency is then one run of ``batch`` images,
    and the power block adds ``energy_per_image_mj`` (per run / batch).

    Raises MeasureError (with a protocol error code) on a model or power-source failure, so
    the CLI can still print a complete JSON result with that code.
    """
    import onnxruntime as ort

    if runs is None and min_time_s is None:
        runs = DEFAULT_RUNS
    root = system.system_root()
    model_path = Path(model_path)
    power_source = None
    if power:
        try:
            power_source = open_source(power, root)
        except PowerError as exc:
            raise MeasureError("power_error", str(exc)) from None
    session = _session(model_path, threads, spinning)
    inputs = session.get_inputs()
    feeds: Dict[str, np.ndarray] = {}
    described_inputs = []
    for index, meta in enumerate(inputs):
        dtype = _ORT_TYPES.get(meta.type)
        if dtype is None:
            raise MeasureError("invalid_model", f"input {meta.name!r} has type {meta.type}, which the agent cannot generate")
        shape = concrete_shape(meta.shape, meta.name, batch)
        feeds[meta.name] = make_input(shape, seed + index, dtype)
        described_inputs.append({"name": meta.name, "shape": shape, "seed": seed + index, "dtype": np.dtype(dtype).name})

    before = system.snapshot(root)
    idle = None
    if power_source is not None:
        try:
            idle = measure_idle(power_source, idle_s)
        except PowerError as exc:
            raise MeasureError("power_error", str(exc)) from None

    outputs = _run_once(session, feeds)
    for _ in range(max(warmup - 1, 0)):
        _run_once(session, feeds)

    window = None
    with _ClockWatch(root) as watch:
        if power_source is not None:
            with PowerSampler(power_source) as sampler:
                samples = _timed_runs(session, feeds, runs, min_time_s)
            try:
                window = sampler.result()
            except PowerError as exc:
                raise MeasureError("power_error", str(exc)) from None
        else:
            samples = _timed_runs(session, feeds, runs, min_time_s)
    after = system.snapshot(root)

    warnings: List[str] = []
    throttled = any(
        (snap.get("throttled") or {}).get("now") for snap in (before, after)
    ) or _throttle_began(before, after)
    freqs = watch.freqs_khz
    frequency_changed = len(set(freqs)) > 1 or _arm_clock_moved(before, after)
    if throttled:
        warnings.append("the board throttled during the run (vcgencmd get_throttled); improve cooling or power supply")
    if frequency_changed:
        warnings.append("CPU frequency changed during the run; set the governor to 'performance' (deploy/GUIDE.md)")
    if (before.get("throttled") or {}).get("under_voltage_occurred"):
        warnings.append("under-voltage since boot: use a supply that delivers 5.1 V at 2.5 A or more")

    result: Dict[str, Any] = {
        "protocol_version": PROTOCOL_VERSION,
        "agent_version": __version__,
        "model": {"path": str(model_path), "sha256": file_sha256(model_path), "size_bytes": model_path.stat().st_size},
        "input": described_inputs[0] if described_inputs else None,
        "inputs": described_inputs,
        "outputs": [describe_output(meta.name, value) for meta, value in zip(session.get_outputs(), outputs)],
        "protocol": {
            "threads": threads,
            "inter_op_threads": 1,
            "spinning": spinning,
            "warmup": warmup,
            "runs": runs,
            "min_time_s": min_time_s,
            "batch": batch,
            "execution_mode": "sequential",
            "graph_optimization": "all",
            "provider": "CPUExecutionProvider",
            "onnxruntime_version": ort.__version__,
            "timer": "time.perf_counter_ns around InferenceSession.run",
        },
        "latency_ms": summarize_ms(samples),
        "system": {
            "before": before,
            "after": after,
            "max_temperature_c": max(watch.temps_c) if watch.temps_c else None,
            "min_freq_khz": min(freqs) if freqs else None,
            "max_freq_khz": max(freqs) if freqs else None,
            "pid": os.getpid(),
        },
        "throttled": bool(throttled),
        "frequency_changed": bool(frequency_changed),
        "warnings": warnings,
        "power": _power_block(power_source, idle, window, len(samples), batch),
        "error": None,
    }
    if keep_samples:
        result["samples_ms"] = samples
    return result


def _arm_clock_moved(before: Dict[str, Any], after: Dict[str, Any]) -> bool:
    """On a Pi, the real ARM clock (vcgencmd) moving by more than 5% across the run."""
    b, a = before.get("arm_clock_hz"), after.get("arm_clock_hz")
    return b is not None and a is not None and abs(a - b) > 0.05 * b


def _throttle_began(before: Dict[str, Any], after: Dict[str, Any]) -> bool:
    """True when a 'since boot' throttle bit was clear before and set after the run."""
    b, a = before.get("throttled"), after.get("throttled")
    if not b or not a:
        return False
    return int(a["raw"], 16) & ~int(b["raw"], 16) & 0xF000F != 0


def _power_block(
    source: Any, idle: Optional[Dict[str, Any]], window: Optional[Dict[str, Any]], count: int, batch: int = 1
) -> Optional[Dict[str, Any]]:
    """Energy of the timed window; per inference = per run (of ``batch`` images), per image = per run / batch."""
    if source is None or window is None or idle is None:
        return None
    energy_mj = window["energy_j"] * 1e3
    idle_w = idle["avg_w"] or 0.0
    above_mj = max(energy_mj - idle_w * window["duration_s"] * 1e3, 0.0)
    block = {
        "source": source.name,
        "avg_w": window["avg_w"],
        "idle_w": idle["avg_w"],
        "window_s": window["duration_s"],
        "readings": window["readings"],
        "energy_total_mj": energy_mj,
        "energy_per_inference_mj": energy_mj / count,
        "energy_per_image_mj": energy_mj / (count * batch),
        "energy_above_idle_mj": above_mj,
        "energy_above_idle_per_inference_mj": above_mj / count,
        "warnings": source.warnings(),
    }
    if hasattr(source, "domain_energy_j"):
        block["domains_mj"] = {k: v * 1e3 for k, v in source.domain_energy_j().items()}
    return block


def failure(code: str, message: str, model_path: Optional[Path] = None) -> Dict[str, Any]:
    """A failed measurement result with the same top-level keys a caller looks at."""
    return {
        "protocol_version": PROTOCOL_VERSION,
        "agent_version": __version__,
        "model": {"path": str(model_path)} if model_path else None,
        "latency_ms": None,
        "error": error(code, message),
    }

