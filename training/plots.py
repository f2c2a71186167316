"""PNG plots of a run: loss / metric curves and the test confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_curves(log_history: list[dict], path: Path) -> Path:
    """Training loss per logging step, validation loss and macro-F1 per epoch."""
    train = [(e["epoch"], e["loss"]) for e in log_history if "loss" in e]
    evals = [e for e in log_history if "eval_loss" in e]
    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(10, 4))
    if train:
        ax_loss.plot(*zip(*train, strict=True), label="train loss", alpha=0.7)
    if evals:
        epochs = [e["epoch"] for e in evals]
        ax_loss.plot(epochs, [e["eval_loss"] for e in evals], "o-", label="validation loss")
        for key in ("eval_macro_f1", "eval_accuracy"):
            if key in evals[0]:
                ax_metric.plot(epochs, [e[key] for e in evals], "o-", label=key[5:])
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_metric.set(xlabel="epoch", title="Validation metrics")
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_confusion(matrix: list[list[int]], names: list[str], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set(
        xticks=range(len(names)),
        yticks=range(len(names)),
        xticklabels=names,
        yticklabels=names,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            ax.text(j, i, str(value), ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
