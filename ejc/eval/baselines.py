"""Baselines measured beside ejc in every evaluation run.

Next event: :class:`NGramPredictor` (back-off from the longest seen context; ``n`` chosen on
validation by :func:`choose_ngram`) and :class:`LastEventPredictor` (repeat the last type, global
median gap). Sequence anomalies: :class:`UnseenEventDetector`, :class:`CountVectorNN`,
:class:`UnseenNgramFraction`. All take lists of type strings, so any log with event types works.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from ejc.data.sequence import END
from ejc.model.counts import CountVectorNN  # noqa: F401  (re-exported)
from ejc.model.ngram import BOS, RECENT_FRACTIONS, NGramPredictor, choose_ngram, choose_recent_ngram, most_recent  # noqa: F401  (re-exported: the baselines of every run)

class LastEventPredictor:
    """Predicts that the last type repeats, after the median gap of all training transitions."""

    def fit(self, cases: Sequence[Sequence[str]], gaps: Sequence[Sequence[float]] | None = None) -> LastEventPredictor:
        allg = [float(x) for g in (gaps or []) for x in list(g)[1:] if np.isfinite(x)]
        self.gap = float(np.median(allg)) if allg else float("nan")
        return self

    def predict(self, prefix: Sequence[str], allow_end: bool = True) -> tuple[str, float]:
        return prefix[-1], self.gap  # never END


# ----------------------------------------------------------------------------------------------
# sequence anomaly baselines: fit on normal sequences, higher score = more anomalous


class UnseenEventDetector:
    """Score: fraction of a sequence's events whose type never occurred in training."""

    name = "unseen_event"

    def fit(self, cases: Sequence[Sequence[str]]) -> UnseenEventDetector:
        self.known = {t for tl in cases for t in tl}
        return self

    def score(self, cases: Sequence[Sequence[str]]) -> np.ndarray:
        return np.array([np.mean([t not in self.known for t in tl]) if len(tl) else 0.0 for tl in cases])


class UnseenNgramFraction:
    """Score: fraction of a sequence's ``n``-grams never seen in training.

    The sequence is padded with ``<bos>`` before and :data:`~ejc.eval.protocol.END` after, so
    an unusual start or an abrupt end counts as unseen n-grams too.
    """

    name = "unseen_ngram"

    def __init__(self, n: int = 3):
        self.n = n

    def _grams(self, tl: Sequence[str]) -> list[tuple[str, ...]]:
        padded = [BOS] * (self.n - 1) + list(tl) + [END]
        return [tuple(padded[i : i + self.n]) for i in range(len(padded) - self.n + 1)]

    def fit(self, cases: Sequence[Sequence[str]]) -> UnseenNgramFraction:
        self.seen = {g for tl in cases for g in self._grams(tl)}
        return self

    def score(self, cases: Sequence[Sequence[str]]) -> np.ndarray:
        out = []
        for tl in cases:
            grams = self._grams(tl)
            out.append(np.mean([g not in self.seen for g in grams]) if grams else 0.0)
        return np.array(out)


__all__ = ["BOS", "CountVectorNN", "LastEventPredictor", "NGramPredictor", "UnseenEventDetector", "UnseenNgramFraction", "choose_ngram"]
