"""Count-based next-type models: the n-gram with back-off and its drift-aware variant.

They are baselines in every evaluation and a component of the shipped next-event predictor
(blended with the network, weights chosen on the recipe's holdout), so they live with the
model and serialise to JSON (:meth:`NGramPredictor.to_dict`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ejc.data.sequence import END

BOS = "<bos>"


class NGramPredictor:
    """``n``-gram next-type model with back-off, plus the median gap after the same context.

    The context of a prefix is its last ``n - 1`` types (padded with ``<bos>`` at the start, so
    "first event of a case" is a context of its own). Prediction uses the longest context seen
    in training; the predicted gap is the median gap that followed that context (backing off
    further when no gap was seen after it). Ties in count go to the type more frequent overall,
    then to the smaller type name: predictions are deterministic.
    """

    def __init__(self, n: int = 2):
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.counts: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        self.gaps: dict[tuple[str, ...], list[float]] = defaultdict(list)
        self.freq: Counter[str] = Counter()
        self._median: dict[tuple[str, ...], float] = {}

    def _contexts(self, prefix: Sequence[str]) -> list[tuple[str, ...]]:
        """Contexts of the prefix from longest (``n - 1`` types) to empty."""
        padded = [BOS] * (self.n - 1) + list(prefix)
        return [tuple(padded[len(padded) - j :]) if j else () for j in range(self.n - 1, -1, -1)]

    def fit(self, cases: Sequence[Sequence[str]], gaps: Sequence[Sequence[float]] | None = None, with_end: bool = True) -> NGramPredictor:
        """Count next types (and :data:`END` after the last event) and the gaps that followed."""
        for ci, tl in enumerate(cases):
            g = gaps[ci] if gaps is not None else None
            for k in range(1, len(tl) + (1 if with_end else 0)):
                nxt = tl[k] if k < len(tl) else END
                for ctx in self._contexts(tl[:k]):
                    self.counts[ctx][nxt] += 1
                    if nxt != END and g is not None and np.isfinite(g[k]):
                        self.gaps[ctx].append(float(g[k]))
                self.freq[nxt] += 1
        self._median = {c: float(np.median(v)) for c, v in self.gaps.items() if v}
        return self

    def predict(self, prefix: Sequence[str], allow_end: bool = True) -> tuple[str, float]:
        """``(next type or END, gap in seconds or NaN)`` after ``prefix``.

        ``allow_end=False``: the most likely type *given that the case goes on* (END never
        predicted; a context followed only by END backs off to a shorter one).
        """
        typ: str | None = None
        gap = float("nan")
        for ctx in self._contexts(prefix):
            c = self.counts.get(ctx)
            cand = [t for t in c if allow_end or t != END] if c else []
            if typ is None and cand:
                typ = min(cand, key=lambda t: (-c[t], -self.freq[t], t))
            if np.isnan(gap) and ctx in self._median:
                gap = self._median[ctx]
            if typ is not None and not np.isnan(gap):
                break
        if typ is None and not allow_end:
            typ = min((t for t in self.freq if t != END), key=lambda t: (-self.freq[t], t), default=END)
        return (typ if typ is not None else END), gap

    def distribution(self, prefix: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """``[len(names)]`` next-type probabilities: the relative frequencies after the longest
        seen context, shorter contexts breaking ties (:meth:`scores`, normalised; uniform when
        nothing was seen)."""
        s = self.scores(prefix, names)
        total = s.sum()
        return s / total if total > 0 else np.full(len(names), 1.0 / max(1, len(names)))

    def scores(self, prefix: Sequence[str], candidates: Sequence[str]) -> np.ndarray:
        """``[C]`` ranking scores: the longest context's relative frequency first, shorter ones break ties."""
        out = np.zeros(len(candidates))
        scale = 1.0
        for ctx in self._contexts(prefix):
            c = self.counts.get(ctx)
            if c:
                total = sum(c.values())
                out += scale * np.array([c.get(t, 0) / total for t in candidates])
                scale *= 1e-3
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and gap medians (contexts joined by ``\\x1f``)."""
        sep = "\x1f"
        return {
            "n": self.n,
            "counts": {sep.join(c): dict(v) for c, v in self.counts.items()},
            "median_gap": {sep.join(c): m for c, m in self._median.items()},
            "freq": dict(self.freq),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NGramPredictor:
        sep = "\x1f"
        key = lambda k: tuple(k.split(sep)) if k else ()  # noqa: E731
        m = cls(int(d["n"]))
        for k, v in d["counts"].items():
            m.counts[key(k)] = Counter({t: int(c) for t, c in v.items()})
        m._median = {key(k): float(v) for k, v in d["median_gap"].items()}
        m.freq = Counter({t: int(c) for t, c in d["freq"].items()})
        return m


def choose_ngram(fit_cases: Sequence[Sequence[str]], val_cases: Sequence[Sequence[str]], max_n: int = 6, fit_gaps=None) -> tuple[int, dict[int, float]]:  # noqa: ANN001
    """The ``n`` in ``1..max_n`` with the best validation accuracy (incl. END; smaller ``n`` on ties)."""
    scores: dict[int, float] = {}
    for n in range(1, max_n + 1):
        m = NGramPredictor(n).fit(fit_cases, fit_gaps)
        hits = total = 0
        for tl in val_cases:
            for k in range(1, len(tl) + 1):
                hits += m.predict(tl[:k])[0] == (tl[k] if k < len(tl) else END)
                total += 1
        scores[n] = hits / max(1, total)
    best = max(scores, key=lambda n: (scores[n], -n))
    return best, scores


RECENT_FRACTIONS = (1.0, 0.5, 0.3, 0.2, 0.1)


def most_recent(items: Sequence, fraction: float) -> list:
    """The last ``ceil(fraction * n)`` of ``items`` (cases in time order: the most recent ones)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, int(np.ceil(fraction * len(items) - 1e-9)))
    return list(items)[len(items) - k :]


def choose_recent_ngram(
    fit_cases: Sequence[Sequence[str]], val_cases: Sequence[Sequence[str]], max_n: int = 6, fit_gaps=None, fractions: Sequence[float] = RECENT_FRACTIONS  # noqa: ANN001
) -> tuple[float, int, dict[str, float]]:
    """A drift-aware n-gram: fitted on only the most recent ``fraction`` of the (time-ordered) fit
    cases; ``fraction`` and ``n`` chosen by validation accuracy incl. END (ties: the larger
    fraction, then the smaller ``n``). Returns ``(fraction, n, {fraction: its best accuracy})``."""
    best: tuple[float, float, int] | None = None
    scores: dict[str, float] = {}
    for f in sorted(fractions, reverse=True):
        cases = most_recent(fit_cases, f)
        gaps = most_recent(fit_gaps, f) if fit_gaps is not None else None
        n, by_n = choose_ngram(cases, val_cases, max_n, gaps)
        scores[str(f)] = by_n[n]
        if best is None or by_n[n] > best[0]:
            best = (by_n[n], f, n)
    assert best is not None
    return best[1], best[2], scores


__all__ = ["BOS", "NGramPredictor", "RECENT_FRACTIONS", "choose_ngram", "choose_recent_ngram", "most_recent"]
