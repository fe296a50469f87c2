"""Per-event and per-sequence surprise, with thresholds calibrated on training data.

Shape legend: ``n`` events, ``C`` score components.

From the causal encoder state before event ``t`` the heads give the surprise of event ``t``:
type NLL, log-gap NLL, cosine error of its vector and the latent error (predicted vs target
state). Each component is standardised with the mean/std measured on the calibration (training)
sequences, and the event score is the mean of the available standardised components. The
sequence score is the mean event score. Thresholds are quantiles of the calibration scores
(default 0.99), so about 1% of normal training events / sequences exceed them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

COMPONENTS = ("type", "gap", "embedding", "latent")


@dataclass
class Calibration:
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    event_threshold: float = float("inf")
    sequence_threshold: float = float("inf")
    quantile: float = 0.99
    num_events: int = 0
    num_sequences: int = 0

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        return cls(**d)

    def save(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Calibration:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class AnomalyResult:
    event_scores: np.ndarray  # [n]
    components: dict[str, np.ndarray]  # name -> [n] raw surprise (NaN where not applicable)
    sequence_score: float
    event_threshold: float
    sequence_threshold: float

    @property
    def is_anomalous(self) -> np.ndarray:
        return self.event_scores > self.event_threshold

    @property
    def sequence_is_anomalous(self) -> bool:
        return bool(self.sequence_score > self.sequence_threshold)


def combine(components: dict[str, np.ndarray], cal: Calibration | None) -> np.ndarray:
    """Standardise and average the available components: ``[n]`` event scores."""
    n = len(next(iter(components.values())))
    total = np.zeros(n)
    count = np.zeros(n)
    for name, raw in components.items():
        if cal is not None and name in cal.mean:
            z = (raw - cal.mean[name]) / max(cal.std[name], 1e-6)
        else:
            z = raw
        ok = np.isfinite(z)
        total[ok] += z[ok]
        count[ok] += 1
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def fit_calibration(per_sequence: list[dict[str, np.ndarray]], quantile: float = 0.99) -> Calibration:
    """Component statistics and score thresholds from the raw components of normal sequences."""
    cal = Calibration(quantile=quantile)
    for name in COMPONENTS:
        vals = np.concatenate([c[name] for c in per_sequence if name in c]) if per_sequence else np.zeros(0)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            cal.mean[name] = float(vals.mean())
            cal.std[name] = float(vals.std() + 1e-6)
    ev, sq = [], []
    for c in per_sequence:
        s = combine(c, cal)
        ev.append(s)
        sq.append(float(s.mean()) if s.size else 0.0)
    evs = np.concatenate(ev) if ev else np.zeros(0)
    cal.event_threshold = float(np.quantile(evs, quantile)) if evs.size else float("inf")
    cal.sequence_threshold = float(np.quantile(sq, quantile)) if sq else float("inf")
    cal.num_events, cal.num_sequences = int(evs.size), len(sq)
    return cal


__all__ = ["AnomalyResult", "COMPONENTS", "Calibration", "combine", "fit_calibration"]
