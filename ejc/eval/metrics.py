"""Evaluation metrics, written out so that each can be checked by hand.

Shape legend: ``N`` scored items, ``C`` candidates per item.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ejc.errors import EjcError


def accuracy(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of ``pred == true`` (over ``mask`` when given); NaN when nothing is scored."""
    pred, true = np.asarray(pred, dtype=object), np.asarray(true, dtype=object)
    if mask is not None:
        pred, true = pred[mask], true[mask]
    return float(np.mean(pred == true)) if len(true) else float("nan")


def mean_absolute_error(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean ``|pred - true|`` over finite targets (and ``mask``); NaN when nothing is scored."""
    pred, true = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    ok = np.isfinite(true)
    if mask is not None:
        ok &= mask
    return float(np.mean(np.abs(pred[ok] - true[ok]))) if ok.any() else float("nan")


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)``: flag ``score >= threshold``, thresholds from high to low (ties grouped)."""
    s, y = _scores_labels(scores, labels)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    distinct = np.flatnonzero(np.diff(s)) if len(s) > 1 else np.zeros(0, np.int64)
    ends = np.concatenate([distinct, [len(s) - 1]])
    tp = np.cumsum(y)[ends]
    fp = (ends + 1) - tp
    pos, neg = y.sum(), len(y) - y.sum()
    tpr = np.concatenate([[0.0], tp / pos])
    fpr = np.concatenate([[0.0], fp / neg])
    return fpr, tpr, np.concatenate([[np.inf], s[ends]])


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a random positive > a random negative), ties count 1/2."""
    s, y = _scores_labels(scores, labels)
    from scipy.stats import rankdata

    ranks = rankdata(s)  # average ranks: ties count one half
    pos = y.sum()
    neg = len(y) - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def precision_recall_f1(flags: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of boolean ``flags`` against 0/1 ``labels`` (0 where undefined)."""
    f = np.asarray(flags, bool)
    y = np.asarray(labels).astype(bool)
    tp = float(np.sum(f & y))
    fp = float(np.sum(f & ~y))
    fn = float(np.sum(~f & y))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


def best_f1(scores: np.ndarray, labels: np.ndarray) -> float:
    """The F1 of the best threshold chosen *with* the labels (optimistic: an upper bound)."""
    s, y = _scores_labels(scores, labels)
    fpr, tpr, _ = roc_curve(s, y)
    pos, neg = y.sum(), len(y) - y.sum()
    tp, fp = tpr * pos, fpr * neg
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + (pos - tp), 1e-12), 0.0)
    return float(f1.max())


