"""Next-event retrieval: rank every candidate event type as the next event of each test prefix.

Seed 002's retrieval metrics: ``recall_at_k`` (the true next event among the top ``k``
candidates) and ``mrr`` (mean reciprocal rank). Candidates are all event types of the training
cases plus END; a test event of a type never seen in training is never retrieved (reciprocal
rank 0). Same protocol and models as :mod:`ejc.eval.next_event`; baselines are the n-gram's
back-off scores (of all training cases, and of the drift-aware n-gram's most recent ones) and
popularity (training frequency of each type as a next event).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from pathlib import Path

from ejc.config import Config
from ejc.data.sequence import END
from ejc.eval.baselines import NGramPredictor, choose_ngram, most_recent
from ejc.eval.metrics import mean_reciprocal_rank, ranks_of_truth, recall_at_k
from ejc.eval.next_event import run_next_event
from ejc.eval.protocol import PrefixTargets, Split, type_list
from ejc.train.finetune import Progress


def retrieval_metrics(scores: np.ndarray, names: list[str], targets: PrefixTargets, k: int = 10) -> dict[str, float]:
    """``recall_at_<k>`` and ``mrr`` of ``scores [N, C]`` over candidate ``names`` for ``targets``."""
    col = {n: i for i, n in enumerate(names)}
    truth = np.array([col.get(t, -1) for t in targets.types], np.int64)
    ranks = ranks_of_truth(scores, truth)
    return {f"recall_at_{k}": recall_at_k(ranks, k), "mrr": mean_reciprocal_rank(ranks, len(names))}


def run_retrieval(split: Split, cfg: Config, work_dir: str | Path, k: int = 10, progress: Progress | None = None) -> tuple[dict[str, dict[str, float]], float, dict[str, Any]]:
    """``(metrics by method, ejc training seconds, details)`` on the test prefixes of ``split``.

    ejc's ranking is the shipped model's type distribution (``predict_next_batch``'s
    ``type_probs`` over every type), trained, saved and reloaded by :func:`run_next_event`.
    """
    max_n = cfg.finetune.max_n
    run = run_next_event(split, cfg, work_dir, progress)
    names, t = run.names, run.targets
    fit_t, val_t, train_t = ([type_list(s) for s in ss] for ss in (split.fit, split.val, split.train))
    n, _ = choose_ngram(fit_t, val_t, max_n)
    ngram = NGramPredictor(n).fit(train_t)
    ngram_scores = np.stack([ngram.scores(type_list(split.test[c])[:kk], names) for c, kk in zip(t.case, t.length)])
    rec = run.details["ngram_recent"]  # the drift-aware n-gram as chosen on validation
    recent = NGramPredictor(rec["n"]).fit(most_recent(train_t, rec["fraction"]))
    recent_scores = np.stack([recent.scores(type_list(split.test[c])[:kk], names) for c, kk in zip(t.case, t.length)])
    freq = Counter(tl[i] if i < len(tl) else END for tl in train_t for i in range(1, len(tl) + 1))
    popularity = np.tile(np.array([freq.get(x, 0) for x in names], np.float64), (len(t), 1))
    metrics = {
        "ejc": retrieval_metrics(run.probs, names, t, k),
        "ngram": retrieval_metrics(ngram_scores, names, t, k),
        "ngram_recent": retrieval_metrics(recent_scores, names, t, k),
        "popularity": retrieval_metrics(popularity, names, t, k),
    }
    details = {"candidates": len(names), "test_targets": len(t), "ngram_n": n, "ngram_recent": rec, "ejc": run.details["ejc"]}
    return metrics, run.train_seconds, details


__all__ = ["retrieval_metrics", "run_retrieval"]
