"""The event encoder: input tokens -> hierarchical (or full) attention -> event, level, pooled states.

Shape legend: ``b`` batch, ``L`` padded length (a multiple of ``2**(num_levels-1)``), ``d`` width,
``L_i = L / 2**i`` positions at level ``i``, ``M`` modalities, ``V`` type vocabulary.

Input token of an event = projection of its vector (per-modality ``Linear(d_m, d)``, zero when it
has none) + learned type embedding + learned modality token + time encoding + index encoding.
A masked event keeps modality, time and index but its content (vector + type) is replaced by a
learned mask token.

Hierarchical encoder: level 0 runs windowed blocks over events; level ``i`` pools level ``i-1``
by pairs (resolution ``2**i``) and runs its own windowed blocks; each level is upsampled back to
events, projected and summed (cross-level mixing), then one more windowed block mixes the result.
The sequence vector is attention-pooled (one learned query) over the coarsest level.
Cost per level is ``O(L_i * window)``, so the whole encoder is linear in ``L``.

Causal mode (next-event objective and prediction): attention only looks back, and level ``i``
reaches event ``t`` only from pooled windows that ended at or before ``t`` (upsample, then shift
right by ``2**i - 1``). So ``events[:, t]`` depends on events ``<= t`` only (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ejc.config import ModelConfig
from ejc.model.attention import Block, make_blocks
from ejc.model.time_encoding import IrregularTimeEncoding, index_encoding


@dataclass
class EncoderOutput:
    events: torch.Tensor  # [b, L, d]
    levels: list[torch.Tensor]  # level i: [b, L_i, d]
    pooled: torch.Tensor  # [b, d]
    valid: torch.Tensor  # [b, L]


@dataclass
class BatchTensors:
    """A :class:`~ejc.data.sequence.PaddedBatch` on a device."""

    vectors: dict[str, torch.Tensor]  # m -> [k_m, d_m]
    vector_index: dict[str, torch.Tensor]  # m -> [k_m] flat positions in [b * L]
    modality_ids: torch.Tensor  # [b, L]
    type_ids: torch.Tensor  # [b, L]
    times: torch.Tensor  # [b, L] float32 seconds since start (positions if untimed)
    abs_times: torch.Tensor  # [b, L] float64 epoch seconds (NaN if untimed)
    has_time: torch.Tensor  # [b]
    valid: torch.Tensor  # [b, L]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.valid.shape)  # type: ignore[return-value]


def to_tensors(batch, device: torch.device | str = "cpu") -> BatchTensors:  # noqa: ANN001
    dev = torch.device(device)
    return BatchTensors(
        vectors={m: torch.from_numpy(v).to(dev) for m, v in batch.vectors.items()},
        vector_index={m: torch.from_numpy(v).to(dev) for m, v in batch.vector_index.items()},
        modality_ids=torch.from_numpy(batch.modality_ids).to(dev),
        type_ids=torch.from_numpy(batch.type_ids).to(dev),
        times=torch.from_numpy(batch.times).float().to(dev),
        abs_times=torch.from_numpy(batch.abs_times).to(dev),
        has_time=torch.from_numpy(batch.has_time).to(dev),
        valid=torch.from_numpy(batch.valid).to(dev),
    )


class InputEmbedding(nn.Module):
    def __init__(self, cfg: ModelConfig, modality_dims: dict[str, int], num_types: int):
        super().__init__()
        d = cfg.d_model
        self.d = d
        self.modalities = list(modality_dims)
        self.proj = nn.ModuleDict({_key(m): nn.Linear(dim, d) for m, dim in modality_dims.items()})
        self.modality_tok = nn.Embedding(max(1, len(self.modalities)), d)
        self.type_emb = nn.Embedding(num_types, d, padding_idx=0) if cfg.use_types else None
        self.time = IrregularTimeEncoding(d, cfg.num_frequencies) if cfg.time_encoding else None
        self.mask_token = nn.Parameter(torch.zeros(d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.ln = nn.LayerNorm(d)

    def forward(self, bt: BatchTensors, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[b, L, d]`` tokens; ``mask`` ``[b, L]`` True where the content is hidden."""
        b, L = bt.shape
        content = torch.zeros(b * L, self.d, device=bt.valid.device)
        for m, vec in bt.vectors.items():
            if m in self.proj_keys:
                content = content.index_add(0, bt.vector_index[m], self.proj[_key(m)](vec).to(content.dtype))
        content = content.view(b, L, self.d)
        if self.type_emb is not None:
            content = content + self.type_emb(bt.type_ids)
        if mask is not None:
            content = torch.where(mask.unsqueeze(-1), self.mask_token.expand(b, L, -1), content)
        x = content + self.modality_tok(bt.modality_ids) + index_encoding(L, self.d, bt.valid.device)
        if self.time is not None:
            x = x + self.time(bt.times, bt.abs_times, bt.has_time, bt.valid)
        return self.ln(x) * bt.valid.unsqueeze(-1)

    @property
    def proj_keys(self) -> set[str]:
        return set(self.modalities)


