"""Linear probes: how much of a label a representation holds, against simple baselines.

Shape legend: ``N`` sequences, ``F`` feature width.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def synthetic_class_probe(model: EventJEPA, seqs: list[EventSequence], truth_path: str | os.PathLike[str], seed: int = 0) -> tuple[dict[str, float], float]:
    """:func:`compare_probes` for the entity class of an ``ejc synth`` log (its ``truth.json``).

    Returns the accuracies (the model's under ``ejc_jepa``), rounded to 4 places, and chance.
    """
    cls = {e["id"]: e["class"] for e in json.loads(Path(truth_path).read_text())["entities"]}
    y = np.array([cls[s.id] for s in seqs])
    probe = compare_probes(model, seqs, y, seed)
    return {("ejc_jepa" if k == "ejc" else k): round(v, 4) for k, v in probe.items()}, round(1.0 / len(set(y.tolist())), 4)


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


def sequence_label(seq: EventSequence) -> str | None:
    """The most common non-null label of a sequence's events (``None`` when it has none)."""
    if seq.labels is None:
        return None
    labs = [str(x) for x in seq.labels if x is not None]
    if not labs:
        return None
    values, counts = np.unique(labs, return_counts=True)
    return str(values[counts.argmax()])


def type_count_features(seqs: list[EventSequence]) -> np.ndarray:
    """``[N, V]`` event-type counts per sequence (a baseline that ignores order and time)."""
    index: dict[str, int] = {}
    rows = []
    for s in seqs:
        c: dict[int, int] = {}
        for t in (s.event_types if s.event_types is not None else []):
            j = index.setdefault(str(t), len(index))
            c[j] = c.get(j, 0) + 1
        rows.append(c)
    out = np.zeros((len(seqs), max(1, len(index))), np.float32)
    for i, c in enumerate(rows):
        for j, v in c.items():
            out[i, j] = v
    return out


def run_probe(seqs: list[EventSequence], cfg: Any, seed: int = 0) -> tuple[dict[str, dict[str, float]], float, dict[str, Any]]:
    """Pretrain on ``seqs`` (labels unused), then probe sequence labels; baselines in the same run.

    Returns ``(metrics, training seconds, details)``; metrics hold ``accuracy`` per method:
    ``ejc``, ``random_encoder``, ``mean_raw_embedding`` (when events carry vectors) and
    ``type_counts``. Sequences without a label are left out of the probe.
    """
    import time

    import torch

    from ejc.errors import EjcError
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.data import DataSpec, make_windows
    from ejc.train.loop import Trainer

    labelled = [(s, lab) for s in seqs if (lab := sequence_label(s)) is not None]
    if len(labelled) < 4:
        raise EjcError(f"the probe needs labelled sequences (--label-col); {len(labelled)} of {len(seqs)} have a label")
    seqs = [s for s, _ in labelled]
    y = np.array([lab for _, lab in labelled])
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    cfg.train.seed = seed
    spec = DataSpec.from_sequences(seqs, cfg.model.max_types)
    trainer = Trainer(cfg, spec, make_windows(seqs, cfg.train.max_len, cfg.train.stride), "cpu")
    for _ in range(cfg.train.steps):
        trainer.step()
    seconds = time.perf_counter() - t0
    model = EventJEPA(config=cfg, _spec=spec, _state=trainer.model.state_dict())
    random_model = EventJEPA.untrained_like(model, seed)
    metrics = {
        "ejc": {"accuracy": probe_accuracy(model.embed_sequences(seqs), y, seed)[0]},
        "random_encoder": {"accuracy": probe_accuracy(random_model.embed_sequences(seqs), y, seed)[0]},
    }
    if spec.modality_dims:
        metrics["mean_raw_embedding"] = {"accuracy": probe_accuracy(mean_embedding_features(seqs, spec.modality_dims), y, seed)[0]}
    metrics["type_counts"] = {"accuracy": probe_accuracy(type_count_features(seqs), y, seed)[0]}
    classes, counts = np.unique(y, return_counts=True)
    details = {"sequences": len(seqs), "classes": dict(zip(classes.tolist(), counts.tolist())), "chance": float(counts.max() / counts.sum())}
    return metrics, seconds, details


__all__ = ["compare_probes", "mean_embedding_features", "probe_accuracy", "run_probe", "sequence_label", "type_count_features"]
