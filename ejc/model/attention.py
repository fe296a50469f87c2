"""Transformer blocks with windowed (local) or full attention, optionally causal.

Shape legend: ``b`` batch, ``L`` length, ``d`` width, ``h`` heads, ``w`` window, ``nw`` windows.

Windowed attention splits the (padded) sequence into windows of ``w`` positions and attends
inside each window, so cost is ``O(L * w)``; every other block shifts the windows by ``w // 2``
(Swin-style) so information crosses window borders. A pair ``(q, k)`` may attend iff both lie in
the same window, ``|pos_q - pos_k| < w`` (no wrap-around after the shift), ``k`` is valid, and,
when causal, ``pos_k <= pos_q``. A position may always attend to itself (keeps padding finite).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    def __init__(self, d: int, num_heads: int, window: int | None, shift: bool, dropout: float = 0.0):
        super().__init__()
        self.h = num_heads
        self.window = window
        self.shift = shift
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, L, d = x.shape
        w = L if self.window is None or self.window >= L else self.window
        pad = (-L) % w
        pos = torch.arange(L + pad, device=x.device)
        okk = F.pad(valid, (0, pad), value=False)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        s = w // 2 if (self.shift and w < L + pad) else 0
        if s:
            x, pos, okk = torch.roll(x, -s, 1), torch.roll(pos, -s, 0), torch.roll(okk, -s, 1)
        Lp = L + pad
        nw = Lp // w
        qkv = self.qkv(x).view(b, nw, w, 3, self.h, d // self.h).permute(3, 0, 1, 4, 2, 5)  # 3, b, nw, h, w, dh
        q, k, v = qkv[0], qkv[1], qkv[2]
        pw = pos.view(nw, w)
        allowed = (pw[:, :, None] - pw[:, None, :]).abs() < w  # [nw, w, w]
        if causal:
            allowed = allowed & (pw[:, None, :] <= pw[:, :, None])
        mask = allowed[None] & okk.view(b, nw, 1, w)  # [b, nw, w, w]
        mask = mask | torch.eye(w, dtype=torch.bool, device=x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, :, None], dropout_p=self.dropout if self.training else 0.0)
        out = out.permute(0, 1, 3, 2, 4).reshape(b, Lp, d)  # b, nw, w, h, dh -> b, Lp, d
        if s:
            out = torch.roll(out, s, 1)
        return self.proj(out[:, :L])


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``; padding stays zero."""

    def __init__(self, d: int, num_heads: int, window: int | None = None, shift: bool = False, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, num_heads, window, shift, dropout)
        self.ln2 = nn.LayerNorm(d)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> torch.Tensor:
        m = valid.unsqueeze(-1).to(x.dtype)
        x = x + self.attn(self.ln1(x), valid, causal) * m
        x = x + self.mlp(self.ln2(x)) * m
        return x


def make_blocks(depth: int, d: int, num_heads: int, window: int | None, mlp_ratio: float, dropout: float) -> nn.ModuleList:
    return nn.ModuleList(Block(d, num_heads, window, shift=bool(i % 2), mlp_ratio=mlp_ratio, dropout=dropout) for i in range(depth))


__all__ = ["Attention", "Block", "make_blocks"]
