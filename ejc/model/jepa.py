"""The JEPA module: context encoder, EMA target encoder, narrow predictor, next-event heads.

Shape legend: ``b`` batch, ``L`` padded length, ``d`` width, ``p`` predictor width,
``m`` masked events, ``N`` selected (source, target) pairs.

``loss, parts = model(batch)`` computes every enabled objective and returns the weighted sum
and a breakdown (floats) including the collapse monitors:

- **jepa**: the context encoder sees the sequence with block-masked events replaced by the mask
  token (time kept); the predictor maps its states to the target encoder's layer-normed states
  of the masked events; smooth-L1. Sequence level (``lambda_sequence``): an MLP maps the masked
  context's pooled vector to the target's layer-normed pooled vector (trains the pooling).
- **future**: the context encoder runs causally; from the state at ``t`` the heads predict event
  ``t + 1`` (type CE, modality CE, log-gap NLL, cosine error of its vector) and the target
  states at ``t + 1 .. t + k`` (smooth-L1).
- **monitors**: mean per-dimension std and effective rank (exp of the entropy of the normalised
  singular values) of target event states.

The target encoder is a deep copy updated by :meth:`update_target` after each optimiser step.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ejc.config import Config, ModelConfig
from ejc.model.attention import make_blocks
from ejc.model.encoder import BatchTensors, EncoderOutput, EventEncoder
from ejc.model.heads import NextEventHeads
from ejc.model.masks import sample_block_mask


class Predictor(nn.Module):
    """Narrow predictor over context states, with a learned query added at masked positions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        p = cfg.predictor_dim
        self.inp = nn.Linear(cfg.d_model, p)
        self.query = nn.Parameter(torch.zeros(p))
        nn.init.normal_(self.query, std=0.02)
        self.blocks = make_blocks(cfg.predictor_depth, p, cfg.num_heads, cfg.window, cfg.mlp_ratio, cfg.dropout)
        self.ln = nn.LayerNorm(p)
        self.out = nn.Linear(p, cfg.d_model)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        z = self.inp(h) + mask.unsqueeze(-1) * self.query
        for blk in self.blocks:
            z = blk(z, valid)
        return self.out(self.ln(z))


def effective_rank(x: torch.Tensor) -> float:
    """exp(entropy of normalised singular values) of ``[N, d]`` (centered); 1 = collapsed."""
    if x.shape[0] < 2:
        return float("nan")
    s = torch.linalg.svdvals((x - x.mean(0)).float())
    p = s / s.sum().clamp_min(1e-12)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


