"""Sequence anomaly detection through the product path: train with ``ejc train``, reload, score.

Shape legend: ``N`` sequences.

Protocol (:func:`run_anomaly`): the model is trained with :func:`ejc.train.recipe.train_model`
on the normal training sequences only, written to MODEL/, loaded back with
``EventJEPA.from_pretrained`` and every test sequence is scored by
``sequence_anomaly_scores`` (= ``anomaly_scores(seq).sequence_score``), flagged above the
model's own threshold (``anomaly_scores(seq).sequence_threshold``: the ``finetune.anomaly_quantile``
of the recipe's holdout). That is the ``ejc`` row: what users of that directory get. Rows
beside it, every one fitted on the same sequences with the same holdout rule (fitted on the
recipe's fit part, threshold = the same quantile of their holdout scores, refitted on all
training sequences to score the test): ``ejc_model`` (the model's surprise alone),
``count_vector_nn``, ``unseen_ngram`` (3-grams), ``unseen_event`` and ``counts_3gram_fisher``
(Fisher's combination of the count-vector and 3-gram p-values: the shipped detector's
recipe with no neural net). Test labels only score: ``auroc``, ``precision`` / ``recall`` /
``f1`` at the threshold, ``best_f1`` (threshold chosen with the test labels: optimistic).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ejc.config import Config
from ejc.data.sequence import EventSequence
from ejc.errors import EjcError
from ejc.eval.baselines import CountVectorNN, UnseenEventDetector, UnseenNgramFraction
from ejc.eval.metrics import auroc, best_f1, precision_recall_f1
from ejc.eval.protocol import type_list
from ejc.infer.detector import empirical_pvalues, fisher_combine, leave_one_out_pvalues  # noqa: F401  (re-exported)
from ejc.train.finetune import Progress


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


@dataclass
class AnomalyRun:
    labels: np.ndarray
    detectors: dict[str, DetectorResult]
    details: dict[str, Any]
    train_seconds: float

    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: d.metrics(self.labels) for name, d in self.detectors.items()}


def run_anomaly(
    train: list[EventSequence],
    test: list[EventSequence],
    labels: np.ndarray,
    cfg: Config,
    work_dir: str | Path,
    train_anomalous: list[EventSequence] | None = None,
    progress: Progress | None = None,
) -> AnomalyRun:
    """Train on the normal ``train`` sequences, score ``test`` (``labels``: 1 = anomalous) through the facade.

    ``train_anomalous``: the training file's labelled anomalies, never trained on; only reported
    (``details.train_anomalous_f1``: the F1 of each detector's threshold on normal holdout vs
    them), so a reader sees how the holdout rule would fare on known anomalies.
    """
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.recipe import holdout_split, train_model

    if len(train) < 2:
        raise EjcError(f"need at least 2 normal training sequences, got {len(train)}")
    q = cfg.finetune.anomaly_quantile
    say = progress or (lambda _: None)
    t0 = time.perf_counter()
    model_dir = train_model(cfg, train, Path(work_dir) / "model", progress=progress, command=["ejc", "evaluate", "anomaly", "(normal training sequences)"])
    train_seconds = time.perf_counter() - t0
    model = EventJEPA.from_pretrained(model_dir)  # reloaded from disk: what users load
    if model.detector is None or model.predictor is None:
        raise EjcError(f"{model_dir}: the model has no sequence detector")
    t1 = time.perf_counter()
    ejc_scores = model.sequence_anomaly_scores(test)
    score_seconds = time.perf_counter() - t1
    say(f"scored {len(test)} test sequences through the facade ({score_seconds:.0f} s)")
    detectors = {"ejc": DetectorResult(ejc_scores, model.detector.threshold)}
    comps = model.detector.components(model.predictor.first, model.spec, test)
    detectors["ejc_model"] = DetectorResult(comps[:, 0], threshold_from(model.detector.calibration[:, 0], q))
    # the baselines, by the same holdout rule
    fit, holdout = holdout_split(train, cfg.finetune.val_fraction)
    types = lambda ss: [type_list(s) for s in ss]  # noqa: E731
    test_t = types(test)
    cal: dict[str, np.ndarray] = {}
    on_test: dict[str, np.ndarray] = {}
    for make in (CountVectorNN, lambda: UnseenNgramFraction(3), UnseenEventDetector):
        det = make().fit(types(fit))
        cal[det.name] = det.score(types(holdout))
        on_test[det.name] = make().fit(types(train)).score(test_t)
        detectors[det.name] = DetectorResult(on_test[det.name], threshold_from(cal[det.name], q))
    c2 = np.stack([cal["count_vector_nn"], cal["unseen_ngram"]], 1)
    detectors["counts_3gram_fisher"] = DetectorResult(fisher_combine(c2, np.stack([on_test["count_vector_nn"], on_test["unseen_ngram"]], 1)), threshold_from(fisher_combine(c2), q))
    details: dict[str, Any] = {
        "train_normal": len(train),
        "fit": len(fit),
        "holdout": len(holdout),
        "test": len(test),
        "test_anomalous": int(np.sum(labels)),
        "threshold_quantile": q,
        "flagged_when": "score > the quantile of the holdout scores (the shipped detector: its own threshold from MODEL/detector.json)",
        "model_dir": str(model_dir),
        "score_seconds": round(score_seconds, 1),
        "card": {k: v for k, v in json.loads((Path(model_dir) / "card.json").read_text()).items() if k in ("detector", "members", "train_seconds", "data")},
        "best_f1_note": "best_f1 picks the threshold with the test labels: optimistic",
    }
    if train_anomalous:
        a_scores = model.sequence_anomaly_scores(train_anomalous)
        hold = fisher_combine(model.detector.calibration)
        details["train_anomalous"] = len(train_anomalous)
        details["train_anomalous_f1"] = {"ejc": precision_recall_f1(np.r_[hold, a_scores] > model.detector.threshold, np.r_[np.zeros(len(hold)), np.ones(len(a_scores))])["f1"]}
    return AnomalyRun(np.asarray(labels, np.int64), detectors, details, train_seconds)


__all__ = ["AnomalyRun", "DetectorResult", "empirical_pvalues", "fisher_combine", "leave_one_out_pvalues", "run_anomaly", "sequence_labels", "threshold_from"]
