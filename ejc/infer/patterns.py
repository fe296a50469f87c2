"""Patterns in one event sequence: periodic runs, bursts, cycles, regime changes and motifs.

Shape legend: ``n`` events in the sequence, ``d`` representation width, ``K`` event types,
``L`` motif length, ``m`` items of one signal (events or gaps that a detector keeps).

    from ejc.infer.patterns import detect_patterns
    for p in detect_patterns(seq, kinds=["burst", "regime_change"], burst={"min_events": 12}):
        print(p.kind, p.start_index, p.end_index, round(p.confidence, 2), p.details)

Every detector is a function ``fn(seq, ctx) -> list[Pattern]`` in a registry
(:func:`register_pattern`); ``ctx`` (:class:`PatternContext`) carries the detector's options
(its declared defaults updated by the caller's ``detect_patterns(seq, <kind>={...})``),
optional per-event representations ``[n, d]`` (computed on first use when given as a
callable) and the cached results of the other detectors (``ctx.detect(kind)``).

The built-in detectors are general (any irregular log, timed or untimed, nothing fitted to one
data set) and cost O(n) or O(n log n) in the sequence length:

* ``periodic`` (timed): per event type, maximal runs of >= ``min_repeats`` occurrences whose
  consecutive gaps satisfy ``max / min <= 1 + tolerance`` (so every gap is within
  ``tolerance`` of the run's median gap, the reported ``period``); confidence is one minus the
  expected number of runs as tight under chance (the type's other gaps as the null).
* ``burst`` (timed): maximal runs of >= ``min_events`` events whose gaps are >= ``min_ratio``
  times below the sequence's typical (median) gap and below the gaps just before and after,
  so a lasting drop of the gap level is a regime change, not a burst.
* ``cycle``: a primitive motif of 2-6 types repeated >= ``min_repeats`` times back to back in
  the type sequence (one vectorised pass per motif length).
* ``regime_change``: binary segmentation of the sequence with a penalty, on up to three
  signals: ranks of the log gaps (timed), the event-type distribution, and the per-event
  representations when given; events of bursts, periodic runs and cycles are left out first
  (transient patterns are explained away, a regime is what persists), and each statistic is
  deflated by the signal's measured dependence. A change is kept when it is significant on
  one signal and large enough there (gap-level ratio >= ``min_gap_ratio`` or type
  total-variation shift >= ``min_type_shift``).
* ``motif``: contiguous type n-grams (length 3-5) seen far more often than their chance rate
  under independent types (lift, a Poisson tail bound with a Bonferroni correction).

``start``/``end`` of a :class:`Pattern` are timestamps (positions when the sequence is
untimed); ``start_index``/``end_index`` are inclusive positions in the time-sorted sequence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ejc.data.sequence import EventSequence
from ejc.errors import ConfigError, EjcError

DetectorFn = Callable[[EventSequence, "PatternContext"], list["Pattern"]]


@dataclass
class Pattern:
    """One pattern found in a sequence.

    ``start``/``end`` are the timestamps (positions if untimed) of events ``start_index`` and
    ``end_index`` (inclusive positions in the time-sorted sequence); ``confidence`` is in
    [0, 1]; ``details`` holds the kind-specific fields (period and event_type for periodic,
    count for burst, motif and repeats for cycle, index/time/gap_ratio for regime_change,
    motif/count/lift for motif).
    """

    kind: str
    start: float
    end: float
    start_index: int
    end_index: int
    confidence: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Detector:
    fn: DetectorFn
    defaults: dict[str, Any] | None  # None: accepts any option


_REGISTRY: dict[str, _Detector] = {}


def register_pattern(
    name: str,
    *,
    defaults: dict[str, Any] | None = None,
    override: bool = False,
) -> Callable[[DetectorFn], DetectorFn]:
    """Decorator registering ``fn(seq, ctx) -> list[Pattern]`` as the detector of kind ``name``.

    ``defaults`` declares the detector's options and their default values; callers may then
    pass only those names (others raise :class:`ConfigError`). Without ``defaults`` any option
    is accepted. Registering a taken name raises :class:`EjcError` unless ``override=True``.

        @register_pattern("long_gap", defaults={"factor": 50.0})
        def long_gap(seq, ctx):
            ...
    """
    if not isinstance(name, str) or not name:
        raise EjcError(f"a pattern kind needs a non-empty string name, got {name!r}")

    def deco(fn: DetectorFn) -> DetectorFn:
        if name in _REGISTRY and not override:
            raise EjcError(f"pattern kind {name!r} is already registered; pass override=True to replace it")
        _REGISTRY[name] = _Detector(fn, None if defaults is None else dict(defaults))
        return fn

    return deco


def unregister_pattern(name: str) -> None:
    """Remove a registered detector (built-ins included); unknown names raise :class:`EjcError`."""
    if name not in _REGISTRY:
        raise EjcError(f"no pattern kind {name!r}; registered: {', '.join(available_patterns())}")
    del _REGISTRY[name]


def available_patterns() -> list[str]:
    """Registered pattern kinds, in registration order."""
    return list(_REGISTRY)


class PatternContext:
    """What a detector gets besides the sequence.

    Attributes:
        options: this detector's options (declared defaults updated by the caller's).
        kind: the kind being detected.
    """

    def __init__(
        self,
        seq: EventSequence,
        kind: str,
        options: dict[str, Any],
        representations: np.ndarray | Callable[[], np.ndarray] | None,
        all_options: dict[str, dict[str, Any]],
        cache: dict[str, list[Pattern]],
        reps_box: dict[str, Any],
    ):
        self.seq = seq
        self.kind = kind
        self.options = options
        self._all_options = all_options
        self._cache = cache
        self._reps_box = reps_box  # shared between the contexts of one detect_patterns call
        if representations is not None:
            reps_box["source"] = representations

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    @property
    def has_representations(self) -> bool:
        return self._reps_box.get("source") is not None or self._reps_box.get("value") is not None

    @property
    def representations(self) -> np.ndarray | None:
        """``[n, d]`` per-event representations, or None when none were given (computed once)."""
        if "value" not in self._reps_box:
            src = self._reps_box.get("source")
            val = src() if callable(src) else src
            if val is not None:
                val = np.asarray(val, dtype=np.float64)
                if val.ndim != 2 or len(val) != len(self.seq):
                    raise EjcError(
                        f"representations must be [n, d] with n = {len(self.seq)} events, got shape {val.shape}"
                    )
            self._reps_box["value"] = val
        return self._reps_box["value"]

    def detect(self, kind: str) -> list[Pattern]:
        """The patterns of another registered kind on the same sequence (computed once per call)."""
        if kind not in _REGISTRY:
            raise EjcError(f"no pattern kind {kind!r}; registered: {', '.join(available_patterns())}")
        if kind not in self._cache:
            det = _REGISTRY[kind]
            opts = _options_for(kind, det, self._all_options.get(kind, {}))
            ctx = PatternContext(self.seq, kind, opts, None, self._all_options, self._cache, self._reps_box)
            self._cache[kind] = sorted(det.fn(self.seq, ctx), key=_sort_key)
        return self._cache[kind]


def _options_for(kind: str, det: _Detector, given: dict[str, Any]) -> dict[str, Any]:
    if det.defaults is None:
        return dict(given)
    return {**det.defaults, **given}


def _sort_key(p: Pattern) -> tuple[int, int, str]:
    return (p.start_index, p.end_index, p.kind)


def detect_patterns(
    seq: EventSequence,
    kinds: Iterable[str] | str | None = None,
    representations: np.ndarray | Callable[[], np.ndarray] | None = None,
    min_confidence: float = 0.0,
    **options: dict[str, Any],
) -> list[Pattern]:
    """Run pattern detectors on one sequence; patterns sorted by start.

    Args:
        seq: the sequence (timed or untimed; event types needed by cycle and motif).
        kinds: kinds to run (default: every registered kind).
        representations: optional ``[n, d]`` per-event states, or a callable returning them
            (called only if a detector asks for them).
        min_confidence: drop patterns below this confidence.
        **options: per-kind option dicts, e.g. ``periodic={"tolerance": 0.05}``.

    Raises:
        EjcError: an unknown kind. ConfigError: unknown options (all listed at once).
    """
    if not isinstance(seq, EventSequence):
        raise EjcError(f"detect_patterns needs an EventSequence, got {type(seq).__name__}")
    if kinds is None:
        run = available_patterns()
    else:
        run = [kinds] if isinstance(kinds, str) else list(kinds)
    unknown = [k for k in list(run) + list(options) if k not in _REGISTRY]
    if unknown:
        raise EjcError(
            f"unknown pattern kind(s) {sorted(set(unknown))}; registered: {', '.join(available_patterns())}"
        )
    problems: list[str] = []
    for kind, opts in options.items():
        if not isinstance(opts, dict):
            problems.append(f"options for {kind!r} must be a dict, e.g. {kind}={{...}}; got {type(opts).__name__}")
            continue
        defaults = _REGISTRY[kind].defaults
        if defaults is not None:
            for key in opts:
                if key not in defaults:
                    problems.append(f"{kind}: unknown option {key!r}; valid: {', '.join(sorted(defaults))}")
    if not 0.0 <= float(min_confidence) <= 1.0:
        problems.append(f"min_confidence must be in [0, 1], got {min_confidence}")
    if problems:
        raise ConfigError(problems)
    cache: dict[str, list[Pattern]] = {}
    reps_box: dict[str, Any] = {}
    root = PatternContext(seq, "", {}, representations, dict(options), cache, reps_box)
    out: list[Pattern] = []
    for kind in dict.fromkeys(run):
        out.extend(p for p in root.detect(kind) if p.confidence >= min_confidence)
    return sorted(out, key=_sort_key)


# ----------------------------------------------------------------------------------------------
# helpers


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _type_codes(seq: EventSequence) -> tuple[np.ndarray, list[str]] | None:
    """``[n]`` int codes (``-1 - i`` for a missing type, so no two missing types match) and names."""
    if seq.event_types is None:
        return None
    types = seq.event_types
    n = len(types)
    missing = np.array([t is None for t in types], bool)
    names_arr = np.asarray(["" if t is None else str(t) for t in types], dtype=object)
    names, inv = np.unique(names_arr[~missing].astype(str), return_inverse=True) if (~missing).any() else (np.zeros(0, str), np.zeros(0, np.int64))
    codes = -1 - np.arange(n, dtype=np.int64)
    codes[~missing] = inv
    return codes, [str(x) for x in names]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) positions of the runs of True in ``mask``."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1)


def _log_gaps(t: np.ndarray) -> np.ndarray:
    """``[len(t) - 1]`` log gaps; zero gaps (equal timestamps) get half the smallest positive gap."""
    g = np.diff(t)
    pos = g[g > 0]
    floor = 0.5 * float(pos.min()) if len(pos) else 1e-9
    return np.log(np.maximum(g, floor))


def _pattern(seq: EventSequence, kind: str, s: int, e: int, conf: float, **details: Any) -> Pattern:
    t = seq.times
    return Pattern(kind, float(t[s]), float(t[e]), int(s), int(e), float(min(1.0, max(0.0, conf))), details)


# ----------------------------------------------------------------------------------------------
# periodic


@register_pattern("periodic", defaults={"min_repeats": 5, "tolerance": 0.05})
def detect_periodic(seq: EventSequence, ctx: PatternContext) -> list[Pattern]:
    """Per event type, runs of >= ``min_repeats`` occurrences at a steady period (timed only).

    A run is maximal among runs whose gaps have ``max / min <= 1 + tolerance`` (a stricter
    form of "every gap within ``tolerance`` of the median"); overlapping candidates of one type
    keep the longest. Confidence is ``1 - E`` with ``E`` the expected number of runs of ``c``
    occurrences this steady by chance, ``E = G (c - 1) p^(c - 2)``: ``G`` the same-type gaps of
    the sequence and ``p`` the share of the type's gaps outside the run that fall in a window
    of log-width ``log(1 + tolerance)`` around the period, shrunk towards the share under a
    Poisson process (10 pseudo-gaps). Shuffling a type's gaps yields about as many runs as
    real data shows, so the type's own gaps are the right null; a type seen only in its run
    has no other gaps and gets the Poisson share. Without event types the whole sequence is one type (a heartbeat log).
    ``details``: event_type, period (median gap), count, max_deviation (relative), expected,
    indices (the occurrences).
    """
    k, tol = int(ctx["min_repeats"]), float(ctx["tolerance"])
    _need(k >= 3, f"periodic: min_repeats must be >= 3, got {k}")
    _need(0 < tol < 1, f"periodic: tolerance must be in (0, 1), got {tol}")
    n = len(seq)
    if seq.timestamps is None or n < k:
        return []
    tc = _type_codes(seq)
    codes = np.zeros(n, np.int64) if tc is None else tc[0]
    names = ["*"] if tc is None else tc[1]
    order = np.argsort(codes, kind="stable")  # events grouped by type, time order inside
    c = codes[order]
    t = seq.timestamps[order]
    g = np.diff(t)  # [n - 1]: gap to the next occurrence of the same type (where c matches)
    valid = (c[1:] == c[:-1]) & (c[1:] >= 0) & (g > 0)
    lg = np.where(valid, np.log(np.where(valid, g, 1.0)), np.nan)
    width = math.log1p(tol)
    # prefilter (vectorised): consecutive gaps of a run have ratio within 1 + tol
    pair = valid[1:] & valid[:-1] & (np.abs(lg[1:] - lg[:-1]) <= width + 1e-12)
    ps, pe = _runs(pair)
    # chance reference: the type's own gaps outside the run (shuffling a type's gaps makes
    # about as many runs as the data shows, so its gap distribution is the right null)
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])  # first grouped position of each type
    sorted_lg: dict[int, np.ndarray] = {}
    trials = int(valid.sum())
    out: list[Pattern] = []
    for a, b in zip(ps, pe):
        if b - a < k - 2:  # pairs a..b-1 cover gaps a..b: b - a + 1 gaps, b - a + 2 events
            continue
        for s, e in _windows(lg[a : b + 1], width, k - 1):  # gaps s..e-1 of this stretch
            gs = a + s
            gap = g[gs : a + e]
            ev = order[gs : a + e + 1]  # event positions of the run (time order)
            period = float(np.median(gap))
            count = len(ev)
            code = int(c[gs])
            if code not in sorted_lg:
                t0 = int(starts[np.searchsorted(starts, gs, "right") - 1])
                t1 = int(np.searchsorted(c, code, "right"))
                own = lg[t0 : t1 - 1]
                sorted_lg[code] = np.sort(own[np.isfinite(own)])
            pool = sorted_lg[code]
            mid = math.log(period)
            in_band = int(np.searchsorted(pool, mid + width / 2, "right") - np.searchsorted(pool, mid - width / 2, "left"))
            inside = int(((np.log(gap) >= mid - width / 2) & (np.log(gap) <= mid + width / 2)).sum())
            others = len(pool) - len(gap)
            p_exp = min(1.0, width / math.e)  # the log of an exponential gap has density <= 1/e
            p_gap = (max(0, in_band - inside) + 10.0 * p_exp) / (max(0, others) + 10.0)
            expected = trials * (count - 1) * p_gap ** (count - 2)
            out.append(
                _pattern(
                    seq, "periodic", int(ev[0]), int(ev[-1]), 1.0 - expected,
                    event_type=names[int(c[gs])] if tc is not None else None,
                    period=period, count=count,
                    max_deviation=float(np.max(np.abs(gap - period)) / period),
                    expected=expected,
                    indices=[int(i) for i in ev],
                )
            )
    return out


def _windows(x: np.ndarray, width: float, min_len: int) -> list[tuple[int, int]]:
    """Non-overlapping maximal windows ``[s, e)`` of ``x`` with ``max - min <= width``, length >= min_len.

    For each right end the longest valid window (monotone deques, O(len)); windows that stop
    growing are candidates; overlaps keep the longer window.
    """
    from collections import deque

    lo: deque[int] = deque()
    hi: deque[int] = deque()
    s = 0
    cands: list[tuple[int, int]] = []
    m = len(x)
    for i in range(m):
        while lo and x[lo[-1]] >= x[i]:
            lo.pop()
        lo.append(i)
        while hi and x[hi[-1]] <= x[i]:
            hi.pop()
        hi.append(i)
        while x[hi[0]] - x[lo[0]] > width + 1e-12:
            s += 1
            if lo[0] < s:
                lo.popleft()
            if hi[0] < s:
                hi.popleft()
        # window [s, i] is the longest ending at i; it is maximal if it cannot grow to i + 1
        if i + 1 == m or max(x[hi[0]], x[i + 1]) - min(x[lo[0]], x[i + 1]) > width + 1e-12:
            if i + 1 - s >= min_len:
                cands.append((s, i + 1))
    cands.sort(key=lambda w: (-(w[1] - w[0]), w[0]))
    taken: list[tuple[int, int]] = []
    for w in cands:
        if all(w[1] <= a or w[0] >= b for a, b in taken):
            taken.append(w)
    return sorted(taken)


# ----------------------------------------------------------------------------------------------
# burst


@register_pattern("burst", defaults={"min_events": 10, "min_ratio": 10.0, "context": 20})
def detect_burst(seq: EventSequence, ctx: PatternContext) -> list[Pattern]:
    """Runs of >= ``min_events`` events arriving far faster than usual (timed only).

    A gap is short when it is >= ``min_ratio`` times below the sequence's typical gap (the
    median of the log gaps: robust to the bursts themselves and to outlying gaps). A maximal
    run of short gaps is a burst when its median gap is also >= ``min_ratio`` times shorter
    than the median of up to ``context`` gaps on each side that has events, so a lasting drop
    of the gap level is left to ``regime_change``. No spread (MAD) enters the threshold: gap
    distributions that alternate quiet and active spells are bimodal, which inflates any
    spread estimate, and ``min_events`` consecutive short gaps already make a run unlikely
    by chance. ``details``: count, mean_gap, duration, density_ratio (vs the typical gap),
    context_ratio (vs the neighbours). Confidence ``1 - min_ratio / context_ratio``.
    """
    k, r, w = int(ctx["min_events"]), float(ctx["min_ratio"]), int(ctx["context"])
    _need(k >= 3, f"burst: min_events must be >= 3, got {k}")
    _need(r > 1, f"burst: min_ratio must be > 1, got {r}")
    _need(w >= 1, f"burst: context must be >= 1, got {w}")
    n = len(seq)
    if seq.timestamps is None or n < k:
        return []
    lg = _log_gaps(seq.timestamps)  # [n - 1], gap i - 1 precedes event i
    c = float(np.median(lg))
    s_, e_ = _runs(lg < c - math.log(r))
    out: list[Pattern] = []
    for a, b in zip(s_, e_):  # gaps a..b-1 -> events a..b
        if b - a + 1 < k:
            continue
        inner = float(np.median(lg[a:b]))
        sides = [lg[max(0, a - w) : a], lg[b : b + w]]
        ratios = [math.exp(float(np.median(x)) - inner) for x in sides if len(x)]
        ctx_ratio = min(ratios) if ratios else math.exp(c - inner)
        if ctx_ratio < r:
            continue
        gaps = np.diff(seq.timestamps[a : b + 1])
        out.append(
            _pattern(
                seq, "burst", int(a), int(b), 1.0 - r / ctx_ratio,
                count=int(b - a + 1), mean_gap=float(gaps.mean()), duration=float(gaps.sum()),
                density_ratio=math.exp(c - inner), context_ratio=ctx_ratio,
            )
        )
    return out


# ----------------------------------------------------------------------------------------------
# cycle


@register_pattern("cycle", defaults={"min_repeats": 4, "min_length": 2, "max_length": 6})
def detect_cycle(seq: EventSequence, ctx: PatternContext) -> list[Pattern]:
    """A motif of ``min_length..max_length`` types repeated >= ``min_repeats`` times back to back.

    For each motif length ``L`` one vectorised pass marks ``x[i] == x[i + L]``; a run of
    ``r`` marks is a period-``L`` stretch of ``r + L`` events. Non-primitive motifs (a shorter
    motif repeated) are left to their shorter length. The span covers the whole repeats.
    Confidence ``1 - E`` with ``E`` the expected number of such stretches in ``n`` events of
    independent types (effective number of types ``exp(entropy)``).
    """
    k, lmin, lmax = int(ctx["min_repeats"]), int(ctx["min_length"]), int(ctx["max_length"])
    _need(k >= 2, f"cycle: min_repeats must be >= 2, got {k}")
    _need(2 <= lmin <= lmax, f"cycle: need 2 <= min_length <= max_length, got {lmin}, {lmax}")
    tc = _type_codes(seq)
    n = len(seq)
    if tc is None or n < lmin * k:
        return []
    x, names = tc
    known = x[x >= 0]
    p = np.bincount(known) / max(1, len(known)) if len(known) else np.ones(1)
    p = p[p > 0]
    k_eff = max(1.0 + 1e-9, float(np.exp(-(p * np.log(p)).sum())))
    out: list[Pattern] = []
    taken = np.zeros(n, bool)
    for L in range(lmin, lmax + 1):
        if n < L * k:
            break
        eq = x[L:] == x[:-L]  # [n - L]
        rs, re_ = _runs(eq)
        for a, b in zip(rs, re_):
            length = b - a + L  # events a .. b + L - 1 follow period L
            reps = length // L
            if reps < k:
                continue
            motif = x[a : a + L]
            if _primitive_period(motif) < L or taken[a : a + reps * L].all():
                continue
            e = a + reps * L - 1
            taken[a : e + 1] = True
            expected = n * k_eff ** (-L * (reps - 1))
            out.append(
                _pattern(
                    seq, "cycle", int(a), int(e), 1.0 - expected,
                    motif=[names[int(v)] for v in motif], repeats=int(reps), length=int(L),
                )
            )
    return out


def _primitive_period(m: np.ndarray) -> int:
    L = len(m)
    for q in range(1, L):
        if L % q == 0 and np.array_equal(m, np.tile(m[:q], L // q)):
            return q
    return L


# ----------------------------------------------------------------------------------------------
# regime change


@dataclass
class _Signal:
    """One signal for segmentation: items at event positions ``pos`` with values ``x``.

    ``kind`` "mean": a mean shift in ``x`` ``[m, k]`` (within-split variance per column);
    "multinomial": ``x`` one-hot ``[m, K]`` (likelihood-ratio G statistic). Either statistic is
    divided by ``inflation`` (:func:`_dispersion`) for dependent items. Prefix sums make every
    split of a segment O(1) per column.
    """

    name: str
    kind: str
    pos: np.ndarray  # [m] sorted event positions
    x: np.ndarray  # [m, k]
    inflation: float = 1.0

    def __post_init__(self) -> None:
        m, k = self.x.shape
        self.cs = np.zeros((m + 1, k))
        np.cumsum(self.x, axis=0, out=self.cs[1:])
        if self.kind == "mean":
            self.cq = np.zeros((m + 1, k))
            np.cumsum(self.x**2, axis=0, out=self.cq[1:])

    def items(self, t: np.ndarray | int) -> np.ndarray:
        """Number of items before event position(s) ``t``."""
        return np.searchsorted(self.pos, t)

    def gain(self, ja: int, jt: np.ndarray, jb: int) -> tuple[np.ndarray, int]:
        """Split statistic for items ``[ja, jt)`` vs ``[jt, jb)`` and its degrees of freedom."""
        n1 = (jt - ja).astype(np.float64)[:, None]
        n2 = (jb - jt).astype(np.float64)[:, None]
        s1 = self.cs[jt] - self.cs[ja]
        s2 = self.cs[jb] - self.cs[jt]
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "mean":
                q1 = self.cq[jt] - self.cq[ja]
                q2 = self.cq[jb] - self.cq[jt]
                ss = (q1 - s1**2 / n1) + (q2 - s2**2 / n2)
                var = ss / np.maximum(n1 + n2 - 2, 1)
                d = s1 / n1 - s2 / n2
                g = np.where(var > 1e-12, n1 * n2 / (n1 + n2) * d**2 / np.maximum(var, 1e-12), 0.0)
                return np.nan_to_num(g.sum(1)) / self.inflation, self.x.shape[1]
            tot = s1 + s2
            def xlogx(a: np.ndarray, nn: np.ndarray) -> np.ndarray:
                return np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0) / nn), 0.0)
            g = 2.0 * (xlogx(s1, n1) + xlogx(s2, n2) - xlogx(tot, n1 + n2)).sum(1)
            dof = max(1, int((tot[0] > 0).sum()) - 1) if len(tot) else 1
            return np.nan_to_num(g) / self.inflation, dof


def _penalty(dof: int, m: int, alpha: float, scale: float) -> float:
    """Chi-square tail bound ``k + 2 sqrt(k x) + 2 x`` with ``x = log(1/alpha) + log(log m)``.

    ``log log m`` (not ``log m``) because the maximum of a CUSUM over ``m`` positions grows
    like ``2 log log m``; checked by simulation on iid data (about ``alpha`` false splits).
    """
    x = math.log(1.0 / alpha) + math.log(max(1.0, math.log(max(m, 3))))
    return scale * (dof + 2.0 * math.sqrt(dof * x) + 2.0 * x)


@register_pattern(
    "regime_change",
    defaults={
        "min_size": 15,
        "alpha": 0.01,
        "penalty": 1.0,
        "min_gap_ratio": 2.0,
        "min_type_shift": 0.25,
        "max_types": 16,
        "signals": ("gaps", "types", "representations"),
        "explain_away": ("burst", "periodic", "cycle"),
        "max_changes": 50,
    },
)
def detect_regime_change(seq: EventSequence, ctx: PatternContext) -> list[Pattern]:
    """Lasting changes of the gap level, the type distribution or the representations.

    Signals (each where available and named in ``signals``): ``gaps`` — uniform rank scores of
    the log gaps (robust to outliers and to any gap distribution); ``types`` — one-hot event
    types (the ``max_types`` most frequent, the rest pooled); ``representations`` — the top 8
    principal components of the per-event states. Each signal's statistic is divided by its
    measured dependence (:func:`_dispersion`: sessions, Markov chains and encoder states that
    share context are not independent evidence). Events of the kinds in ``explain_away`` are
    left out first (burst events after the first, the occurrences of periodic runs, cycle
    events for the type signal).

    Binary segmentation: a segment is split where ``max_signal gain / penalty`` is largest if
    that exceeds 1, segments keeping >= ``min_size`` events and items. Then every change is
    re-tested on its two neighbouring segments and the weakest failing one dropped until all
    pass: significant on a signal and large there (gap-level ratio ``exp(mean log gap after -
    before)`` beyond ``min_gap_ratio`` either way, or type total-variation shift >=
    ``min_type_shift``; representations need significance only). ``start``/``end`` span the
    two segments; ``details``: index and time of the first event of the new regime, gap_ratio
    (after / before, geometric means), type_shift, signals that fired. Confidence
    ``1 - 1 / (gain / penalty)``.
    """
    o = ctx.options
    min_size, alpha, pscale = int(o["min_size"]), float(o["alpha"]), float(o["penalty"])
    _need(min_size >= 3, f"regime_change: min_size must be >= 3, got {min_size}")
    _need(0 < alpha < 1, f"regime_change: alpha must be in (0, 1), got {alpha}")
    _need(pscale > 0, f"regime_change: penalty must be > 0, got {pscale}")
    wanted = set(o["signals"])
    bad = wanted - {"gaps", "types", "representations"}
    _need(not bad, f"regime_change: unknown signals {sorted(bad)}; valid: gaps, types, representations")
    n = len(seq)
    if n < 2 * min_size:
        return []
    drop_gap = np.zeros(n, bool)
    drop_type = np.zeros(n, bool)
    timed = seq.timestamps is not None
    explain = set(o["explain_away"])
    if timed and "burst" in explain:
        for p in ctx.detect("burst"):
            drop_gap[p.start_index + 1 : p.end_index + 1] = True
            drop_type[p.start_index + 1 : p.end_index + 1] = True
    if timed and "periodic" in explain:
        for p in ctx.detect("periodic"):
            drop_gap[p.details["indices"]] = True
            drop_type[p.details["indices"]] = True
    tc = _type_codes(seq)
    if tc is not None and "cycle" in explain:
        for p in ctx.detect("cycle"):
            drop_type[p.start_index : p.end_index + 1] = True

    signals: list[_Signal] = []
    raw_lg: np.ndarray | None = None
    if timed and "gaps" in wanted:
        keep = np.flatnonzero(~drop_gap)
        if len(keep) > 2 * min_size:
            raw_lg = _log_gaps(seq.timestamps[keep])  # [m]: gap before event keep[1:]
            signals.append(_Signal("gaps", "mean", keep[1:], _rank_scores(raw_lg)[:, None]))
    if tc is not None and "types" in wanted:
        keep = np.flatnonzero(~drop_type & (tc[0] >= 0))
        if len(keep) > 2 * min_size:
            codes = tc[0][keep]
            counts = np.bincount(codes)
            top = np.argsort(-counts, kind="stable")[: int(o["max_types"])]
            top = top[counts[top] > 0]
            col = np.full(len(counts), len(top))
            col[top] = np.arange(len(top))
            k = len(top) + int(len(top) < int((counts > 0).sum()))
            if k >= 2:
                onehot = np.zeros((len(keep), k))
                onehot[np.arange(len(keep)), col[codes]] = 1.0
                signals.append(_Signal("types", "multinomial", keep, onehot))
    if "representations" in wanted and ctx.has_representations:
        reps = ctx.representations
        if reps is not None and reps.shape[1] > 0:
            z = _rep_signal(reps)
            signals.append(_Signal("representations", "mean", np.arange(n), z))
    if not signals:
        return []
    for sig in signals:
        sig.inflation = _dispersion(sig.x, min_size)

    def score(a: int, b: int, ts: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """``[len(ts)]`` best gain/penalty over signals for splits of events [a, b) at ``ts``."""
        best = np.zeros(len(ts))
        per: list[np.ndarray] = []
        for s in signals:
            ja, jb = int(s.items(a)), int(s.items(b))
            jt = s.items(ts)
            g, dof = s.gain(ja, jt, jb)
            ok = (jt - ja >= min_size) & (jb - jt >= min_size)
            r = np.where(ok, g / _penalty(dof, jb - ja, alpha, pscale), 0.0)
            per.append(r)
            best = np.maximum(best, r)
        return best, per

    # binary segmentation
    cps: list[int] = []
    stack = [(0, n)]
    while stack and len(cps) < int(o["max_changes"]):
        a, b = stack.pop()
        if b - a < 2 * min_size:
            continue
        ts = np.arange(a + min_size, b - min_size + 1)
        best, _ = score(a, b, ts)
        i = int(np.argmax(best))
        if best[i] <= 1.0:
            continue
        t = int(ts[i])
        cps.append(t)
        stack.extend([(a, t), (t, b)])
    cps.sort()

    def judge(prev: int, t: int, nxt: int) -> tuple[float, dict[str, Any]]:
        """Strength (gain/penalty of the strongest signal that passes the effect test) at ``t``."""
        _, per = score(prev, nxt, np.array([t]))
        info: dict[str, Any] = {"signals": []}
        strength = 0.0
        for s, r in zip(signals, per):
            r0 = float(r[0])
            big = True
            if s.name == "gaps" and raw_lg is not None:
                j0, jt, j1 = (int(s.items(v)) for v in (prev, t, nxt))
                ratio = math.exp(float(raw_lg[jt:j1].mean() - raw_lg[j0:jt].mean())) if j1 > jt > j0 else 1.0
                info["gap_ratio"] = ratio
                big = abs(math.log(ratio)) >= math.log(float(o["min_gap_ratio"]))
            elif s.name == "types":
                j0, jt, j1 = (int(s.items(v)) for v in (prev, t, nxt))
                p1 = (s.cs[jt] - s.cs[j0]) / max(1, jt - j0)
                p2 = (s.cs[j1] - s.cs[jt]) / max(1, j1 - jt)
                info["type_shift"] = float(0.5 * np.abs(p1 - p2).sum())
                big = info["type_shift"] >= float(o["min_type_shift"])
            if r0 > 1.0 and big:
                info["signals"].append(s.name)
                strength = max(strength, r0)
        return strength, info

    # prune: drop the weakest change that fails on its neighbouring segments, until none fails
    while cps:
        bounds = [0] + cps + [n]
        judged = [judge(bounds[i], bounds[i + 1], bounds[i + 2]) for i in range(len(cps))]
        weakest = min(range(len(cps)), key=lambda i: judged[i][0])
        if judged[weakest][0] > 1.0:
            break
        cps.pop(weakest)
    # refine each change inside its neighbouring segments
    for i in range(len(cps)):
        prev = cps[i - 1] if i else 0
        nxt = cps[i + 1] if i + 1 < len(cps) else n
        ts = np.arange(prev + min_size, nxt - min_size + 1)
        if len(ts):
            best, _ = score(prev, nxt, ts)
            j = int(np.argmax(best))
            if best[j] > 1.0:
                cps[i] = int(ts[j])
    out: list[Pattern] = []
    bounds = [0] + cps + [n]
    t_all = seq.times
    for i, t in enumerate(cps):
        prev, nxt = bounds[i], bounds[i + 2]
        strength, info = judge(prev, t, nxt)
        if strength <= 1.0:
            continue
        out.append(
            _pattern(
                seq, "regime_change", prev, nxt - 1, 1.0 - 1.0 / strength,
                index=int(t), time=float(t_all[t]), before_events=int(t - prev), after_events=int(nxt - t), **info,
            )
        )
    return out


def _rank_scores(v: np.ndarray) -> np.ndarray:
    """``[m]`` mid-ranks of ``v`` scaled to (-0.5, 0.5) (ties share their average rank)."""
    m = len(v)
    _, inv, cnt = np.unique(v, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    mid = first + (cnt - 1) / 2.0
    return (mid[inv.ravel()] + 0.5) / m - 0.5


def _dispersion(x: np.ndarray, w: int) -> float:
    """Variance inflation of window means of ``x`` ``[m, k]`` over what independent items give.

    For independent items, means of consecutive non-overlapping windows of ``w`` items differ
    by ``2 var / w`` in expectation; dependent items (sessions, Markov type chains, encoder
    states that share context) differ more. Both the differences of neighbouring windows and
    ``var`` (the spread inside each window) are local, so a real level shift does not count as
    dependence, and the largest fifth of the window differences (where real shifts fall) is
    left out. The estimate's own noise (about ``sqrt(2 / (J - 1))`` with ``J`` windows) is
    subtracted, so independent items get 1. At least 1.
    """
    m = len(x)
    J = m // w
    if J < 3:
        return 1.0
    win = x[: J * w].reshape(J, w, -1)  # [J, w, k]
    means = win.mean(1)  # [J, k]
    sq = np.sort((np.diff(means, axis=0) ** 2).sum(1))  # [J - 1]
    obs = float(sq[: len(sq) - math.ceil(len(sq) / 5)].mean()) / 2.0  # the largest fifth may hold real shifts
    iid = float(win.var(1).sum(1).mean()) * (w / (w - 1)) / w
    return max(1.0, obs / iid - math.sqrt(2.0 / (J - 1))) if iid > 0 else 1.0


def _rep_signal(reps: np.ndarray, k: int = 8) -> np.ndarray:
    """Top-``k`` principal components ``[n, k]`` of per-event representations ``[n, d]``."""
    n, d = reps.shape
    x = reps - reps.mean(0)
    sub = x[:: max(1, n // 5000)]
    _, _, vt = np.linalg.svd(sub, full_matrices=False)
    return x @ vt[: min(k, d)].T


# ----------------------------------------------------------------------------------------------
# motif


@register_pattern("motif", defaults={"lengths": (3, 4, 5), "min_count": 5, "min_lift": 5.0, "max_motifs": 10})
def detect_motif(seq: EventSequence, ctx: PatternContext) -> list[Pattern]:
    """Contiguous type n-grams that recur far above their chance rate.

    Chance rate: ``(n - L + 1) * prod(p(type))`` under independent types; kept when
    ``count >= min_count``, ``lift >= min_lift`` and a Poisson tail bound, Bonferroni-corrected
    over the n-grams seen, is below 1 (confidence is one minus it). A motif inside a kept
    longer motif seen at least half as often is dropped. Span: first to last occurrence.
    """
    lengths = sorted({int(v) for v in ctx["lengths"]})
    cmin, lmin, top = int(ctx["min_count"]), float(ctx["min_lift"]), int(ctx["max_motifs"])
    _need(bool(lengths) and lengths[0] >= 2, f"motif: lengths must be >= 2, got {lengths}")
    tc = _type_codes(seq)
    n = len(seq)
    if tc is None or n < lengths[0] + cmin:
        return []
    x, names = tc
    known = x >= 0
    freq = np.bincount(x[known], minlength=len(names)) / max(1, int(known.sum()))
    cands: list[tuple[int, tuple[int, ...], int, float, np.ndarray]] = []
    tests = 0
    for L in lengths:
        if n < L:
            continue
        win = np.lib.stride_tricks.sliding_window_view(x, L)  # [n - L + 1, L]
        ok = (win >= 0).all(1)
        if not ok.any():
            continue
        rows = win[ok]  # [w, L]
        K = max(1, len(names))
        if K**L < 2**62:  # one int64 key per n-gram: a 1-d unique is much faster than axis=0
            key = rows @ (K ** np.arange(L - 1, -1, -1, dtype=np.int64))
            _, first, inv, cnt = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
            grams = rows[first]
        else:
            grams, inv, cnt = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        by_gram = np.flatnonzero(ok)[np.argsort(inv, kind="stable")]  # window starts grouped by n-gram
        bounds = np.concatenate([[0], np.cumsum(cnt)])
        tests += len(grams)
        exp_ = (n - L + 1) * np.prod(freq[grams], axis=1)
        lift = cnt / exp_
        for gi in np.flatnonzero((cnt >= cmin) & (lift >= lmin)):
            g = grams[gi]
            if (g == g[0]).all():
                continue  # a run of one type is not a motif
            pos = by_gram[bounds[gi] : bounds[gi + 1]]
            cands.append((L, tuple(int(v) for v in g), int(cnt[gi]), float(exp_[gi]), pos))
    out: list[Pattern] = []
    kept: list[tuple[tuple[int, ...], int]] = []
    scored = []
    for L, g, cnt, lam, pos in cands:
        logp = -lam + cnt - cnt * math.log(cnt / lam)  # Chernoff bound on P(Poisson(lam) >= cnt)
        bound = tests * math.exp(max(logp, -700.0))
        if bound < 1.0:
            scored.append((L, g, cnt, lam, pos, 1.0 - bound))
    scored.sort(key=lambda r: (-r[0], -r[2]))
    for L, g, cnt, lam, pos, conf in scored:
        if any(_contains(big, g) and bcnt >= 0.5 * cnt for big, bcnt in kept):
            continue
        kept.append((g, cnt))
        out.append(
            _pattern(
                seq, "motif", int(pos[0]), int(pos[-1] + L - 1), conf,
                motif=[names[v] for v in g], count=cnt, expected=lam, lift=cnt / lam,
                positions=[int(v) for v in pos[:1000]],
            )
        )
    out.sort(key=lambda p: (-p.confidence, -p.details["count"] * math.log(p.details["lift"])))
    return out[:top]


def _contains(big: tuple[int, ...], small: tuple[int, ...]) -> bool:
    L = len(small)
    return any(big[i : i + L] == small for i in range(len(big) - L + 1))


__all__ = [
    "Pattern",
    "PatternContext",
    "available_patterns",
    "detect_burst",
    "detect_cycle",
    "detect_motif",
    "detect_patterns",
    "detect_periodic",
    "detect_regime_change",
    "register_pattern",
    "unregister_pattern",
]
