"""Training curves as a PNG, for a person looking at one training run."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Union


def plot_history(history: Sequence[Dict[str, float]], path: Union[str, Path], title: str) -> Path:
    """Loss (left) and train/validation accuracy (right) per epoch, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs: List[float] = [row["epoch"] for row in history]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(9, 3.5), constrained_layout=True)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker="o")
    loss_ax.set(xlabel="epoch", ylabel="train loss (cross-entropy)")
    acc_ax.plot(epochs, [row["train_accuracy"] for row in history], marker="o", label="train")
    acc_ax.plot(epochs, [row["val_accuracy"] for row in history], marker="o", label="validation")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1))
    acc_ax.legend(loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
