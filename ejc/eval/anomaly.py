"""Sequence anomaly detection: ejc and baselines trained on normal sequences, thresholds from training data.

Shape legend: ``N`` sequences, ``J`` score components, ``K`` folds.

Protocol (:func:`run_anomaly`), K-fold cross-fitting: the normal training sequences are shuffled
(``seed``) and cut into ``K`` folds. For each fold, every detector is fitted on the other folds
and scores the held-out fold and the test sequences. So every normal training sequence gets an
out-of-fold score from a detector that never saw it, and the threshold is the ``quantile`` of
all ``N`` out-of-fold scores (a sequence is flagged when its score is *above* it; the expected
false alarm rate is about ``1 - quantile``). A test sequence's score is the mean of its ``K``
fold scores (an ensemble: averaging lowers the spread of normal scores, so it errs towards
fewer false alarms). No test label is ever looked at. Test labels are used only to compute
``auroc``, ``precision``/``recall``/``f1`` at that threshold and ``best_f1`` (the F1 of the best
threshold chosen with the test labels: optimistic, an upper bound). Against one held-out split,
cross-fitting calibrates on ``K`` times as many sequences and still trains each detector on
``(K - 1) / K`` of them; it costs ``K`` trainings. When the training file holds labelled
anomalies (``--label-col``), the detectors are still trained on its normal sequences only, but
every fold detector also scores those anomalies, and the threshold is the one with the best F1
of the out-of-fold normal scores against them (:func:`f1_threshold`; ``threshold="auto"``):
known anomalies say where normal ends better than a fixed false-alarm rate does.

The ejc detector combines the Event-JEPA model's surprise with the event-count novelty of a
sequence (:class:`~ejc.eval.baselines.CountVectorNN`): within each fold each score is turned
into an empirical p-value against the fold's held-out sequences (each of those against the
others, :func:`leave_one_out_pvalues`), and Fisher's method sums ``-2 log p`` over them. A model
that explains event order and a count vector that sees what is missing or repeated fail on
different anomalies; Fisher's sum needs no weights and no anomalous examples. The model's own
score (``ejc_model``) is reported beside it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ejc.config import Config
from ejc.data.sequence import EventSequence
from ejc.eval.baselines import CountVectorNN, UnseenEventDetector, UnseenNgramFraction
from ejc.eval.metrics import auroc, best_f1, precision_recall_f1
from ejc.train.finetune import Progress, pretrain_cases, with_end
from ejc.eval.protocol import type_list
from ejc.errors import EjcError
from ejc.model.encoder import to_tensors
from ejc.train.loop import Trainer


def empirical_pvalues(calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``(1 + #{calibration >= s}) / (n + 1)`` for each score ``s``: small = unusually high."""
    cal = np.sort(np.asarray(calibration, np.float64))
    s = np.asarray(scores, np.float64)
    n_ge = len(cal) - np.searchsorted(cal, s, side="left")
    return (1.0 + n_ge) / (len(cal) + 1.0)


def leave_one_out_pvalues(calibration: np.ndarray) -> np.ndarray:
    """``(1 + #{j != i: c_j >= c_i}) / n`` for each calibration score ``c_i``.

    A calibration score judged against the *other* ``n - 1`` scores is distributed like a new
    normal score judged against all ``n`` (:func:`empirical_pvalues`); judged against a set that
    holds itself, its p-value would be too large by ``1 / (n + 1)``, which at the tail (where the
    threshold lies) shifts the threshold down and raises the false-alarm rate.
    """
    c = np.asarray(calibration, np.float64)
    cal = np.sort(c)
    n_ge = len(cal) - np.searchsorted(cal, c, side="left")  # includes c_i itself
    return n_ge / float(len(cal))


