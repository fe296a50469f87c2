"""Gradient-boosted trees on prefix features: the standard strong baseline of predictive process
monitoring for next-event prediction.

Two scikit-learn models on the same features of a prefix (:func:`prefix_features`):
``HistGradientBoostingClassifier`` for the next type (the case's end, :data:`END`, is one more
class) and ``HistGradientBoostingRegressor`` for the gap to the next event, trained on
``log1p(gap)`` with ``absolute_error`` (its minimiser is the conditional median of the log gap,
hence of the gap: MAE-optimal) or ``squared_error`` (the conditional mean of the log gap),
chosen on validation MAE.

Features of a prefix of length ``L`` of a case (column order of :func:`feature_names`):

- ``last_1 .. last_k``: integer codes of the last ``k`` types, most recent first (categorical for
  the trees; :data:`PAD` code before the case start, NaN for a type never seen in fit);
- ``count_<type>``: how often each vocabulary type occurs in the prefix (aggregation encoding,
  optional; it sees loops that the last ``k`` types do not);
- ``length``: ``L``;
- ``log_last_gap``: ``log1p`` of the seconds between the last two events (NaN when ``L = 1``);
- ``log_elapsed``: ``log1p`` of the seconds from the case's first event to its ``L``-th;
- ``hour``: hour of day of the last event (UTC, fractional: 13:30 is 13.5);
- ``weekday``: weekday of the last event (UTC, Monday 0 .. Sunday 6);
- ``drift``: time of the last event since the earliest training case start, in units of the
  training cases' span of start times (training cases 0..1, later cases beyond 1): logs drift,
  and this is what lets the trees tell an old regime from a recent one.

Untimed cases get NaN time features (the trees send NaN down a learned branch).

Choice (:func:`choose_gbt`) on ``fit`` / ``val``, deterministic: the number of boosting
iterations is read off the staged predictions on ``val`` (the model grows by warm start until
the validation score stopped improving; no internal random validation split). The classifier's
``k`` is chosen first at the first grid setting, then the grid at that ``k``, by validation
accuracy incl. END; the regressor's ``k`` and loss first, then the grid, by validation time
MAE. Ties go to the earlier setting (smaller ``k``, the earlier grid entry, fewer iterations). :func:`fit_gbt_baseline`
refits the chosen settings on all training cases.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ejc.data.sequence import EventSequence
from ejc.eval.protocol import PrefixTargets, prefix_targets, start_time, type_list

PAD_NAME = "<pad>"
MAX_CATEGORIES = 253  # HGB categories must be < max_bins (255): codes 0..252 types, 253 "other", 254 pad
DEFAULT_KS = (1, 2, 3, 5)
# (learning_rate, max_leaf_nodes, min_samples_leaf); the first entry is the one the k choice uses
DEFAULT_GRID: tuple[dict[str, Any], ...] = (
    {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 20},
    {"learning_rate": 0.1, "max_leaf_nodes": 15, "min_samples_leaf": 20},
    {"learning_rate": 0.05, "max_leaf_nodes": 63, "min_samples_leaf": 10},
)
MAX_ITER = 300  # the cap of the staged choice of the number of iterations
PATIENCE = 40  # stop growing once this many iterations brought no validation improvement
CHUNK = 20  # iterations added per warm-start round
LOSSES = ("absolute_error", "squared_error")
DAY = 86400.0


def default_threads() -> int:
    """Threads for the trees' OpenMP loops: 1 unless ``EJC_GBT_THREADS`` says otherwise.

    On logs of this size (thousands of prefixes) a second thread gains little, and on a busy
    machine the OpenMP barriers of scikit-learn's many small parallel loops spin against the
    other processes: two threads were measured up to 10x slower than one on 2 shared cores.
    """
    try:
        return max(1, int(os.environ.get("EJC_GBT_THREADS", "1")))
    except ValueError:
        return 1


# ----------------------------------------------------------------------------------------------
# features


@dataclass
class Vocab:
    """Type codes for the trees: the ``MAX_CATEGORIES`` most frequent fit types get ``0..V-1``
    (by frequency, ties by name), rarer fit types the ``other`` code ``V``, the padding before a
    case start ``V + 1``; ``count_types`` (at most ``max_counts``, the most frequent) get count
    columns. Types never seen in fit map to NaN."""

    codes: dict[str, int]
    other: int
    pad: int
    count_types: list[str]

    @classmethod
    def of(cls, cases: Sequence[EventSequence], max_counts: int = 32) -> Vocab:
        freq = Counter(t for s in cases for t in type_list(s))
        ranked = sorted(freq, key=lambda t: (-freq[t], t))
        top = ranked[:MAX_CATEGORIES]
        codes = {t: i for i, t in enumerate(top)}
        for t in ranked[MAX_CATEGORIES:]:
            codes[t] = len(top)
        return cls(codes, len(top), len(top) + 1, ranked[:max_counts])

    @property
    def types(self) -> list[str]:
        return list(self.codes)

    def to_dict(self) -> dict[str, Any]:
        return {"codes": dict(self.codes), "other": self.other, "pad": self.pad, "count_types": list(self.count_types)}


def feature_names(k: int, vocab: Vocab, counts: bool = True) -> list[str]:
    """The columns of :func:`prefix_features`."""
    return [f"last_{j + 1}" for j in range(k)] + ([f"count_{t}" for t in vocab.count_types] if counts else []) + ["length", "log_last_gap", "log_elapsed", "hour", "weekday", "drift"]


def categorical_mask(k: int, vocab: Vocab, counts: bool = True) -> np.ndarray:
    """``[F]`` True for the type-code columns (the first ``k``)."""
    m = np.zeros(k + len(feature_names(0, vocab, counts)), bool)
    m[:k] = True
    return m


def _prefixes(prefixes: PrefixTargets | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(prefixes, PrefixTargets):
        return np.asarray(prefixes.case, np.int64), np.asarray(prefixes.length, np.int64)
    case, length = prefixes
    return np.asarray(case, np.int64), np.asarray(length, np.int64)


def prefix_features(
    cases: Sequence[EventSequence],
    prefixes: PrefixTargets | tuple[np.ndarray, np.ndarray],
    k: int,
    vocab: Vocab,
    origin: float = float("nan"),
    scale: float = 1.0,
    counts: bool = True,
) -> np.ndarray:
    """``[N, F]`` float64 features (:func:`feature_names`) of the prefixes ``(case[j], length[j])``
    (a :class:`~ejc.eval.protocol.PrefixTargets` or the two arrays) of ``cases``.

    ``origin`` / ``scale``: the drift feature is ``(t_last - origin) / scale`` (seconds; NaN
    origin gives a NaN drift feature).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    case, length = _prefixes(prefixes)
    names = feature_names(k, vocab, counts)
    X = np.full((len(case), len(names)), np.nan, np.float64)
    if not len(case):
        return X
    cidx = {t: i for i, t in enumerate(vocab.count_types)}
    nc = len(vocab.count_types) if counts else 0
    base = k + nc
    order = np.argsort(case, kind="stable")
    bounds = np.flatnonzero(np.diff(case[order])) + 1
    for rows in np.split(order, bounds):
        s = cases[int(case[rows[0]])]
        tl = type_list(s)
        n = len(tl)
        L = length[rows]
        if (L < 1).any() or (L > n).any():
            raise ValueError(f"prefix lengths of case {s.id!r} must lie in 1..{n}")
        codes = np.array([vocab.codes.get(t, np.nan) for t in tl], np.float64)
        padded = np.concatenate([np.full(k, float(vocab.pad)), codes])
        # column j: the (j+1)-th last type = position L-1-j = padded index L-1-j+k
        X[rows, :k] = padded[(L - 1 + k)[:, None] - np.arange(k)[None, :]]
        if nc:
            onehot = np.zeros((n, nc), np.float64)
            for i, t in enumerate(tl):
                if t in cidx:
                    onehot[i, cidx[t]] = 1.0
            X[rows, k:base] = np.cumsum(onehot, 0)[L - 1]
        X[rows, base] = L
        t = s.timestamps
        if t is not None and n:
            t = np.asarray(t, np.float64)
            last = t[L - 1]
            prev = np.where(L >= 2, t[np.maximum(L - 2, 0)], np.nan)
            X[rows, base + 1] = np.log1p(np.maximum(last - prev, 0.0))
            X[rows, base + 2] = np.log1p(np.maximum(last - t[0], 0.0))
            X[rows, base + 3] = np.mod(last, DAY) / 3600.0
            X[rows, base + 4] = np.mod(np.floor(last / DAY) + 3, 7)  # 1970-01-01 was a Thursday
            X[rows, base + 5] = (last - origin) / scale
    return X


