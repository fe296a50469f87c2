"""Block time masks for JEPA (the I-JEPA multi-block collator, along time).

Shape legend: ``b`` batch, ``L`` padded length, ``B`` blocks per sequence.

Each sequence of ``n`` valid events gets ``B`` contiguous blocks of ``ceil(m / B)`` events at
uniform random starts, ``m = round(mask_ratio * n)`` clamped to ``[1, n - 1]``; blocks may
overlap, so the masked fraction is at most ``mask_ratio`` (plus rounding). At least one event
stays visible. True = masked.

Data-parallel training draws the masks of the *global* batch and gives each worker its rows
(``rows=(offset, total)``), so a batch is masked identically whatever the number of workers.
"""

from __future__ import annotations

import torch


def sample_block_mask(
    valid: torch.Tensor, mask_ratio: float, num_blocks: int, generator: torch.Generator | None = None, rows: tuple[int, int] | None = None
) -> torch.Tensor:
    """``[b, L]`` bool mask over valid positions (True = hidden from the context encoder).

    ``rows=(offset, total)``: ``valid`` holds rows ``offset .. offset + b`` of a global batch of
    ``total`` rows; the random draws are made for all ``total`` rows and sliced.
    """
    b, L = valid.shape
    dev = valid.device
    n = valid.sum(1)  # [b]
    m = torch.clamp(torch.round(n.float() * mask_ratio), min=1).long()
    m = torch.minimum(m, (n - 1).clamp_min(0))
    nb = torch.clamp(torch.minimum(m, torch.full_like(m, num_blocks)), min=1)
    blk = torch.div(m + nb - 1, nb, rounding_mode="floor")  # [b]
    if rows is None:
        u = torch.rand(b, num_blocks, generator=generator, device="cpu").to(dev)
    else:
        offset, total = rows
        if offset < 0 or offset + b > total:
            raise ValueError(f"mask rows {offset}..{offset + b} fall outside a global batch of {total}")
        u = torch.rand(total, num_blocks, generator=generator, device="cpu")[offset : offset + b].to(dev)
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