def fisher_combine(calibration: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """``[N]`` Fisher statistic ``-2 sum_j log p_j`` of ``scores [N, J]`` against ``calibration [n, J]``.

    ``scores=None`` scores the calibration rows themselves, each against the others
    (:func:`leave_one_out_pvalues`): the statistic a threshold is set on.
    """
    cal = np.atleast_2d(calibration)
    if scores is None:
        return -2.0 * sum(np.log(leave_one_out_pvalues(cal[:, j])) for j in range(cal.shape[1]))
    s = np.atleast_2d(scores)
    return -2.0 * sum(np.log(empirical_pvalues(cal[:, j], s[:, j])) for j in range(s.shape[1]))


@dataclass
class DetectorResult:
    test_scores: np.ndarray
    threshold: float

    def metrics(self, labels: np.ndarray) -> dict[str, float]:
        out = {"auroc": auroc(self.test_scores, labels)}
        out.update(precision_recall_f1(self.test_scores > self.threshold, labels))
        out["best_f1"] = best_f1(self.test_scores, labels)
        out["threshold"] = self.threshold
        return out


def threshold_from(calibration_scores: np.ndarray, quantile: float) -> float:
    """The ``quantile`` of the calibration (normal, held-out) scores."""
    return float(np.quantile(np.asarray(calibration_scores, np.float64), quantile, method="higher"))


def f1_threshold(normal_scores: np.ndarray, anomalous_scores: np.ndarray) -> float:
    """The threshold with the best F1 on labelled *training* scores (flag when ``score > t``).

    Between two adjacent distinct scores every threshold flags the same sequences; the midpoint
    is returned (the widest margin on both sides). Of several thresholds with the same best F1
    the lowest one is taken. Used when the training file holds labelled anomalies: they set
    the threshold, the detectors are still trained on the normal sequences only.
    """
    neg = np.asarray(normal_scores, np.float64)
    pos = np.asarray(anomalous_scores, np.float64)
    if not len(pos) or not len(neg):
        raise EjcError("a training-F1 threshold needs both normal and anomalous training scores")
    u = np.unique(np.concatenate([neg, pos]))
    # flags at threshold u[i]: scores > u[i]; count each class above every candidate
    tp = len(pos) - np.searchsorted(np.sort(pos), u, side="right")
    fp = len(neg) - np.searchsorted(np.sort(neg), u, side="right")
    f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + (len(pos) - tp), 1e-12), 0.0)
    best = float(f1.max())
    if best == 0.0:  # nothing separates: flag everything above the lowest score
        return float(u[0] - 1.0)
    i = int(np.flatnonzero(f1 >= best - 1e-12)[0])
    return float((u[i] + u[i + 1]) / 2) if i + 1 < len(u) else float(u[i])


def sequence_labels(seqs: list[EventSequence], normal: str = "0") -> np.ndarray:
    """``[N]`` 1 where any event of the sequence has a label other than ``normal``, else 0."""
    out = np.zeros(len(seqs), np.int64)
    seen: set[str] = set()
    for i, s in enumerate(seqs):
        if s.labels is None:
            raise EjcError(f"sequence {s.id!r} has no labels; name the label column with --label-col")
        labs = {str(x) for x in s.labels if x is not None}
        seen |= labs
        out[i] = int(any(x != normal for x in labs))
    if seen and normal not in seen:
        raise EjcError(f"no event has the normal label {normal!r}; labels seen: {sorted(seen)[:10]}; pass --normal-label")
    return out


# ----------------------------------------------------------------------------------------------
# the Event-JEPA model's surprise


