"""Per-line anomaly scores of a log stream: what ``ejc logs stream`` and ``process`` compute.

A line is scored from its parts, each a surprisal in nats (0 = nothing unusual) under the counts
a :class:`LineStats` learned from training lines:

- ``template``: ``-log p(template)`` (add-half smoothing; a template the model never saw gets the
  unseen mass, so an unseen line scores about ``log(2 N)``);
- ``sequence``: ``-log p(template | the source's previous n-1 templates)``, interpolated over the
  back-off contexts of the n-gram (``n`` chosen on a chronological holdout), minus the
  unconditional part already counted by ``template`` (never below 0);
- ``parameter``: a value never seen in a slot of the template that took few distinct values in
  training (an IP never seen with it): ``log(seen / distinct)`` per such slot;
- ``gap``: the inter-arrival time of the source far from the template's typical one (robust z of
  ``log1p(gap)`` beyond 3, in nats);
- ``severity``: a fixed prior for the line's parsed level (FATAL/CRITICAL/EMERG/ALERT 3 nats,
  ERROR/SEVERE 1.5, WARNING 0.5): what the system itself says about the line.

The line score is their sum. The alert threshold is in robust sigmas of the score
(:class:`AdaptiveThreshold`): median and MAD of a holdout of the training log at first, then of
the stream's own recent scores after a warm-up, so the alert rate follows the calibrated rate
when the log drifts. Labels (e.g. BGL's first field) are never read.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ejc.logs.parse import LogRecord

SEVERITY_PRIOR = {"EMERG": 3.0, "EMERGENCY": 3.0, "ALERT": 3.0, "CRIT": 3.0, "CRITICAL": 3.0, "FATAL": 3.0, "ERROR": 1.5, "ERR": 1.5, "SEVERE": 1.5, "WARNING": 0.5, "WARN": 0.5}
COMPONENTS = ("template", "sequence", "parameter", "gap", "severity")
MAX_VALUES = 32  # distinct values tracked per parameter slot; more = a free-valued slot, never alerted
MIN_SLOT_SEEN = 10  # a slot needs this many training values before a new value is surprising
BOS = "<bos>"
TAIL_Q, TAIL_Z = 0.99, 2.326  # the quantile of the tail scale and its normal z


@dataclass
class LineStats:
    """Counts learned from training lines (template ids as strings ``T<id>``)."""

    n: int = 3
    templates: Counter = field(default_factory=Counter)
    contexts: dict[tuple[str, ...], Counter] = field(default_factory=dict)
    slots: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # template -> per slot {"seen": int, "values": Counter | None}
    gaps: dict[str, list[float]] = field(default_factory=dict)  # template -> log1p(gap) samples (training only)
    gap_stats: dict[str, tuple[float, float]] = field(default_factory=dict)  # template -> (median, scale)

    @property
    def total(self) -> int:
        return int(sum(self.templates.values()))

    def learn(self, tid: str, context: tuple[str, ...], params: list[str], gap: float | None) -> None:
        self.templates[tid] += 1
        padded = (BOS,) * (self.n - 1) + context
        for j in range(1, self.n):
            ctx = padded[len(padded) - j :]
            self.contexts.setdefault(ctx, Counter())[tid] += 1
        slots = self.slots.setdefault(tid, [])
        while len(slots) < len(params):
            slots.append({"seen": 0, "values": Counter()})
        for slot, v in zip(slots, params):
            slot["seen"] += 1
            vals = slot["values"]
            if vals is not None:
                vals[v] += 1
                if len(vals) > MAX_VALUES:
                    slot["values"] = None  # free-valued
        if gap is not None and gap >= 0:
            self.gaps.setdefault(tid, []).append(math.log1p(gap))

    def finish(self) -> LineStats:
        """Robust gap statistics per template (median, 1.4826 MAD + 0.25)."""
        for tid, g in self.gaps.items():
            if len(g) >= 10:
                a = np.asarray(g)
                med = float(np.median(a))
                self.gap_stats[tid] = (med, float(1.4826 * np.median(np.abs(a - med)) + 0.25))
        return self

    # -- scoring --------------------------------------------------------------------------------

    def components(self, tid: str | None, context: tuple[str, ...], params: list[str], gap: float | None, severity: str | None) -> dict[str, float]:
        N = self.total
        V = len(self.templates)
        count = self.templates.get(tid, 0) if tid is not None else 0
        p_t = (count + 0.5) / (N + 0.5 * (V + 1))
        out = {"template": -math.log(p_t)}
        # interpolated n-gram: longest context first, weights halving; the unigram is p_t
        padded = (BOS,) * (self.n - 1) + context
        p, w_left = 0.0, 1.0
        for j in range(self.n - 1, 0, -1):
            c = self.contexts.get(padded[len(padded) - j :])
            if c:
                tot = sum(c.values())
                p += 0.5 * w_left * (c.get(tid, 0) / tot if tid is not None else 0.0)
                w_left *= 0.5
        p += w_left * p_t
        out["sequence"] = max(0.0, -math.log(p) - out["template"])
        par = 0.0
        if tid is not None:
            for slot, v in zip(self.slots.get(tid, ()), params):
                vals = slot["values"]
                if vals is not None and slot["seen"] >= MIN_SLOT_SEEN and v not in vals:
                    par += math.log(slot["seen"] / len(vals))
        out["parameter"] = min(par, 10.0)
        g = 0.0
        if gap is not None and gap >= 0 and tid in self.gap_stats:
            med, scale = self.gap_stats[tid]
            g = max(0.0, abs(math.log1p(gap) - med) / scale - 3.0)
        out["gap"] = min(g, 10.0)
        out["severity"] = SEVERITY_PRIOR.get((severity or "").upper(), 0.0)
        return out

    # -- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        sep = "\x1f"
        return {
            "n": self.n,
            "templates": dict(self.templates),
            "contexts": {sep.join(k): dict(v) for k, v in self.contexts.items()},
            "slots": {t: [{"seen": s["seen"], "values": None if s["values"] is None else dict(s["values"])} for s in sl] for t, sl in self.slots.items()},
            "gap_stats": {t: list(v) for t, v in self.gap_stats.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineStats:
        sep = "\x1f"
        s = cls(int(d["n"]))
        s.templates = Counter({k: int(v) for k, v in d["templates"].items()})
        s.contexts = {tuple(k.split(sep)): Counter({t: int(c) for t, c in v.items()}) for k, v in d["contexts"].items()}
        s.slots = {t: [{"seen": int(x["seen"]), "values": None if x["values"] is None else Counter(x["values"])} for x in sl] for t, sl in d["slots"].items()}
        s.gap_stats = {t: (float(v[0]), float(v[1])) for t, v in d["gap_stats"].items()}
        return s


def robust_stats(scores: np.ndarray) -> tuple[float, float]:
    """``(median, scale)`` of ``scores``: the scale is the larger of ``1.4826 * MAD`` and
    ``(q99 - median) / 2.326`` (both one sigma for a normal distribution). Log scores are
    discrete and most lines repeat one template, so the MAD alone is often 0 and would put the
    threshold at the median; the tail term keeps ``3`` sigmas beyond the 99th percentile of a
    normal-looking log. Floored at 0.05."""
    a = np.asarray(scores, np.float64)
    if len(a) == 0:
        return 0.0, 1.0
    med = float(np.median(a))
    mad = 1.4826 * float(np.median(np.abs(a - med)))
    tail = (float(np.quantile(a, TAIL_Q)) - med) / TAIL_Z
    return med, max(0.05, mad, tail)


class AdaptiveThreshold:
    """Alert when ``(score - median) / scale > sigmas``, median/scale first from calibration, then
    recomputed every ``every`` lines from the last ``window`` scores once ``warmup`` were seen."""

    def __init__(self, sigmas: float, median: float, scale: float, adaptive: bool = True, warmup: int = 500, window: int = 5000, every: int = 250):
        if not math.isfinite(sigmas):
            raise ValueError("the threshold must be a finite number of robust sigmas")
        self.sigmas, self.median, self.scale, self.adaptive = float(sigmas), float(median), float(scale), adaptive
        self.warmup, self.every = warmup, every
        self._recent: deque[float] = deque(maxlen=window)
        self._since = 0

    @property
    def value(self) -> float:
        """The current alert threshold on the raw score."""
        return self.median + self.sigmas * self.scale

    def update(self, score: float) -> None:
        if not self.adaptive:
            return
        self._recent.append(score)
        self._since += 1
        if len(self._recent) >= self.warmup and self._since >= self.every:
            self._since = 0
            self.median, self.scale = robust_stats(np.fromiter(self._recent, np.float64))


class SourceState:
    """Bounded per-source memory: the last ``n - 1`` templates and the last time, LRU over sources."""

    def __init__(self, n: int, max_sources: int = 10_000):
        self.k = max(0, n - 1)
        self.max_sources = max_sources
        self._state: OrderedDict[str, tuple[deque, float | None]] = OrderedDict()

    def get(self, key: str) -> tuple[tuple[str, ...], float | None]:
        st = self._state.get(key)
        if st is None:
            return (), None
        self._state.move_to_end(key)
        return tuple(st[0]), st[1]

    def push(self, key: str, tid: str, time: float | None) -> None:
        st = self._state.get(key)
        if st is None:
            st = (deque(maxlen=self.k or 1), None)
            self._state[key] = st
            if len(self._state) > self.max_sources:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(key)
        if self.k:
            st[0].append(tid)
        self._state[key] = (st[0], time if time is not None else st[1])

    def __len__(self) -> int:
        return len(self._state)


def reason(parts: dict[str, float], tid: str | None, record: LogRecord, stats: LineStats, context: tuple[str, ...], new_values: list[str]) -> str:
    """A human-readable reason: the components that contributed most, strongest first."""
    said = []
    for name, v in sorted(parts.items(), key=lambda kv: -kv[1]):
        if v < 0.5:
            continue
        if name == "template":
            seen = stats.templates.get(tid, 0) if tid else 0
            said.append("a template never seen in training" if seen == 0 else f"a rare template (seen {seen} of {stats.total} training lines)")
        elif name == "sequence":
            prev = context[-1] if context else None
            said.append(f"unexpected after {prev} from this source" if prev else "unexpected as a source's first line")
        elif name == "parameter":
            said.append("new value(s) " + ", ".join(repr(v[:40]) for v in new_values[:3]) + " for this template")
        elif name == "gap":
            said.append("an unusual time since the source's previous line")
        elif name == "severity":
            said.append(f"severity {record.severity}")
    return "; ".join(said) if said else "score above the threshold"


__all__ = ["COMPONENTS", "SEVERITY_PRIOR", "AdaptiveThreshold", "LineStats", "SourceState", "reason", "robust_stats"]