def drift_origin_scale(cases: Sequence[EventSequence]) -> tuple[float, float]:
    """``(origin, scale)`` of the drift feature: the earliest case start and the span of case
    starts (1 day when the span is 0; ``(NaN, 1)`` without timed cases)."""
    starts = np.array([start_time(s) for s in cases], np.float64)
    starts = starts[np.isfinite(starts)]
    if not len(starts):
        return float("nan"), 1.0
    span = float(starts.max() - starts.min())
    return float(starts.min()), span if span > 0 else DAY


# ----------------------------------------------------------------------------------------------
# the predictor


def _fill_empty(X: np.ndarray) -> np.ndarray:
    """Training matrix with its all-NaN columns (e.g. the time features of untimed logs) set to 0:
    scikit-learn cannot bin an empty column, and a constant one is never split on, so whatever
    values it has at prediction time are ignored."""
    empty = np.isnan(X).all(0) if len(X) else np.zeros(X.shape[1], bool)
    if not empty.any():
        return X
    X = X.copy()
    X[:, empty] = 0.0
    return X


def _gap_targets(t: PrefixTargets) -> np.ndarray:
    """The targets a gap is scored on: not END, timed."""
    return (~t.is_end) & np.isfinite(t.gaps)


def _threads(n: int | None):  # noqa: ANN202
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n or default_threads(), user_api="openmp")


