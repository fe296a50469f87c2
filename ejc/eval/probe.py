"""Linear probes: how much of a label a representation holds, against simple baselines.

Shape legend: ``N`` sequences, ``F`` feature width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ejc.data.sequence import EventSequence

if TYPE_CHECKING:
    from ejc.infer.event_jepa import EventJEPA


def probe_accuracy(X: np.ndarray, y: np.ndarray, seed: int = 0, folds: int = 5) -> tuple[float, float]:
    """Mean and std of stratified k-fold accuracy of a standardised logistic regression on ``[N, F]``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes, counts = np.unique(y, return_counts=True)
    k = int(min(folds, counts.min()))
    if len(classes) < 2 or k < 2:
        raise ValueError(f"a probe needs at least 2 classes with 2 examples each; got counts {dict(zip(classes.tolist(), counts.tolist()))}")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    scores = cross_val_score(clf, X, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return float(scores.mean()), float(scores.std())


def compare_probes(model: EventJEPA, seqs: list[EventSequence], y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Probe accuracy of ``model``'s pooled representations beside the same-run baselines:
    the same architecture randomly initialised, and the mean of the raw event vectors."""
    from ejc.infer.event_jepa import EventJEPA

    random_model = EventJEPA.untrained_like(model, seed)
    return {
        "ejc": probe_accuracy(model.embed_sequences(seqs), y, seed)[0],
        "random_encoder": probe_accuracy(random_model.embed_sequences(seqs), y, seed)[0],
        "mean_raw_embedding": probe_accuracy(mean_embedding_features(seqs, model.spec.modality_dims), y, seed)[0],
    }


def mean_embedding_features(seqs: list[EventSequence], modality_dims: dict[str, int]) -> np.ndarray:
    """``[N, sum d_m]``: per-modality mean of the raw event vectors (zeros when absent)."""
    out = np.zeros((len(seqs), sum(modality_dims.values())), np.float32)
    for i, s in enumerate(seqs):
        off = 0
        for m, d in modality_dims.items():
            if m in s.dims:
                out[i, off : off + d] = s.vectors(m).mean(0)
            off += d
    return out


__all__ = ["compare_probes", "mean_embedding_features", "probe_accuracy"]