@torch.no_grad()
def type_surprise(trainer: Trainer, seqs: list[EventSequence], max_tokens: int = 32768) -> list[np.ndarray]:
    """Per sequence, ``[n - 1]`` negative log-likelihoods of events ``1..n-1``' types given their past.

    The causal context encoder sees each whole sequence (no window cut), so each event is
    judged from its full history. Sequences are batched by length under a budget of
    ``max_tokens`` padded events per batch (a 100k-event session runs alone), bounding memory.
    """
    model = trainer.model
    model.eval()
    heads = model.heads
    if heads is None:
        raise EjcError("the anomaly model needs next-event heads (objective.future=true)")
    out: list[np.ndarray | None] = [None] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * len(seqs[order[end]]) <= max_tokens:
            end += 1
        idx = order[start:end]
        start = end
        chunk = [seqs[i] for i in idx]
        bt = to_tensors(trainer.spec.collate(chunk, None, trainer.pad_multiple))
        h = model.context(bt, causal=True).events
        logp = torch.log_softmax(heads.type_head(h[:, :-1]).float(), -1)
        nll = -logp.gather(-1, bt.type_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        for j, i in enumerate(idx):
            out[i] = nll[j, : max(0, len(seqs[i]) - 1)].numpy().astype(np.float64)
    return out  # type: ignore[return-value]


def model_scores(trainer: Trainer, seqs: list[EventSequence]) -> np.ndarray:
    """``[N]`` sequence score: the largest type surprise of any event, the end of the sequence included.

    The end is an :data:`~ejc.eval.protocol.END` event appended to every sequence, so a
    sequence that stops where normal ones go on is surprising too.
    """
    return np.array([float(s.max()) if len(s) else 0.0 for s in type_surprise(trainer, [with_end(q) for q in seqs])])


# ----------------------------------------------------------------------------------------------
# the task


@dataclass
class AnomalyRun:
    labels: np.ndarray
    detectors: dict[str, DetectorResult]
    details: dict[str, Any]
    train_seconds: float

    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: d.metrics(self.labels) for name, d in self.detectors.items()}


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """``folds`` disjoint index arrays covering ``range(n)`` after a seeded shuffle (sizes differ by <= 1)."""
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise EjcError(f"--folds must be an integer >= 2, got {folds!r}")
    if n < folds:
        raise EjcError(f"need at least as many normal training sequences as folds: {n} sequences, {folds} folds; lower --folds")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


THRESHOLD_RULES = ("auto", "quantile", "train-f1")