class GBTPredictor:
    """Next type (incl. :data:`END`) and next gap from gradient-boosted trees on prefix features.

    ``type_hyper`` / ``gap_hyper``: keyword arguments of the classifier / regressor
    (``learning_rate``, ``max_leaf_nodes``, ``max_depth``, ``min_samples_leaf``, ``max_iter``,
    ``l2_regularization``; ``gap_hyper`` also ``loss``). Early stopping is off: the number of
    iterations is a chosen setting (:func:`choose_gbt`).
    """

    def __init__(self, random_state: int = 0, n_threads: int | None = None):
        self.random_state = random_state
        self.n_threads = n_threads

    # -- fitting
    def fit(
        self,
        cases: Sequence[EventSequence],
        k: int = 3,
        gap_k: int | None = None,
        counts: bool = True,
        type_hyper: dict[str, Any] | None = None,
        gap_hyper: dict[str, Any] | None = None,
        with_end: bool = True,
        **hyper: Any,
    ) -> GBTPredictor:
        """Fit both models on every prefix of ``cases`` (``k`` last types for the classifier,
        ``gap_k`` (default ``k``) for the regressor; ``hyper`` goes to both unless overridden
        by ``type_hyper`` / ``gap_hyper``)."""
        cases = list(cases)
        self.k, self.gap_k, self.counts, self.with_end = int(k), int(gap_k or k), bool(counts), with_end
        self.vocab = Vocab.of(cases)
        self.origin, self.scale = drift_origin_scale(cases)
        t = prefix_targets(cases, with_end=with_end)
        self.type_hyper = {**hyper, **(type_hyper or {})}
        self.gap_hyper = {**hyper, **(gap_hyper or {})}
        with _threads(self.n_threads):
            X = self.features(cases, t, max(self.k, self.gap_k))
            self._fit_types(X, t)
            self._fit_gaps(X, t)
        return self

    def features(self, cases: Sequence[EventSequence], prefixes: PrefixTargets | tuple[np.ndarray, np.ndarray], k: int | None = None) -> np.ndarray:
        """:func:`prefix_features` with this predictor's vocabulary and drift origin (``k``
        last types; default: the larger of the two models' ``k``)."""
        return prefix_features(cases, prefixes, k or max(self.k, self.gap_k), self.vocab, self.origin, self.scale, self.counts)

    def _n_tail(self) -> int:
        """Columns after the last types (counts and the numeric features)."""
        return len(feature_names(0, self.vocab, self.counts))

    def _kmax(self, X: np.ndarray) -> int:
        """The number of last-type columns of a feature matrix."""
        return X.shape[1] - self._n_tail()

    def _columns(self, k: int, kmax: int) -> np.ndarray:
        """Columns of a ``kmax`` feature matrix that make the ``k`` one (the last types come first)."""
        return np.concatenate([np.arange(k), np.arange(kmax, kmax + self._n_tail())])

    def _fit_types(self, X: np.ndarray, t: PrefixTargets) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        y = np.asarray(t.types, dtype=object).astype(str)
        self.classes: list[str] = sorted(set(y.tolist()))
        self.type_model = None
        if len(self.classes) < 2:  # one class: a constant prediction
            return
        Xk = X[:, self._columns(self.k, self._kmax(X))]
        self.type_model = HistGradientBoostingClassifier(**_hgb_kwargs(self.type_hyper, self.random_state), categorical_features=categorical_mask(self.k, self.vocab, self.counts))
        self.type_model.fit(_fill_empty(Xk), y)
        self.classes = [str(c) for c in self.type_model.classes_]

    def _fit_gaps(self, X: np.ndarray, t: PrefixTargets) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        ok = _gap_targets(t)
        self.gap_model = None
        self.gap_constant = float(np.median(t.gaps[ok])) if ok.any() else float("nan")
        if ok.sum() < 2:
            return
        Xk = X[ok][:, self._columns(self.gap_k, self._kmax(X))]
        self.gap_model = HistGradientBoostingRegressor(**_hgb_kwargs(self.gap_hyper, self.random_state, regressor=True), categorical_features=categorical_mask(self.gap_k, self.vocab, self.counts))
        self.gap_model.fit(_fill_empty(Xk), np.log1p(np.maximum(t.gaps[ok], 0.0)))

    # -- prediction
    def predict(self, cases: Sequence[EventSequence], targets: PrefixTargets | tuple[np.ndarray, np.ndarray], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(probs [N, len(names)], gaps [N] seconds)`` for the prefixes of ``targets``.

        ``probs`` is over ``names`` (include :data:`END` to get the end's probability): the
        classifier's probabilities of the classes among ``names``, renormalised (uniform if
        none is); names never seen as a class in fit get 0. ``gaps``: the regressor's
        prediction (the median of the gap for the ``absolute_error`` loss), NaN without timed
        training transitions.
        """
        names = list(names)
        case, _ = _prefixes(targets)
        with _threads(self.n_threads):
            X = self.features(cases, targets)
            p_cls = self.class_probs(X)
            gaps = self.gap_predictions(X)
        probs = np.zeros((len(case), len(names)), np.float64)
        col = {c: i for i, c in enumerate(self.classes)}
        for j, nm in enumerate(names):
            if nm in col:
                probs[:, j] = p_cls[:, col[nm]]
        tot = probs.sum(1, keepdims=True)
        probs = np.where(tot > 0, probs / np.where(tot > 0, tot, 1.0), 1.0 / max(1, len(names)))
        return probs, gaps

    def class_probs(self, X: np.ndarray) -> np.ndarray:
        """``[N, len(self.classes)]`` of a feature matrix from :meth:`features`."""
        if self.type_model is None:
            return np.ones((len(X), len(self.classes)))
        return self.type_model.predict_proba(X[:, self._columns(self.k, self._kmax(X))])

    def gap_predictions(self, X: np.ndarray) -> np.ndarray:
        """``[N]`` seconds of a feature matrix from :meth:`features`."""
        if self.gap_model is None:
            return np.full(len(X), self.gap_constant)
        return np.maximum(np.expm1(self.gap_model.predict(X[:, self._columns(self.gap_k, self._kmax(X))])), 0.0)

    @property
    def names(self) -> list[str]:
        """The classes the classifier knows (fit types that occur as a next type, and END)."""
        return list(self.classes)

    def settings(self) -> dict[str, Any]:
        return {"k": self.k, "gap_k": self.gap_k, "counts": self.counts, "type_hyper": dict(self.type_hyper), "gap_hyper": dict(self.gap_hyper), "random_state": self.random_state}


def _hgb_kwargs(hyper: dict[str, Any], random_state: int, regressor: bool = False) -> dict[str, Any]:
    kw: dict[str, Any] = {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31, "early_stopping": False, "random_state": random_state}
    if regressor:
        kw["loss"] = "absolute_error"
    kw.update({k: v for k, v in hyper.items() if not (k == "loss" and not regressor)})
    return kw


# ----------------------------------------------------------------------------------------------
# choice on validation


def _key(**kw: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in kw.items())


@dataclass
class GBTChoice:
    """The settings :func:`choose_gbt` chose and the validation scores of every setting tried."""

    type_k: int
    type_hyper: dict[str, Any]
    type_val_accuracy: float
    gap_k: int
    gap_hyper: dict[str, Any]
    gap_val_mae_days: float
    counts: bool = True
    val_accuracy: dict[str, float] = field(default_factory=dict)  # setting (best max_iter) -> validation accuracy incl. END
    val_mae_days: dict[str, float] = field(default_factory=dict)  # setting (best max_iter) -> validation MAE (days)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": {"k": self.type_k, **self.type_hyper, "val_accuracy": self.type_val_accuracy},
            "gap": {"k": self.gap_k, **self.gap_hyper, "val_mae_days": self.gap_val_mae_days},
            "counts": self.counts,
            "val_accuracy": dict(self.val_accuracy),
            "val_mae_days": dict(self.val_mae_days),
            "seconds": self.seconds,
        }


def _best_stage(values: list[float], larger: bool) -> tuple[int, float]:
    """``(iterations, value)`` of the best stage (the earliest on ties)."""
    arr = np.asarray(values, np.float64)
    arr = np.where(np.isfinite(arr), arr, -np.inf if larger else np.inf)
    i = int(np.argmax(arr) if larger else np.argmin(arr))
    return i + 1, float(values[i])


def _staged_search(model: Any, X: np.ndarray, y: np.ndarray, staged: Any, Xv: np.ndarray, score: Any, larger: bool, max_iter: int, patience: int, chunk: int) -> tuple[int, float]:
    """Grow ``model`` ``chunk`` iterations at a time (warm start) and score every iteration's
    validation predictions (``staged(Xv)``); stop after ``patience`` iterations without
    improvement or at ``max_iter``. Returns ``(best iterations, its score)``."""
    values: list[float] = []
    n = 0
    while True:
        n = min(max_iter, n + chunk)
        model.set_params(max_iter=n, warm_start=True, early_stopping=False)
        model.fit(X, y)
        for i, p in enumerate(staged(Xv)):
            if i >= len(values):
                values.append(score(p))
        best_it, _ = _best_stage(values, larger)
        if n >= max_iter or model.n_iter_ < n or len(values) - best_it >= patience:
            return _best_stage(values, larger)


def choose_gbt(
    fit_cases: Sequence[EventSequence],
    val_cases: Sequence[EventSequence],
    ks: Sequence[int] = DEFAULT_KS,
    grid: Sequence[dict[str, Any]] = DEFAULT_GRID,
    losses: Sequence[str] = LOSSES,
    max_iter: int = MAX_ITER,
    patience: int = PATIENCE,
    chunk: int = CHUNK,
    counts: bool = True,
    random_state: int = 0,
    n_threads: int | None = None,
) -> GBTChoice:
    """Choose the classifier's and the regressor's settings on ``val`` (models fitted on ``fit``).

    Classifier: ``k`` over ``ks`` at ``grid[0]``, then ``grid`` at that ``k``, by validation
    accuracy incl. END; regressor: ``(k, loss)`` over ``ks`` x ``losses`` at ``grid[0]``, then
    ``grid``, by validation time MAE (non-END targets). The number of iterations is part of each
    setting: the fit grows ``chunk`` iterations at a time (warm start), scoring every iteration
    on ``val``, until ``patience`` iterations brought no improvement or ``max_iter`` are reached;
    the best count is kept. Deterministic; ties go to the earlier setting and the fewer
    iterations.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    t0 = time.perf_counter()
    fit_cases, val_cases = list(fit_cases), list(val_cases)
    ks = sorted({int(k) for k in ks})
    kmax = max(ks)
    base = GBTPredictor(random_state, n_threads)
    base.k = base.gap_k = kmax
    base.counts = counts
    base.vocab = Vocab.of(fit_cases)
    base.origin, base.scale = drift_origin_scale(fit_cases)
    tf, tv = prefix_targets(fit_cases), prefix_targets(val_cases)
    yf = np.asarray(tf.types, dtype=object).astype(str)
    yv = np.asarray(tv.types, dtype=object).astype(str)
    gf, gv = _gap_targets(tf), _gap_targets(tv)
    val_accuracy: dict[str, float] = {}
    val_mae: dict[str, float] = {}
    with _threads(n_threads):
        Xf, Xv = base.features(fit_cases, tf, kmax), base.features(val_cases, tv, kmax)

        def cls_score(k: int, hyper: dict[str, Any]) -> tuple[int, float]:
            if len(set(yf.tolist())) < 2:
                return 1, float(np.mean(yv == yf[0])) if len(yv) else float("nan")
            cols = base._columns(k, kmax)
            m = HistGradientBoostingClassifier(**_hgb_kwargs(hyper, random_state), categorical_features=categorical_mask(k, base.vocab, counts))

            def score(p: np.ndarray) -> float:
                return float(np.mean(np.asarray(m.classes_).astype(str)[p.argmax(1)] == yv))

            it, acc = _staged_search(m, _fill_empty(Xf[:, cols]), yf, m.staged_predict_proba, Xv[:, cols], score, True, max_iter, patience, chunk)
            val_accuracy[_key(k=k, **hyper, max_iter=it)] = acc
            return it, acc

        def reg_score(k: int, hyper: dict[str, Any]) -> tuple[int, float]:
            if gf.sum() < 2 or not gv.any():
                return 1, float("nan")
            cols = base._columns(k, kmax)
            m = HistGradientBoostingRegressor(**_hgb_kwargs(hyper, random_state, regressor=True), categorical_features=categorical_mask(k, base.vocab, counts))
            truth = tv.gaps[gv]

            def score(p: np.ndarray) -> float:
                return float(np.mean(np.abs(np.maximum(np.expm1(p), 0.0) - truth))) / DAY

            it, mae = _staged_search(m, _fill_empty(Xf[gf][:, cols]), np.log1p(np.maximum(tf.gaps[gf], 0.0)), m.staged_predict, Xv[gv][:, cols], score, False, max_iter, patience, chunk)
            val_mae[_key(k=k, **hyper, max_iter=it)] = mae
            return it, mae

        # classifier: k at grid[0], then the grid at that k
        best_c: tuple[float, int, dict[str, Any]] | None = None
        for k in ks:
            it, acc = cls_score(k, dict(grid[0]))
            if best_c is None or acc > best_c[0] + 1e-12:
                best_c = (acc, k, {**grid[0], "max_iter": it})
        assert best_c is not None
        for hyper in grid[1:]:
            it, acc = cls_score(best_c[1], dict(hyper))
            if acc > best_c[0] + 1e-12:
                best_c = (acc, best_c[1], {**hyper, "max_iter": it})
        # regressor: (k, loss) at grid[0], then the grid at that (k, loss)
        best_r: tuple[float, int, dict[str, Any]] | None = None
        for k in ks:
            for loss in losses:
                h = {**grid[0], "loss": loss}
                it, mae = reg_score(k, h)
                if best_r is None or mae < best_r[0] - 1e-12 or (np.isnan(best_r[0]) and not np.isnan(mae)):
                    best_r = (mae, k, {**h, "max_iter": it})
        assert best_r is not None
        for hyper in grid[1:]:
            h = {**hyper, "loss": best_r[2]["loss"]}
            it, mae = reg_score(best_r[1], h)
            if mae < best_r[0] - 1e-12:
                best_r = (mae, best_r[1], {**h, "max_iter": it})
    return GBTChoice(best_c[1], best_c[2], best_c[0], best_r[1], best_r[2], best_r[0], counts, val_accuracy, val_mae, time.perf_counter() - t0)


def fit_gbt_baseline(
    fit: Sequence[EventSequence],
    val: Sequence[EventSequence],
    train: Sequence[EventSequence] | None = None,
    random_state: int = 0,
    n_threads: int | None = None,
    **choose_kw: Any,
) -> tuple[GBTPredictor, GBTChoice]:
    """Choose on ``fit`` / ``val`` (:func:`choose_gbt`), refit the chosen settings on ``train``
    (default ``fit + val``: all training cases). Returns the fitted predictor and the choice."""
    choice = choose_gbt(fit, val, random_state=random_state, n_threads=n_threads, **choose_kw)
    train = list(fit) + list(val) if train is None else list(train)
    model = GBTPredictor(random_state, n_threads).fit(train, k=choice.type_k, gap_k=choice.gap_k, counts=choice.counts, type_hyper=choice.type_hyper, gap_hyper=choice.gap_hyper)
    return model, choice


def gbt_predictions(model: GBTPredictor, cases: Sequence[EventSequence], t: PrefixTargets, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, V] over names, gaps [N] seconds)``: the shape of
    :func:`~ejc.eval.next_event.ngram_predictions`."""
    return model.predict(cases, t, names)


__all__ = [
    "DEFAULT_GRID", "DEFAULT_KS", "GBTChoice", "GBTPredictor", "Vocab", "categorical_mask", "choose_gbt",
    "drift_origin_scale", "feature_names", "fit_gbt_baseline", "gbt_predictions", "prefix_features",
]
