"""The supervised next-event network: the Event-JEPA model plus an absolute-time (drift) input.

Shape legend: ``b`` sequences in a batch, ``L`` padded length, ``d`` model width.

Logs drift: the same prefix is followed by other events a year later. :class:`NextEventNet`
adds to every input token a learned linear function of the event's absolute time, scaled by
:class:`TimeScale` so that the training entities' start times span 0..1 (later data lies
beyond 1, which the linear feature extends). The drift weights start at zero, so an untrained
drift term changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ejc.model.encoder import BatchTensors
from ejc.model.jepa import EventJEPAModel


@dataclass
class TimeScale:
    """Absolute time scaled so that the training entities' start times span 0..1."""

    origin: float
    span: float

    @classmethod
    def fit(cls, starts: Any) -> TimeScale:
        """From the entities' first-event times (seconds; NaN for untimed ones)."""
        s = np.asarray(starts, np.float64)
        s = s[np.isfinite(s)]
        if not len(s):
            return cls(0.0, 1.0)
        return cls(float(s.min()), float(max(s.max() - s.min(), 1.0)))

    def __call__(self, abs_times: torch.Tensor) -> torch.Tensor:
        u = (abs_times.double() - self.origin) / self.span
        return torch.where(torch.isfinite(u), u, torch.zeros_like(u)).float()

    def to_dict(self) -> dict[str, float]:
        return {"origin": self.origin, "span": self.span}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimeScale:
        return cls(float(d["origin"]), float(d["span"]))


class NextEventNet(nn.Module):
    """The Event-JEPA model with a drift feature (scaled absolute time) added to its input tokens."""

    def __init__(self, jepa: EventJEPAModel, scale: TimeScale, drift: bool = True):
        super().__init__()
        self.jepa = jepa
        self.scale = scale
        self.use_drift = drift
        self.drift = nn.Linear(1, jepa.cfg.model.d_model)
        nn.init.zeros_(self.drift.weight)
        nn.init.zeros_(self.drift.bias)

    def states(self, bt: BatchTensors) -> torch.Tensor:
        """``[b, L, d]`` causal context states: position ``t`` sees events ``<= t`` only."""
        enc = self.jepa.context
        x = enc.embed(bt)
        if self.use_drift:
            x = x + self.drift(self.scale(bt.abs_times).unsqueeze(-1)) * bt.valid.unsqueeze(-1)
        return enc.encoder(x, bt.valid, causal=True).events

    def type_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``[..., V]`` type logits; ``<pad>`` and ``<unk>`` are never predicted."""
        assert self.jepa.heads is not None
        logits = self.jepa.heads.type_head(h)
        logits[..., :2] = float("-inf")
        return logits

    def gap_quantile(self, h: torch.Tensor, q: float = 0.5) -> torch.Tensor:
        """``[N]`` predicted gap (seconds) of states ``h [N, d]``: the mixture's ``q`` quantile (0.5: MAE-optimal)."""
        assert self.jepa.heads is not None
        return self.jepa.heads.gap.quantile(h, q)

    def supervised_loss(self, bt: BatchTensors, gap_weight: float, end_id: int | None, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Type CE over every (prefix, next) pair (END included); gap NLL over pairs not ending the case.

        ``weights``: ``[b]`` per-sequence loss weights (weighted means; all 1 when not given).
        """
        heads = self.jepa.heads
        assert heads is not None
        h = self.states(bt)
        pair = bt.valid[:, :-1] & bt.valid[:, 1:]
        w = (weights if weights is not None else torch.ones(pair.shape[0])).unsqueeze(1).expand_as(pair)[pair]
        src = h[:, :-1][pair]
        nxt = bt.type_ids[:, 1:][pair]
        keep = nxt > 1
        if keep.any():
            ce_all = F.cross_entropy(heads.type_head(src[keep]), nxt[keep], reduction="none")
            ce = (ce_all * w[keep]).sum() / w[keep].sum().clamp_min(1e-12)
        else:
            ce = src.sum() * 0
        total = ce
        parts = {"type": float(ce.detach())}
        timed = bt.has_time.unsqueeze(1).expand_as(pair)[pair]
        if end_id is not None:
            timed = timed & (nxt != end_id)
        if timed.any():
            gap = (bt.times[:, 1:] - bt.times[:, :-1])[pair]
            nll_all = heads.gap.nll(src[timed], gap[timed])
            nll = (nll_all * w[timed]).sum() / w[timed].sum().clamp_min(1e-12)
            total = total + gap_weight * nll
            parts["gap_nll"] = float(nll.detach())
        return total, parts


__all__ = ["NextEventNet", "TimeScale"]