def ranks_of_truth(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``[N]`` 1-based rank of the true candidate in each row of ``scores [N, C]`` (ties: pessimistic).

    ``truth[i]`` is a column index, or ``-1`` when the true candidate is not among them
    (then its rank is ``C + 1``: never retrieved).
    """
    scores = np.asarray(scores, np.float64)
    truth = np.asarray(truth, np.int64)
    n, c = scores.shape
    rank = np.full(n, c + 1, np.int64)
    ok = truth >= 0
    if ok.any():
        ts = scores[np.flatnonzero(ok), truth[ok]]
        rank[ok] = 1 + (scores[ok] >= ts[:, None]).sum(1) - 1
    return rank


def recall_at_k(ranks: np.ndarray, k: int = 10) -> float:
    """Fraction of items whose true candidate ranks within the top ``k``."""
    r = np.asarray(ranks)
    return float(np.mean(r <= k)) if len(r) else float("nan")


def mean_reciprocal_rank(ranks: np.ndarray, num_candidates: int | None = None) -> float:
    """Mean of ``1 / rank``; a truth outside the candidates (rank > ``num_candidates``) counts 0."""
    r = np.asarray(ranks, np.float64)
    rr = 1.0 / r
    if num_candidates is not None:
        rr[r > num_candidates] = 0.0
    return float(np.mean(rr)) if len(r) else float("nan")


def confusion_matrix(pred: np.ndarray, true: np.ndarray, labels: list[str]) -> np.ndarray:
    """``[C, C]`` counts, rows = true label, columns = predicted label, in ``labels`` order."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), np.int64)
    for p, t in zip(pred, true):
        if p in index and t in index:
            m[index[t], index[p]] += 1
    return m


def _scores_labels(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels).astype(np.int64)
    if s.shape != y.shape or s.ndim != 1:
        raise EjcError(f"scores and labels must be 1-d of equal length, got {s.shape} and {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise EjcError("labels must be 0 (normal) or 1 (anomalous)")
    if y.sum() == 0 or y.sum() == len(y):
        raise EjcError(f"AUROC and ROC need both normal and anomalous items; got {int(y.sum())} anomalous of {len(y)}")
    s = np.where(np.isnan(s), -np.inf, s)
    return s, y


# ----------------------------------------------------------------------------------------------
# next-event scores (types over a list of names, END included; gaps in seconds)


def most_likely_types(probs: np.ndarray, names: list[str]) -> np.ndarray:
    """``[N]`` the most likely type (END included) from ``probs [N, V]`` over ``names``."""
    return np.array([names[i] for i in np.asarray(probs).argmax(1)], dtype=object)


def continuation_types(probs: np.ndarray, names: list[str]) -> np.ndarray:
    """``[N]`` the most likely type other than END from ``probs [N, V]`` over ``names``."""
    from ejc.data.sequence import END

    p = np.array(probs, np.float64, copy=True)
    if END in names:
        p[:, names.index(END)] = -np.inf
    return most_likely_types(p, names)


def next_event_scores(types: np.ndarray, gaps: np.ndarray, targets: Any, continuation: np.ndarray) -> dict[str, float]:
    """The next-event metrics of predictions ``types`` / ``gaps`` (seconds) and ``continuation``
    (the most likely type other than END), each ``[N]`` over ``targets`` (a
    :class:`~ejc.eval.protocol.PrefixTargets`):

    - ``accuracy``: ``types`` on every target, END included;
    - ``accuracy_excl_end``: ``continuation`` on the targets that are not END — the measure of the
      data README's table (its bigram's 0.742 and the recent n-gram's 0.834 are reproduced by it)
      and of EasyTPP's one-step evaluation, whose models have no END class;
    - ``time_mae_days``: ``gaps`` on the targets that are not END;
    - ``accuracy_excl_end_as_predicted``: ``types`` on the targets that are not END, so predicting
      END where the case went on counts as wrong (stricter).
    """
    going_on = ~targets.is_end
    return {
        "accuracy": accuracy(types, targets.types),
        "accuracy_excl_end": accuracy(continuation, targets.types, going_on),
        "time_mae_days": mean_absolute_error(gaps, targets.gaps, going_on) / 86400.0,
        "accuracy_excl_end_as_predicted": accuracy(types, targets.types, going_on),
    }


def scores_of_probs(probs: np.ndarray, gaps: np.ndarray, targets: Any, names: list[str], cont_probs: np.ndarray | None = None) -> dict[str, float]:
    """:func:`next_event_scores` of type probabilities ``probs [N, V]`` over ``names`` and ``gaps [N]``;
    the continuation types come from ``cont_probs`` (default: ``probs``)."""
    return next_event_scores(most_likely_types(probs, names), gaps, targets, continuation_types(probs if cont_probs is None else cont_probs, names))


__all__ = [
    "continuation_types",
    "most_likely_types",
    "next_event_scores",
    "scores_of_probs",
    "accuracy",
    "auroc",
    "best_f1",
    "confusion_matrix",
    "mean_absolute_error",
    "mean_reciprocal_rank",
    "precision_recall_f1",
    "ranks_of_truth",
    "recall_at_k",
    "roc_curve",
]
