"""The predicted-vs-measured plot of a fit (PNG), one panel per model tried."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np


def plot_predicted_vs_measured(measured_ms: np.ndarray, predicted_ms: Dict[str, Sequence[float]],
                               report: Dict[str, Any], path: Path, title: str = "",
                               quantity: str = "latency (ms)") -> Path:
    """Log-log scatter of cross-validated predictions against measurements, with ±10%/±20% bands
    (``quantity`` names the axes: latency, or energy for a calibration that predicts it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(predicted_ms)
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4.4), squeeze=False)
    lo, hi = float(np.min(measured_ms)) / 1.5, float(np.max(measured_ms)) * 1.5
    line = np.array([lo, hi])
    for ax, kind in zip(axes[0], kinds):
        cv = report["models"][kind]["cross_validated"]
        ax.fill_between(line, line / 1.2, line * 1.2, color="tab:green", alpha=0.12, label="±20%")
        ax.fill_between(line, line / 1.1, line * 1.1, color="tab:green", alpha=0.25, label="±10%")
        ax.plot(line, line, color="black", lw=0.8)
        ax.scatter(measured_ms, predicted_ms[kind], s=10, alpha=0.75)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        chosen = " (chosen)" if kind == report.get("chosen") else ""
        ax.set_title(f"{kind}{chosen}\nwithin ±10% {cv['within_10pct']:.0%}, ±20% {cv['within_20pct']:.0%}, "
                     f"ρ {cv['spearman']:.3f}", fontsize=9)
        ax.set_xlabel(f"measured {quantity}")
        ax.set_ylabel(f"predicted {quantity}, cross-validated")
        ax.legend(loc="upper left", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
