"""The shipped sequence anomaly detector: the model's surprise and count novelty, combined by Fisher's method.

Shape legend: ``N`` sequences, ``J`` = 2 score components, ``n`` calibration (holdout) sequences.

Two scores per sequence, each higher = more unusual:

- **surprise**: the largest type surprise ``-log p(type | past)`` of any event under the shipped
  next-event net (drift feature included), the END after the last event counted too when the
  model was trained on complete cases (a sequence that stops where normal ones go on is
  surprising);
- **novelty**: the distance of its event-count vector to the nearest training one
  (:class:`~ejc.model.counts.CountVectorNN`): what is missing or repeated, whatever the order.

Each score becomes an empirical p-value against the recipe's holdout sequences (scored by the
holdout-stage net and counts, which never saw them), and the sequence score is Fisher's
statistic ``-2 sum log p``; the threshold is the ``quantile`` of the holdout's own statistics,
each judged against the others (:func:`leave_one_out_pvalues`), so about ``1 - quantile`` of
normal sequences are flagged. A sequence model and a count vector fail on different anomalies;
Fisher's sum needs no weights and no anomalous examples.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ejc.data.sequence import END, EventSequence
from ejc.errors import CheckpointError
from ejc.model.counts import CountVectorNN
from ejc.model.encoder import to_tensors
from ejc.model.next_event import NextEventNet
from ejc.train.data import DataSpec

DETECTOR_FILE = "detector.json"


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


@torch.no_grad()
def type_surprise(net: NextEventNet, spec: DataSpec, seqs: list[EventSequence], ends: bool, max_tokens: int = 32768) -> np.ndarray:
    """``[N]`` the largest ``-log p(type | past)`` over each sequence's events 1..n (and END when ``ends``).

    The causal states see each whole sequence (no window cut), batched by length under a budget
    of ``max_tokens`` padded events (a 100k-event session runs alone), bounding memory.
    """
    from ejc.train.finetune import with_end

    net.eval()
    heads = net.jepa.heads
    assert heads is not None
    cfg = net.jepa.cfg
    pad = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1
    dev = next(net.parameters()).device
    seqs = [with_end(s) for s in seqs] if ends else list(seqs)
    out = np.zeros(len(seqs))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    start = 0
    while start < len(order):
        end = start + 1
        while end < len(order) and (end + 1 - start) * len(seqs[order[end]]) <= max_tokens:
            end += 1
        idx = order[start:end]
        start = end
        bt = to_tensors(spec.collate([seqs[i] for i in idx], None, pad), dev)
        h = net.states(bt)
        logp = torch.log_softmax(heads.type_head(h[:, :-1]).float(), -1)
        nll = -logp.gather(-1, bt.type_ids[:, 1:].unsqueeze(-1)).squeeze(-1).cpu().numpy()
        for j, i in enumerate(idx):
            k = max(0, len(seqs[i]) - 1)
            out[i] = float(nll[j, :k].max()) if k else 0.0
    return out


def _types(seqs: list[EventSequence]) -> list[list[str]]:
    return [[str(t) for t in s.event_types] if s.event_types is not None else [] for s in seqs]


@dataclass
class SequenceDetector:
    """``calibration [n, 2]`` holdout (surprise, novelty) scores, ``counts`` fitted on the training entities."""

    calibration: np.ndarray
    counts: CountVectorNN
    quantile: float
    ends: bool

    @property
    def threshold(self) -> float:
        """The ``quantile`` of the holdout's leave-one-out Fisher statistics."""
        return float(np.quantile(fisher_combine(self.calibration), self.quantile, method="higher"))

    def components(self, net: NextEventNet, spec: DataSpec, seqs: list[EventSequence]) -> np.ndarray:
        """``[N, 2]`` raw (surprise, novelty) of ``seqs``."""
        return np.stack([type_surprise(net, spec, seqs, self.ends), self.counts.score(_types(seqs))], 1) if seqs else np.zeros((0, 2))

    def score(self, net: NextEventNet, spec: DataSpec, seqs: list[EventSequence]) -> np.ndarray:
        """``[N]`` Fisher statistics (higher = more anomalous)."""
        return fisher_combine(self.calibration, self.components(net, spec, seqs)) if seqs else np.zeros(0)

    def save(self, model_dir: str | os.PathLike[str]) -> None:
        d = {"format_version": 1, "quantile": self.quantile, "ends": self.ends, "threshold": self.threshold,
             "calibration": self.calibration.tolist(), "counts": self.counts.to_dict()}
        (Path(model_dir) / DETECTOR_FILE).write_text(json.dumps(d))

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> SequenceDetector | None:
        p = Path(model_dir) / DETECTOR_FILE
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text())
            return cls(np.asarray(d["calibration"], np.float64).reshape(-1, 2), CountVectorNN.from_dict(d["counts"]), float(d["quantile"]), bool(d["ends"]))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{p}: unreadable anomaly detector: {e}") from e


def fit_detector(net: NextEventNet, spec: DataSpec, fit: list[EventSequence], holdout: list[EventSequence], shipped_counts_on: list[EventSequence], quantile: float, ends: bool) -> SequenceDetector:
    """Calibrate on ``holdout`` with ``net`` and counts fitted on ``fit`` (neither saw the holdout);
    ship counts fitted on ``shipped_counts_on`` (all the training entities)."""
    holdout_counts = CountVectorNN().fit(_types(fit))
    cal = np.stack([type_surprise(net, spec, holdout, ends), holdout_counts.score(_types(holdout))], 1)
    return SequenceDetector(cal, CountVectorNN().fit(_types(shipped_counts_on)), quantile, ends)


__all__ = ["DETECTOR_FILE", "SequenceDetector", "empirical_pvalues", "fisher_combine", "fit_detector", "leave_one_out_pvalues", "type_surprise"]


