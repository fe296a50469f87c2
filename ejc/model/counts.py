"""Event-count vectors: a sequence's novelty as the distance to the nearest training count vector.

A baseline of every anomaly evaluation and a component of the shipped detector
(:mod:`ejc.infer.detector`), so it lives with the model and serialises to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class CountVectorNN:
    """Score: Euclidean distance from a sequence's event-count vector to the nearest training one.

    Count vectors have one entry per training type plus one for all unseen types.
    """

    name = "count_vector_nn"

    def fit(self, cases: Sequence[Sequence[str]]) -> CountVectorNN:
        self.index = {t: i for i, t in enumerate(sorted({t for tl in cases for t in tl}))}
        self.train = np.unique(self.counts(cases), axis=0)
        return self

    def counts(self, cases: Sequence[Sequence[str]]) -> np.ndarray:
        """``[N, V + 1]`` event counts (last column: types unseen in training)."""
        v = len(self.index)
        out = np.zeros((len(cases), v + 1), np.float64)
        for i, tl in enumerate(cases):
            for t in tl:
                out[i, self.index.get(t, v)] += 1
        return out

    def score(self, cases: Sequence[Sequence[str]], batch: int = 512) -> np.ndarray:
        x = self.counts(cases)
        tn = (self.train**2).sum(1)
        out = np.empty(len(x))
        for s in range(0, len(x), batch):
            xb = x[s : s + batch]
            d2 = (xb**2).sum(1)[:, None] + tn[None, :] - 2 * xb @ self.train.T
            out[s : s + batch] = np.sqrt(np.maximum(d2.min(1), 0.0))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"types": list(self.index), "train": self.train.astype(np.int64).tolist() if len(self.train) else []}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CountVectorNN:
        m = cls()
        m.index = {t: i for i, t in enumerate(d["types"])}
        m.train = np.asarray(d["train"], np.float64).reshape(-1, len(m.index) + 1)
        return m


__all__ = ["CountVectorNN"]
