"""A picture of one measurement: what a person looks at to trust (or not) a median.

A histogram shows whether the runs form one tight mode or a long tail; the run-order trace
shows drift (a board heating up and throttling) that a summary hides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict

from hostside.errors import UserError


def plot_latency(result: Dict[str, Any], png_path: Any, *, title: str) -> Path:
    """Write histogram + run trace of ``result["samples_ms"]`` to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.get("samples_ms")
    if not samples:
        raise UserError("the result has no samples_ms to plot; measure with keep_samples=True (--keep-samples)")
    latency = result["latency_ms"]
    figure, (histogram, trace) = plt.subplots(1, 2, figsize=(11, 4))
    histogram.hist(samples, bins=min(60, max(10, len(samples) // 5)), color="tab:blue")
    for key, style in (("median", "-"), ("p90", "--"), ("p99", ":")):
        histogram.axvline(latency[key], color="black", linestyle=style, label=f"{key} {latency[key]:.3f} ms")
    histogram.set_xlabel("latency (ms)")
    histogram.set_ylabel("runs")
    histogram.legend()
    trace.plot(range(1, len(samples) + 1), samples, ".", markersize=3)
    trace.set_xlabel("timed run")
    trace.set_ylabel("latency (ms)")
    flags = [name for name in ("throttled", "frequency_changed") if result.get(name)]
    trace.set_title("runs in order" + (f" ({', '.join(flags)})" if flags else ""))
    protocol = result.get("protocol") or {}
    figure.suptitle(f"{title}: {protocol.get('threads')} thread(s), warm-up {protocol.get('warmup')}, n={latency['count']}")
    figure.tight_layout()
    path = Path(png_path)
    try:
        figure.savefig(path, dpi=100)
    except OSError as exc:
        raise UserError(f"cannot write the plot {path}: {exc.strerror or exc}; choose a writable path") from None
    finally:
        plt.close(figure)
    return path
