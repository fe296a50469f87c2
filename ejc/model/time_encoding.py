"""Irregular time encoding: what happened *when*, added to every event token.

Shape legend: ``b`` batch, ``L`` padded length, ``d`` model width, ``F`` learned frequencies.

Features per event (all finite, zero on padding):
- log-scaled gap since the previous event and log time since the sequence start;
- local density: log of events per second over the previous ``k`` events (causal);
- learned periodic features ``sin/cos(2 pi t / P_f)`` with periods initialised log-uniformly
  from one second to four weeks (relative time, float32-safe);
- calendar phase (hour of day, day of week) from absolute timestamps, computed in float64;
- a flag telling whether the sequence has real timestamps (else times are positions).
An MLP maps them to ``d``. A fixed sinusoidal encoding of the event *index* is always added
by the encoder, so order is known even with the time encoding switched off.
"""

from __future__ import annotations

import math

import torch
from torch import nn

FOUR_WEEKS = 28 * 86400.0


def gaps_from_times(times: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``[b, L]`` seconds since the previous event, 0 for the first event and padding."""
    gap = torch.zeros_like(times)
    gap[:, 1:] = (times[:, 1:] - times[:, :-1]).clamp_min(0)
    return gap * valid


def local_density(times: torch.Tensor, valid: torch.Tensor, k: int = 4) -> torch.Tensor:
    """``[b, L]`` log(1 + events per second) over the previous ``k`` events (causal: no look-ahead)."""
    b, L = times.shape
    idx = torch.arange(L, device=times.device).expand(b, L)
    lo = (idx - k).clamp_min(0)
    t_lo = times.gather(1, lo)
    count = (idx - lo).to(times.dtype)
    # clamp: on padding (time 0 after later times) the span is negative, and log1p of a ratio
    # below -1 is NaN, which `* valid` would not remove
    return torch.log1p(count / ((times - t_lo).clamp_min(0) + 1.0)) * valid


def calendar_features(abs_times: torch.Tensor) -> torch.Tensor:
    """``[b, L, 4]`` sin/cos of hour-of-day and day-of-week phase; zeros where NaN."""
    t = abs_times.double()
    ok = torch.isfinite(t)
    t = torch.where(ok, t, torch.zeros_like(t))
    day = torch.remainder(t, 86400.0) / 86400.0
    week = torch.remainder(t + 3 * 86400.0, 7 * 86400.0) / (7 * 86400.0)  # epoch day 0 was a Thursday
    feats = torch.stack([torch.sin(2 * math.pi * day), torch.cos(2 * math.pi * day), torch.sin(2 * math.pi * week), torch.cos(2 * math.pi * week)], -1)
    return (feats * ok.unsqueeze(-1)).float()


def index_encoding(L: int, d: int, device: torch.device) -> torch.Tensor:
    """``[L, d]`` fixed sinusoidal encoding of event positions."""
    pos = torch.arange(L, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(L, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: pe[:, 1::2].shape[1]])
    return pe


class IrregularTimeEncoding(nn.Module):
    """Maps ``(times, abs_times, has_time, valid)`` to ``[b, L, d]`` time tokens."""

    def __init__(self, d: int, num_frequencies: int = 16, min_period: float = 1.0, max_period: float = FOUR_WEEKS, density_k: int = 4):
        super().__init__()
        self.density_k = density_k
        self.log_periods = nn.Parameter(torch.linspace(math.log(min_period), math.log(max_period), num_frequencies))
        n_in = 3 + 2 * num_frequencies + 4 + 1
        self.mlp = nn.Sequential(nn.Linear(n_in, d), nn.GELU(), nn.Linear(d, d))

    def features(self, times: torch.Tensor, abs_times: torch.Tensor, has_time: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        v = valid.to(times.dtype)
        gap = gaps_from_times(times, v)
        since = torch.log1p(times.clamp_min(0)) * v
        dens = local_density(times, v, self.density_k)
        phase = 2 * math.pi * times.unsqueeze(-1) / torch.exp(self.log_periods)  # [b, L, F]
        periodic = torch.cat([torch.sin(phase), torch.cos(phase)], -1) * v.unsqueeze(-1)
        cal = calendar_features(abs_times) * v.unsqueeze(-1)
        flag = has_time.to(times.dtype)[:, None, None].expand(-1, times.shape[1], 1) * v.unsqueeze(-1)
        return torch.cat([torch.log1p(gap).unsqueeze(-1), since.unsqueeze(-1), dens.unsqueeze(-1), periodic, cal, flag], -1)

    def forward(self, times: torch.Tensor, abs_times: torch.Tensor, has_time: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(times, abs_times, has_time, valid)) * valid.unsqueeze(-1)


__all__ = ["IrregularTimeEncoding", "calendar_features", "gaps_from_times", "index_encoding", "local_density"]