def _key(m: str) -> str:
    # ModuleDict keys cannot contain dots
    return "m_" + m.replace(".", "_")


class AttentionPool(nn.Module):
    """Attention pooling with one learned query over valid positions: ``[b, L, d] -> [b, d]``."""

    def __init__(self, d: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(d))
        self.key = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        scores = (self.key(x) @ self.query) / x.shape[-1] ** 0.5  # [b, L]
        scores = scores.masked_fill(~valid, float("-inf"))
        w = torch.softmax(scores, -1).nan_to_num(0.0)
        return self.ln(torch.einsum("bl,bld->bd", w, x))


def pool_pairs(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of valid pairs: ``[b, L, d] -> [b, L/2, d]`` (``L`` even)."""
    b, L, d = x.shape
    v = valid.view(b, L // 2, 2).to(x.dtype)
    s = (x.view(b, L // 2, 2, d) * v.unsqueeze(-1)).sum(2)
    c = v.sum(2, keepdim=True)
    return s / c.clamp_min(1), c.squeeze(-1) > 0


def upsample(x: torch.Tensor, factor: int, L: int, causal: bool) -> torch.Tensor:
    """``[b, L/factor, d] -> [b, L, d]``; causal shifts right by ``factor - 1`` (see module doc)."""
    up = x.repeat_interleave(factor, dim=1)[:, :L]
    if causal and factor > 1:
        up = F.pad(up, (0, 0, factor - 1, 0))[:, :L]
    return up


class HierarchicalEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.num_levels = cfg.num_levels
        self.levels = nn.ModuleList(make_blocks(cfg.depth_per_level, d, cfg.num_heads, cfg.window, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.num_levels))
        self.up_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(cfg.num_levels - 1))
        self.mix = Block(d, cfg.num_heads, cfg.window, shift=False, mlp_ratio=cfg.mlp_ratio, dropout=cfg.dropout)
        self.ln = nn.LayerNorm(d)
        self.top_ln = nn.LayerNorm(d)
        self.pool = AttentionPool(d)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> EncoderOutput:
        b, L, d = x.shape
        assert L % (2 ** (self.num_levels - 1)) == 0, "pad L to a multiple of 2**(num_levels-1)"
        outs, h, v = [], x, valid
        for i, blocks in enumerate(self.levels):
            if i > 0:
                h, v = pool_pairs(h, v)
            for blk in blocks:
                h = blk(h, v, causal)
            outs.append(h)
        ev = outs[0]
        for i in range(1, self.num_levels):
            ev = ev + self.up_proj[i - 1](upsample(outs[i], 2**i, L, causal))
        ev = self.mix(ev * valid.unsqueeze(-1), valid, causal)
        ev = self.ln(ev) * valid.unsqueeze(-1)
        # sequence vector: attention pooling over the coarsest level (events when causal: the last one)
        pooled = _last_valid(ev, valid) if causal else self.pool(self.top_ln(outs[-1]), v)
        return EncoderOutput(ev, outs, pooled, valid)


class FullAttentionEncoder(nn.Module):
    """The quadratic baseline: ``num_levels * depth_per_level`` full-attention blocks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.blocks = make_blocks(cfg.num_levels * cfg.depth_per_level, d, cfg.num_heads, None, cfg.mlp_ratio, cfg.dropout)
        self.ln = nn.LayerNorm(d)
        self.pool = AttentionPool(d)

    def forward(self, x: torch.Tensor, valid: torch.Tensor, causal: bool = False) -> EncoderOutput:
        h = x
        for blk in self.blocks:
            h = blk(h, valid, causal)
        ev = self.ln(h) * valid.unsqueeze(-1)
        pooled = _last_valid(ev, valid) if causal else self.pool(ev, valid)
        return EncoderOutput(ev, [ev], pooled, valid)


def _last_valid(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    last = (valid.sum(1) - 1).clamp_min(0)
    return x[torch.arange(x.shape[0], device=x.device), last]


class EventEncoder(nn.Module):
    """Input embedding + encoder: what the context and (EMA) target encoders both are."""

    def __init__(self, cfg: ModelConfig, modality_dims: dict[str, int], num_types: int):
        super().__init__()
        self.embed = InputEmbedding(cfg, modality_dims, num_types)
        self.encoder = HierarchicalEncoder(cfg) if cfg.encoder == "hierarchical" else FullAttentionEncoder(cfg)

    def forward(self, bt: BatchTensors, mask: torch.Tensor | None = None, causal: bool = False) -> EncoderOutput:
        return self.encoder(self.embed(bt, mask), bt.valid, causal)


__all__ = ["AttentionPool", "BatchTensors", "EncoderOutput", "EventEncoder", "FullAttentionEncoder", "HierarchicalEncoder", "InputEmbedding", "pool_pairs", "to_tensors", "upsample"]