class EventJEPAModel(nn.Module):
    def __init__(self, cfg: Config, modality_dims: dict[str, int], num_types: int):
        super().__init__()
        self.cfg = cfg
        self.modality_dims = dict(modality_dims)
        self.num_types = num_types
        self.context = EventEncoder(cfg.model, modality_dims, num_types)
        self.target = copy.deepcopy(self.context)
        for p in self.target.parameters():
            p.requires_grad_(False)
        obj = cfg.objective
        self.predictor = Predictor(cfg.model) if obj.jepa else None
        d = cfg.model.d_model
        self.seq_predictor = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) if obj.jepa and obj.lambda_sequence > 0 else None
        self.heads = NextEventHeads(cfg.model.d_model, num_types, modality_dims, cfg.model.gap_mixture, obj.future_steps) if obj.future else None

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """``load_state_dict`` with a clear error when the checkpoint is of another architecture."""
        try:
            self.load_state_dict(state)
        except RuntimeError as e:
            from ejc.errors import CheckpointError

            first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
            raise CheckpointError(f"checkpoint does not fit this model (written by another ejc version or config?): {first}") from e

    # -- representations --------------------------------------------------------------------
    def encode(self, bt: BatchTensors, causal: bool = False, which: str | None = None) -> EncoderOutput:
        """Representations from ``which`` encoder (default ``model.readout``)."""
        enc = self.target if (which or self.cfg.model.readout) == "target" else self.context
        return enc(bt, causal=causal)

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        tgt = [p for p in self.target.parameters()]
        src = [p.detach() for p in self.context.parameters()]
        torch._foreach_mul_(tgt, momentum)
        torch._foreach_add_(tgt, src, alpha=1.0 - momentum)

    # -- training objective -----------------------------------------------------------------
    def forward(self, bt: BatchTensors, generator: torch.Generator | None = None, mask_rows: tuple[int, int] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss and its parts; ``mask_rows`` as in :func:`sample_block_mask` (``rows``)."""
        obj = self.cfg.objective
        valid = bt.valid
        with torch.no_grad():
            tgt = self.target(bt)
            tgt_norm = F.layer_norm(tgt.events, tgt.events.shape[-1:])
        parts: dict[str, float] = {}
        total = torch.zeros((), device=valid.device)

        if obj.jepa:
            mask = sample_block_mask(valid, obj.mask_ratio, obj.num_mask_blocks, generator, rows=mask_rows)
            ctx = self.context(bt, mask=mask)
            assert self.predictor is not None
            pred = self.predictor(ctx.events, mask, valid)
            jepa = F.smooth_l1_loss(pred[mask], tgt_norm[mask]) if mask.any() else pred.sum() * 0
            total = total + obj.lambda_jepa * jepa
            parts["jepa"] = float(jepa.detach())
            if self.seq_predictor is not None:
                seq_tgt = F.layer_norm(tgt.pooled, tgt.pooled.shape[-1:])
                seq_loss = F.smooth_l1_loss(self.seq_predictor(ctx.pooled), seq_tgt)
                total = total + obj.lambda_sequence * seq_loss
                parts["jepa_sequence"] = float(seq_loss.detach())
            parts["mask_frac"] = float(mask.sum() / valid.sum().clamp_min(1))
            if obj.variance_weight > 0:
                std = ctx.events[valid].std(0)
                var_pen = F.relu(1 - std).mean()
                total = total + obj.variance_weight * var_pen
                parts["var_penalty"] = float(var_pen.detach())

        if obj.future:
            assert self.heads is not None
            total = total + self._future_losses(bt, tgt_norm, parts)

        with torch.no_grad():
            rows = tgt.events[valid]
            if rows.shape[0] > 1024:
                rows = rows[torch.linspace(0, rows.shape[0] - 1, 1024, device=rows.device).long()]
            parts["target_std"] = float(F.layer_norm(rows, rows.shape[-1:]).std(0).mean()) if rows.shape[0] > 1 else float("nan")
            parts["pooled_std"] = float(tgt.pooled.std(0).mean()) if tgt.pooled.shape[0] > 1 else float("nan")
            parts["eff_rank"] = effective_rank(rows)
        parts["loss"] = float(total.detach())
        return total, parts

    def _future_losses(self, bt: BatchTensors, tgt_norm: torch.Tensor, parts: dict[str, float]) -> torch.Tensor:
        obj = self.cfg.objective
        heads = self.heads
        assert heads is not None
        b, L = bt.shape
        hc = self.context(bt, causal=True).events  # [b, L, d]
        valid = bt.valid
        pair = valid[:, :-1] & valid[:, 1:]  # source t -> target t+1
        src = hc[:, :-1][pair]  # [N, d]
        total = torch.zeros((), device=hc.device)

        nxt_type = bt.type_ids[:, 1:][pair]
        if self.cfg.model.use_types:
            keep = nxt_type > 0
            if keep.any():
                ce = F.cross_entropy(heads.type_head(src[keep]), nxt_type[keep])
                total = total + obj.lambda_type * ce
                parts["type"] = float(ce.detach())
        if len(heads.modalities) > 1:
            mce = F.cross_entropy(heads.modality_head(src), bt.modality_ids[:, 1:][pair])
            total = total + obj.lambda_modality * mce
            parts["modality"] = float(mce.detach())
        timed = bt.has_time.unsqueeze(1).expand(b, L - 1)[pair]
        if timed.any():
            gap = (bt.times[:, 1:] - bt.times[:, :-1])[pair]
            nll = heads.gap.nll(src[timed], gap[timed]).mean()
            total = total + obj.lambda_gap * nll
            parts["gap_nll"] = float(nll.detach())
        # next vector: rows whose flat position p = i*L + j (j >= 1) are predicted from i*L + j - 1
        cos_terms = []
        flat_h = hc.reshape(b * L, -1)
        for m, vec in bt.vectors.items():
            idx = bt.vector_index[m]
            ok = (idx % L) > 0
            if not ok.any():
                continue
            pred = heads.predict_vector(m, flat_h[idx[ok] - 1], bt.type_ids.reshape(-1)[idx[ok]])
            cos_terms.append(1 - F.cosine_similarity(pred, vec[ok], dim=-1))
        if cos_terms:
            emb = torch.cat(cos_terms).mean()
            total = total + obj.lambda_embedding * emb
            parts["next_embedding"] = float(emb.detach())
        fs_terms = []
        for delta, head in enumerate(heads.future, start=1):
            if L <= delta:
                break
            ok = valid[:, :-delta] & valid[:, delta:]
            if ok.any():
                fs_terms.append(F.smooth_l1_loss(head(hc[:, :-delta][ok]), tgt_norm[:, delta:][ok]))
        if fs_terms:
            fs = torch.stack(fs_terms).mean()
            total = total + obj.lambda_future_state * fs
            parts["future_state"] = float(fs.detach())
        return total


__all__ = ["EventJEPAModel", "Predictor", "effective_rank"]
