"""Evaluation figures as PNG: confusion matrix, score histograms, ROC curves."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ejc.eval.metrics import auroc, confusion_matrix, roc_curve


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike[str]) -> Path:  # noqa: ANN001
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    _plt().close(fig)
    return out


def plot_confusion(pred: np.ndarray, true: np.ndarray, path: str | os.PathLike[str], title: str = "confusion matrix", max_labels: int = 30) -> Path:
    """Row-normalised confusion matrix (rows = true) of the ``max_labels`` most frequent true labels."""
    plt = _plt()
    vals, counts = np.unique(np.asarray(true, dtype=object).astype(str), return_counts=True)
    labels = [str(v) for v in vals[np.argsort(-counts, kind="stable")][:max_labels]]
    m = confusion_matrix(np.asarray(pred, dtype=object).astype(str), np.asarray(true, dtype=object).astype(str), labels).astype(np.float64)
    norm = m / np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.45 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(labels) <= 15:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7, color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def plot_roc(scores: dict[str, np.ndarray], labels: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """One ROC curve per detector, AUROC in the legend."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(s, labels)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(s, labels):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC (test)")
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def plot_score_histograms(scores: dict[str, np.ndarray], labels: np.ndarray, thresholds: dict[str, float], path: str | os.PathLike[str]) -> Path:
    """Per detector, histograms of normal and anomalous test scores with the training threshold."""
    plt = _plt()
    y = np.asarray(labels).astype(bool)
    fig, axes = plt.subplots(len(scores), 1, figsize=(6, 2.2 * len(scores)), squeeze=False)
    for ax, (name, s) in zip(axes[:, 0], scores.items()):
        s = np.asarray(s, np.float64)
        finite = s[np.isfinite(s)]
        bins = np.linspace(finite.min(), finite.max(), 40) if finite.size and finite.min() < finite.max() else 10
        ax.hist(s[~y & np.isfinite(s)], bins=bins, alpha=0.6, label="normal")
        ax.hist(s[y & np.isfinite(s)], bins=bins, alpha=0.6, label="anomalous")
        if name in thresholds and np.isfinite(thresholds[name]):
            ax.axvline(thresholds[name], color="k", ls="--", lw=1, label="threshold (train)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


__all__ = ["plot_confusion", "plot_roc", "plot_score_histograms"]
