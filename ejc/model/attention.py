"""Transformer blocks with windowed (local) or full attention, optionally causal.

Shape legend: ``b`` batch, ``L`` length, ``d`` width, ``h`` heads, ``w`` window, ``nw`` windows.

Windowed attention splits the (padded) sequence into windows of ``w`` positions and attends
inside each window, so cost is ``O(L * w)``; every other block shifts the windows by ``w // 2``
(Swin-style) so information crosses window borders. A pair ``(q, k)`` may attend iff both lie in
the same window, ``k`` is valid, and, when causal, ``pos_k <= pos_q``. A position may always
attend to itself (keeps padding finite).

The shift is a front padding of ``w // 2`` invalid positions (the first window holds events
``0 .. w/2 - 1``), not a roll: no window wraps around, so the mask is only "key valid (and not
after the query)" and is built once per call as an additive ``[b * nw, 1, w, w]`` tensor of the
query's dtype. Windows are folded into the batch (``[b * nw, h, w, dh]``): 4-D inputs let
``scaled_dot_product_attention`` take its fused kernels (flash on CPU, memory-efficient on CUDA)
instead of the unfused math path (``benchmarks/inference_throughput.py``).
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

    def layout(self, L: int) -> tuple[int, int]:
        """``(w, front)``: the window length and the front padding (the shift) for length ``L``."""
        w = L if self.window is None or self.window >= L else self.window
        return w, (w // 2 if (self.shift and w < L) else 0)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False, layout: tuple[int, int] | None = None) -> torch.Tensor:
        """``layout``: ``(w, front)`` of the whole sequence when ``x`` is a window-aligned chunk of it."""
        b, L, d = x.shape
        w, front = layout or self.layout(L)
        back = (-(L + front)) % w
        okk = valid
        if front or back:
            x = F.pad(x, (0, 0, front, back))
            okk = F.pad(valid, (front, back), value=False)
        Lp = L + front + back
        nw = Lp // w
        qkv = self.qkv(x).view(b * nw, w, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)  # 3, b*nw, h, w, dh
        q, k, v = qkv[0], qkv[1], qkv[2]
        allowed = okk.reshape(b * nw, 1, w).expand(b * nw, w, w)  # [b*nw, q, k]: key valid
        if causal:
            allowed = allowed & torch.ones(w, w, dtype=torch.bool, device=x.device).tril()
        allowed = allowed | torch.eye(w, dtype=torch.bool, device=x.device)
        mask = torch.zeros(allowed.shape, dtype=q.dtype, device=x.device).masked_fill_(~allowed, float("-inf"))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None], dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, Lp, d)  # b*nw, h, w, dh -> b, Lp, d
        return self.proj(out[:, front : front + L])


# rows (batch x positions) per chunk when a block runs without autograd (see Block.forward)
INFERENCE_CHUNK = 4096


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))``, ``x + mlp(ln(x))``; padding stays zero.

    Without autograd (inference), a batch of more than ``INFERENCE_CHUNK`` rows (batch x positions) runs in
    chunks cut at window borders: attention never crosses a window, every other operation is
    per position, so the result is the same, and each chunk's activations stay in the CPU's
    cache instead of streaming ``L * 4d`` floats through memory per layer. CPU only: on an H200
    the chunked loop ran at 0.55x the whole-sequence block (launch-bound; RESULTS, "Inference
    throughput").
    """

    def __init__(self, d: int, num_heads: int, window: int | None = None, shift: bool = False, mlp_ratio: float = 4.0, dropout: float = 0.0):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = Attention(d, num_heads, window, shift, dropout)
        self.ln2 = nn.LayerNorm(d)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> torch.Tensor:
        b, L = x.shape[:2]
        if torch.is_grad_enabled() or x.device.type != "cpu" or b * L <= INFERENCE_CHUNK:
            return self._forward(x, valid, causal, None)
        w, front = self.attn.layout(L)
        step = max(1, INFERENCE_CHUNK // (b * w)) * w  # positions per chunk: about INFERENCE_CHUNK rows
        if step >= L:
            return self._forward(x, valid, causal, None)
        cuts = [0, *range(step - front, L, step), L] if front else [*range(0, L, step), L]
        parts = []
        for a, z in zip(cuts[:-1], cuts[1:]):
            if z > a:
                parts.append(self._forward(x[:, a:z], valid[:, a:z], causal, (w, front if a == 0 else 0)))
        return torch.cat(parts, 1)

    def _forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool, layout: tuple[int, int] | None) -> torch.Tensor:
        m = valid.unsqueeze(-1).to(x.dtype)
        x = x + self.attn(self.ln1(x), valid, causal, layout) * m
        x = x + self.mlp(self.ln2(x)) * m
        return x


def make_blocks(depth: int, d: int, num_heads: int, window: int | None, mlp_ratio: float, dropout: float) -> nn.ModuleList:
    return nn.ModuleList(Block(d, num_heads, window, shift=bool(i % 2), mlp_ratio=mlp_ratio, dropout=dropout) for i in range(depth))


__all__ = ["Attention", "Block", "make_blocks"]