def run_anomaly(
    train: list[EventSequence],
    test: list[EventSequence],
    labels: np.ndarray,
    cfg: Config,
    seed: int = 0,
    quantile: float = 0.99,
    folds: int = 5,
    train_anomalous: list[EventSequence] | None = None,
    threshold: str = "auto",
    progress: Progress | None = None,
) -> AnomalyRun:
    """Fit every detector on normal ``train`` sequences (``folds``-fold cross-fitting), score ``test`` (``labels``: 1 = anomalous).

    ``train_anomalous``: the training file's labelled anomalies, never trained on; every fold
    detector scores them (a sequence's score is the mean over the folds, as for test).
    ``threshold``: ``quantile`` (the ``quantile`` of the out-of-fold normal scores),
    ``train-f1`` (the best-F1 threshold of out-of-fold normal vs anomalous training scores,
    :func:`f1_threshold`) or ``auto`` (``train-f1`` when there are training anomalies).
    ``progress`` gets a line per fold (and the pretraining's steps).
    """
    if not 0 < quantile <= 1:
        raise EjcError(f"--threshold-quantile must be in (0, 1], got {quantile}")
    if threshold not in THRESHOLD_RULES:
        raise EjcError(f"unknown threshold rule {threshold!r}; use one of {THRESHOLD_RULES}")
    anomalous = list(train_anomalous or [])
    rule = ("train-f1" if anomalous else "quantile") if threshold == "auto" else threshold
    if rule == "train-f1" and not anomalous:
        raise EjcError("--threshold train-f1 needs labelled anomalies in the training file (--label-col); none were found")
    if len(train) < 2:
        raise EjcError(f"need at least 2 normal training sequences, got {len(train)}")
    parts = fold_indices(len(train), folds, seed)
    # the training anomalies ride along with the test sequences (scored, never trained on)
    scored = test + anomalous
    n_test = len(test)
    test_t = [type_list(s) for s in scored]
    oof: dict[str, list[np.ndarray]] = {}  # detector -> per fold, scores of the held-out sequences
    on_test: dict[str, list[np.ndarray]] = {}  # detector -> per fold, scores of the test (+ training anomalous) sequences
    train_seconds = 0.0

    def keep(name: str, cal_scores: np.ndarray, test_scores: np.ndarray) -> None:
        oof.setdefault(name, []).append(np.asarray(cal_scores, np.float64))
        on_test.setdefault(name, []).append(np.asarray(test_scores, np.float64))

    for k, held in enumerate(parts):
        held_set = set(held.tolist())
        fit = [s for i, s in enumerate(train) if i not in held_set]
        cal = [train[i] for i in held]
        fit_t, cal_t = [type_list(s) for s in fit], [type_list(s) for s in cal]
        base: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for det in (UnseenEventDetector(), CountVectorNN(), UnseenNgramFraction(3)):
            det.fit(fit_t)
            base[det.name] = (det.score(cal_t), det.score(test_t))
        t0 = time.perf_counter()
        trainer = pretrain_cases(cfg, fit, seed + k, progress)
        cal_m, test_m = model_scores(trainer, cal), model_scores(trainer, scored)
        train_seconds += time.perf_counter() - t0
        if progress is not None:
            progress(f"fold {k + 1}/{len(parts)}: fitted on {len(fit)}, scored {len(cal)} held-out + {len(scored)} test/anomalous sequences ({time.perf_counter() - t0:.0f} s)")
        cal_j = np.stack([cal_m, base["count_vector_nn"][0]], 1)
        test_j = np.stack([test_m, base["count_vector_nn"][1]], 1)
        keep("ejc", fisher_combine(cal_j), fisher_combine(cal_j, test_j))  # held-out rows each against the others
        keep("ejc_model", cal_m, test_m)
        for name, (c, t) in base.items():
            keep(name, c, t)
    detectors: dict[str, DetectorResult] = {}
    by_quantile: dict[str, float] = {}
    train_f1: dict[str, float] = {}
    for name in on_test:
        mean = np.mean(np.stack(on_test[name]), 0)
        normal_oof = np.concatenate(oof[name])
        by_quantile[name] = threshold_from(normal_oof, quantile)
        t = f1_threshold(normal_oof, mean[n_test:]) if rule == "train-f1" else by_quantile[name]
        if anomalous:  # the training F1 at the threshold used
            train_f1[name] = precision_recall_f1(np.r_[normal_oof, mean[n_test:]] > t, np.r_[np.zeros(len(normal_oof)), np.ones(len(anomalous))])["f1"]
        detectors[name] = DetectorResult(mean[:n_test], t)
    details = {
        "train_normal": len(train),
        "folds": len(parts),
        "fold_sizes": [len(p) for p in parts],
        "fit_per_fold": len(train) - min(len(p) for p in parts),
        "calibration": len(train),
        "test": len(test),
        "test_anomalous": int(np.sum(labels)),
        "train_anomalous": len(anomalous),
        "threshold_rule": rule,
        "threshold_quantile": quantile,
        "flagged_when": (
            "mean test score over the fold detectors > the threshold with the best F1 of out-of-fold normal vs (fold-mean) anomalous training scores"
            if rule == "train-f1"
            else "mean test score over the fold detectors > quantile of the out-of-fold training scores"
        ),
        # the same detectors at the other rule's threshold, for comparison (test labels only score)
        "quantile_threshold": {name: {"threshold": by_quantile[name], **precision_recall_f1(detectors[name].test_scores > by_quantile[name], labels)} for name in detectors},
        **({"train_f1_at_threshold": train_f1} if anomalous else {}),
        "best_f1_note": "best_f1 picks the threshold with the test labels: optimistic",
    }
    return AnomalyRun(np.asarray(labels, np.int64), detectors, details, train_seconds)


__all__ = ["THRESHOLD_RULES", "AnomalyRun", "DetectorResult", "empirical_pvalues", "f1_threshold", "fisher_combine", "fold_indices", "leave_one_out_pvalues", "model_scores", "run_anomaly", "sequence_labels", "threshold_from", "type_surprise"]
