"""How each relationship type is found and what its ``confidence`` means.

* ``similar``: candidates are the top neighbours of the source in each modality it has;
  confidence is the **mean similarity score over the modalities both entities have**
  (cosine similarity for the default metric, so in [-1, 1]; inner product or -L2 otherwise).
  ``evidence["scores"]`` holds the per-modality scores.
* ``complementary``: co-occurrence in event sequences (items bought / viewed / used together).
  With ``n_s`` sequences, ``n_a`` of them holding ``a``, ``n_b`` holding ``b`` and ``n_ab``
  holding ``b`` within ``window`` events of an ``a`` (anywhere in the sequence when ``window``
  is None), confidence is the **certainty factor** of the rule ``a -> b``:
  ``(P(b|a) - P(b)) / (1 - P(b))`` with ``P(b|a) = n_ab / n_a`` and ``P(b) = n_b / n_s``. It is
  0 when ``b`` is as frequent after ``a`` as anywhere, 1 when ``b`` always accompanies ``a``, and
  does not reward items that are merely popular. Pairs seen together fewer than
  ``min_support`` times are not reported (too little evidence).
* ``parent`` / ``child`` / ``sibling``: read from a hierarchy (:mod:`ejc.cube.hierarchy`):
  1.0 for declared hierarchies, the clustering confidence ``(1 + silhouette) / 2`` for detected
  ones.
* ``cross_modal``: the source's vector in one modality is carried into another modality by the
  lowest-error transform chain and searched there; confidence is the similarity score there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ejc.errors import CubeError


def scores(metric: str, q: np.ndarray, V: np.ndarray) -> np.ndarray:
    """Similarity of ``q`` [d] to each row of ``V`` [m, d] under ``metric`` (higher = closer)."""
    q = np.asarray(q, np.float64)
    V = np.asarray(V, np.float64)
    if metric == "cosine":
        qn = q / max(float(np.linalg.norm(q)), 1e-12)
        Vn = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-12)
        return Vn @ qn
    if metric == "ip":
        return V @ q
    if metric == "l2":
        return -np.linalg.norm(V - q, axis=1)
    raise CubeError(f"unknown metric {metric!r}; choose cosine, ip or l2")


def item_sequences(data: Any, item_column: str = "event_type") -> Iterator[list[str]]:
    """Sequences of item (entity) ids from an event table, EventSequences, or lists of ids.

    * ``pyarrow.Table`` in ejc's event-table shape: one sequence per ``entity_id``, ordered by
      ``timestamp`` (ties and untimed rows in table order), items from ``item_column``.
    * ``EventSequence`` objects: their ``event_types``.
    * any iterable of iterables of strings (sessions / baskets).
    Missing items (None) are skipped.
    """
    import pyarrow as pa

    if isinstance(data, pa.Table):
        for col in ("entity_id", item_column):
            if col not in data.column_names:
                raise CubeError(f"event table has no column {col!r} (columns: {data.column_names}); pass item_column=")
        ent = data.column("entity_id").to_pylist()
        items = data.column(item_column).to_pylist()
        ts = data.column("timestamp").to_numpy(zero_copy_only=False) if "timestamp" in data.column_names else None
        groups: dict[str, list[int]] = {}
        for i, e in enumerate(ent):
            groups.setdefault(e, []).append(i)
        for rows in groups.values():
            if ts is not None:
                t = np.nan_to_num(np.asarray(ts[rows], np.float64), nan=np.inf)
                rows = [rows[j] for j in np.argsort(t, kind="stable")]
            yield [str(items[r]) for r in rows if items[r] is not None]
        return
    for seq in data:
        types = getattr(seq, "event_types", None)
        if types is not None or hasattr(seq, "timestamps"):
            if types is None:
                raise CubeError(f"EventSequence {getattr(seq, 'id', '?')!r} has no event_types to read items from")
            yield [str(t) for t in types if t is not None]
        elif isinstance(seq, (str, bytes)):
            raise CubeError("each sequence must be a list of item ids, not a string")
        else:
            yield [str(t) for t in seq if t is not None]


class Cooccurrence:
    """Counts of items and item pairs over sequences (see the module docstring)."""

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window < 1:
            raise CubeError(f"window must be >= 1 events (or None for the whole sequence), got {window}")
        self.window = window
        self.sequences = 0
        self.count: Counter[str] = Counter()
        self.pairs: dict[str, Counter[str]] = {}

    def update(self, seqs: Iterable[Sequence[str]]) -> int:
        """Add sequences; returns how many were added."""
        added = 0
        for items in seqs:
            added += 1
            self.sequences += 1
            self.count.update(set(items))
            found: set[tuple[str, str]] = set()
            if self.window is None:
                uniq = sorted(set(items))
                found = {(a, b) for i, a in enumerate(uniq) for b in uniq[i + 1 :]}
            else:
                for i, a in enumerate(items):
                    for b in items[i + 1 : i + 1 + self.window]:
                        if a != b:
                            found.add((a, b) if a < b else (b, a))
            for a, b in found:
                self.pairs.setdefault(a, Counter())[b] += 1
                self.pairs.setdefault(b, Counter())[a] += 1
        return added

    def complementary(self, source: str, min_support: int = 3) -> list[tuple[str, float, dict[str, Any]]]:
        """``(target, certainty factor, evidence)`` for every target with positive association."""
        n_a = self.count.get(source, 0)
        out = []
        for b, n_ab in self.pairs.get(source, Counter()).items():
            if n_ab < min_support:
                continue
            n_b = self.count[b]
            p_ba = n_ab / n_a
            p_b = n_b / self.sequences
            if p_ba <= p_b or p_b >= 1.0:
                continue
            cf = (p_ba - p_b) / (1.0 - p_b)
            out.append((b, float(cf), {"together": int(n_ab), "source_count": int(n_a), "target_count": int(n_b),
                                       "sequences": int(self.sequences), "p_target_given_source": float(p_ba), "lift": float(p_ba / p_b)}))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"window": self.window, "sequences": self.sequences, "count": dict(self.count),
                "pairs": {a: dict(c) for a, c in self.pairs.items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Cooccurrence:
        c = cls(d["window"])
        c.sequences = int(d["sequences"])
        c.count = Counter({k: int(v) for k, v in d["count"].items()})
        c.pairs = {a: Counter({b: int(v) for b, v in m.items()}) for a, m in d["pairs"].items()}
        return c


__all__ = ["Cooccurrence", "item_sequences", "scores"]
