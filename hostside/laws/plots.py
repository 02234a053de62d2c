"""PNGs a person looks at: each law's sampled metric against uniform sampling of the whole space,
and the elaborated population's params against predicted latency."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_law_distributions(path: Path, title: str, label: str, tau: Sequence[float],
                           law_values: List[np.ndarray], uniform_values: np.ndarray,
                           shares: List[float], uniform_share: float) -> Path:
    """One panel per law: log10 histogram of its samples over the uniform samples, target shaded."""
    plt = _pyplot()
    n = len(law_values)
    cols = min(5, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    logs_u = np.log10(np.maximum(uniform_values, 1e-12))
    all_logs = np.concatenate([logs_u] + [np.log10(np.maximum(v, 1e-12)) for v in law_values])
    bins = np.linspace(all_logs.min(), all_logs.max(), 40)
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        ax.hist(logs_u, bins=bins, density=True, color="0.75", label=f"uniform ({uniform_share:.0%} in)")
        ax.hist(np.log10(np.maximum(law_values[i], 1e-12)), bins=bins, density=True, alpha=0.7,
                color="tab:blue", label=f"law {i} ({shares[i]:.0%} in)")
        ax.axvspan(math.log10(tau[0]), math.log10(tau[1]), color="tab:green", alpha=0.15)
        ax.legend(fontsize=7)
        ax.set_xlabel(f"log10 {label}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_population(path: Path, title: str, points: List[Dict[str, Any]]) -> Path:
    """Params vs predicted latency of every judged network, coloured by target window."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    windows = sorted({p["window"] for p in points})
    cmap = plt.get_cmap("viridis", max(len(windows), 1))
    for i, w in enumerate(windows):
        xs = [p["params"] for p in points if p["window"] == w]
        ys = [p["latency_ms"] for p in points if p["window"] == w]
        ax.scatter(xs, ys, s=3, color=cmap(i), alpha=0.5, label=f"[{w[0]:g}, {w[1]:g}]")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("params")
    ax.set_ylabel("predicted latency_ms")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6, markerscale=3, title="params target", title_fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
