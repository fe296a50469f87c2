"""Block time masks for JEPA (the I-JEPA multi-block collator, along time).

Shape legend: ``b`` batch, ``L`` padded length, ``B`` blocks per sequence.

Each sequence of ``n`` valid events gets ``B`` contiguous blocks of ``ceil(m / B)`` events at
uniform random starts, ``m = round(mask_ratio * n)`` clamped to ``[1, n - 1]``; blocks may
overlap, so the masked fraction is at most ``mask_ratio`` (plus rounding). At least one event
stays visible. True = masked.
"""

from __future__ import annotations

import torch


def sample_block_mask(valid: torch.Tensor, mask_ratio: float, num_blocks: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[b, L]`` bool mask over valid positions (True = hidden from the context encoder)."""
    b, L = valid.shape
    dev = valid.device
    n = valid.sum(1)  # [b]
    m = torch.clamp(torch.round(n.float() * mask_ratio), min=1).long()
    m = torch.minimum(m, (n - 1).clamp_min(0))
    nb = torch.clamp(torch.minimum(m, torch.full_like(m, num_blocks)), min=1)
    blk = torch.div(m + nb - 1, nb, rounding_mode="floor")  # [b]
    u = torch.rand(b, num_blocks, generator=generator, device="cpu").to(dev)
    span = (n - blk + 1).clamp_min(1)
    starts = torch.floor(u * span.unsqueeze(1).float()).long()  # [b, B]
    used = torch.arange(num_blocks, device=dev).unsqueeze(0) < nb.unsqueeze(1)  # [b, B]
    pos = torch.arange(L, device=dev)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + blk.unsqueeze(1)).unsqueeze(-1))  # [b, B, L]
    mask = (inside & used.unsqueeze(-1)).any(1) & valid & (m > 0).unsqueeze(1)
    # keep at least one visible event
    full = mask.sum(1) >= n
    if full.any():
        first = torch.argmax(mask.int(), dim=1)
        mask[full, first[full]] = False
    return mask


__all__ = ["sample_block_mask"]
