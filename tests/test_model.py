"""Shapes, gradients, causality and masks of the Event-JEPA network, for every config combination."""

import itertools

import numpy as np
import pytest
import torch

from ejc.config import load_config
from ejc.data.sequence import collate
from ejc.model.encoder import pool_pairs, to_tensors, upsample
from ejc.model.heads import LogNormalMixture
from ejc.model.jepa import EventJEPAModel, effective_rank
from ejc.model.masks import sample_block_mask
from ejc.model.time_encoding import calendar_features, local_density

from helpers import random_sequences

MODS = {"a": 8, "b": 4}


def _types(ts):
    return np.array([2 + int(t[1:]) for t in ts])


def _batch(cfg, seqs):
    pad = 2 ** (cfg.model.num_levels - 1) if cfg.model.encoder == "hierarchical" else 1
    return to_tensors(collate(seqs, list(MODS), _types, pad_to_multiple=pad))


COMBOS = [c for c in itertools.product([True, False], [True, False], ["hierarchical", "full"], [True, False]) if c[0] or c[1]]


@pytest.mark.parametrize("jepa,future,encoder,time_enc", COMBOS)
def test_every_objective_combination_trains(jepa, future, encoder, time_enc):
    cfg = load_config("tiny", [f"objective.jepa={jepa}".lower(), f"objective.future={future}".lower(), f"model.encoder={encoder}", f"model.time_encoding={time_enc}".lower()])
    torch.manual_seed(0)
    model = EventJEPAModel(cfg, MODS, num_types=8)
    bt = _batch(cfg, random_sequences(3, two_modalities=True, min_len=5, max_len=30))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(8):
        loss, parts = model(bt, gen.manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses  # the same batch is being fitted
    assert ("jepa" in parts) == jepa
    assert ("type" in parts) == future and ("gap_nll" in parts) == future and ("future_state" in parts) == future
    assert parts["eff_rank"] > 2.0
    # the EMA target has no gradients and moves only through update_target
    assert all(p.grad is None for p in model.target.parameters())
    before = [p.clone() for p in model.target.parameters()]
    model.update_target(0.5)
    moved = sum(float((a - b).abs().sum()) for a, b in zip(model.target.parameters(), before))
    assert moved > 0


@pytest.mark.parametrize("encoder,levels", [("hierarchical", 3), ("hierarchical", 1), ("full", 2)])
def test_causal_encoding_ignores_the_future(encoder, levels):
    cfg = load_config("tiny", [f"model.encoder={encoder}", f"model.num_levels={levels}", "model.window=4"])
    torch.manual_seed(0)
    model = EventJEPAModel(cfg, MODS, 8).eval()
    seqs = random_sequences(1, two_modalities=True, min_len=40, max_len=41)
    bt = _batch(cfg, seqs)
    ref = model.encode(bt, causal=True, which="context").events
    cut = 21
    for m in bt.vectors:
        later = (bt.vector_index[m] > cut).float()[:, None]
        bt.vectors[m] = bt.vectors[m] + 5 * later
    bt.type_ids[0, cut + 1 :] = 3
    bt.times[0, cut + 1 :] += 1000.0
    out = model.encode(bt, causal=True, which="context").events
    assert torch.allclose(ref[0, : cut + 1], out[0, : cut + 1], atol=1e-5)
    assert (ref[0, cut + 1 : 40] - out[0, cut + 1 : 40]).abs().max() > 1e-2
    # the bidirectional encoder does see the future
    bi_ref = model.encode(_batch(cfg, seqs), which="context").events
    assert (bi_ref[0, :cut] - model.encode(bt, which="context").events[0, :cut]).abs().max() > 1e-3


def test_hierarchy_levels_have_halving_resolution_and_padding_does_not_leak():
    cfg = load_config("tiny", ["model.num_levels=3"])
    torch.manual_seed(0)
    model = EventJEPAModel(cfg, MODS, 8).eval()
    seqs = random_sequences(2, two_modalities=True, min_len=13, max_len=30)
    out = model.encode(_batch(cfg, seqs))
    L = out.events.shape[1]
    assert [lv.shape[1] for lv in out.levels] == [L, L // 2, L // 4]
    # encoding a sequence alone equals encoding it padded in a batch with a longer one
    short = min(seqs, key=len)
    alone = model.encode(_batch(cfg, [short]))
    together = model.encode(_batch(cfg, seqs))
    i = seqs.index(short)
    n = len(short)
    assert torch.allclose(alone.events[0, :n], together.events[i, :n], atol=1e-4)
    assert torch.allclose(alone.pooled[0], together.pooled[i], atol=1e-4)


def test_block_masks_cover_the_ratio_in_contiguous_blocks():
    valid = torch.zeros(64, 100, dtype=torch.bool)
    lengths = torch.randint(2, 101, (64,), generator=torch.Generator().manual_seed(0))
    for i, n in enumerate(lengths):
        valid[i, :n] = True
    mask = sample_block_mask(valid, 0.5, 4, torch.Generator().manual_seed(1))
    assert not (mask & ~valid).any()
    frac = mask.sum(1).float() / lengths.float()
    assert (mask.sum(1) >= 1).all() and (mask.sum(1) < lengths).all()  # something hidden, something visible
    assert 0.3 < float(frac.mean()) <= 0.56
    runs = (mask[:, 1:] & ~mask[:, :-1]).sum(1) + mask[:, 0].long()
    assert (runs <= 4).all()  # at most num_blocks contiguous runs
    again = sample_block_mask(valid, 0.5, 4, torch.Generator().manual_seed(1))
    assert torch.equal(mask, again)


def test_pool_and_causal_upsample():
    x = torch.arange(8.0).view(1, 8, 1)
    valid = torch.tensor([[True] * 7 + [False]])
    pooled, pv = pool_pairs(x, valid)
    assert pooled.flatten().tolist() == [0.5, 2.5, 4.5, 6.0]
    assert pv.tolist() == [[True] * 4]
    up = upsample(pooled, 2, 8, causal=True).flatten().tolist()
    # event t may only see pooled windows that ended at or before t
    assert up == [0.0, 0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.0]
    assert upsample(pooled, 2, 8, causal=False).flatten().tolist() == [0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.0, 6.0]


def test_time_features():
    # 2012-04-03 16:55:38 UTC (a Tuesday)
    t = torch.tensor([[1333472138.0]], dtype=torch.float64)
    f = calendar_features(t)[0, 0]
    day_phase = (16 * 3600 + 55 * 60 + 38) / 86400
    assert f[0].item() == pytest.approx(np.sin(2 * np.pi * day_phase), abs=1e-5)
    assert f[1].item() == pytest.approx(np.cos(2 * np.pi * day_phase), abs=1e-5)
    week_phase = ((1333472138 + 3 * 86400) % (7 * 86400)) / (7 * 86400)
    assert week_phase == pytest.approx((1 + day_phase) / 7)  # Monday 00:00 is phase 0, Tuesday is day 1
    assert torch.equal(calendar_features(torch.tensor([[float("nan")]], dtype=torch.float64)), torch.zeros(1, 1, 4))
    times = torch.tensor([[0.0, 1.0, 2.0, 3.0, 100.0, 200.0, 300.0, 400.0]])
    dens = local_density(times, torch.ones_like(times), k=1)
    assert dens[0, 2] > dens[0, 5]  # a dense stretch scores higher than a sparse one
    assert dens[0, 0] == 0  # no previous event
    assert dens[0, 3] == pytest.approx(np.log1p(1 / 2.0))  # one event in 1 s (+1 s smoothing)
    later = times.clone()
    later[0, 5:] += 1000
    assert torch.equal(local_density(later, torch.ones_like(times), k=2)[0, :5], local_density(times, torch.ones_like(times), k=2)[0, :5])


def test_lognormal_mixture_median_and_nll():
    torch.manual_seed(0)
    head = LogNormalMixture(4, 1)
    with torch.no_grad():
        head.out.weight.zero_()
        head.out.bias.copy_(torch.tensor([0.0, np.log(60.0), np.log(0.5)]))  # logits, mu = log 60 s, sigma = 0.5
    h = torch.zeros(2, 4)
    median = head.quantile(h, 0.5)
    assert median[0].item() == pytest.approx(60.0 - 1e-3, rel=1e-3)
    nll = head.nll(h, torch.tensor([60.0, 6000.0]))
    assert nll[1] > nll[0] + 5
    s = head.sample(torch.zeros(4000, 4), 1.0, torch.Generator().manual_seed(0))
    assert float(s.median()) == pytest.approx(60.0, rel=0.1)


def test_effective_rank():
    g = torch.Generator().manual_seed(0)
    assert effective_rank(torch.randn(500, 16, generator=g)) > 14
    collapsed = torch.randn(500, 1, generator=g) * torch.ones(1, 16)
    assert effective_rank(collapsed) < 1.5


def _reference_attention(att, x, valid, causal):
    """The documented rule, pair by pair: same window (after the shift), key valid, not after the
    query when causal, and always itself."""
    b, L, d = x.shape
    w, front = att.layout(L)
    h, dh = att.h, d // att.h
    q, k, v = att.qkv(x).view(b, L, 3, h, dh).unbind(2)
    win = (torch.arange(L) + front) // w
    pos = torch.arange(L)
    allowed = (win[:, None] == win[None, :])[None] & valid[:, None, :]
    if causal:
        allowed = allowed & (pos[None, :] <= pos[:, None])[None]
    allowed = allowed | torch.eye(L, dtype=torch.bool)[None]
    s = torch.einsum("bqhd,bkhd->bhqk", q, k) / dh**0.5
    s = s.masked_fill(~allowed[:, None], float("-inf"))
    out = torch.einsum("bhqk,bkhd->bqhd", torch.softmax(s, -1), v).reshape(b, L, d)
    return att.proj(out)


@pytest.mark.parametrize("window,shift,causal", itertools.product([4, 8, None], [False, True], [False, True]))
def test_windowed_attention_follows_the_pair_rule(window, shift, causal):
    from ejc.model.attention import Attention

    torch.manual_seed(0)
    att = Attention(16, 2, window, shift)
    for L in (3, 8, 13, 32):
        x = torch.randn(2, L, 16)
        valid = torch.rand(2, L) > 0.25
        with torch.no_grad():
            got, want = att(x, valid, causal), _reference_attention(att, x, valid, causal)
        assert torch.allclose(got, want, atol=1e-5), (L, (got - want).abs().max())


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_inference_equals_the_whole_sequence(monkeypatch, causal):
    import ejc.model.attention as A

    torch.manual_seed(0)
    cfg = load_config("small")
    model = EventJEPAModel(cfg, {"default": 8}, 12).eval()
    x = torch.randn(3, 1000, cfg.model.d_model)
    valid = torch.rand(3, 1000) > 0.1
    blocks = [blk for level in model.context.encoder.levels for blk in level] + [model.context.encoder.mix]
    with torch.no_grad():
        monkeypatch.setattr(A, "INFERENCE_CHUNK", 10**9)
        whole = [blk(x, valid, causal) for blk in blocks]
        monkeypatch.setattr(A, "INFERENCE_CHUNK", 96)  # several chunks per block, shifted and not
        parts = [blk(x, valid, causal) for blk in blocks]
    for a, b in zip(whole, parts):
        assert torch.allclose(a, b, atol=1e-5)
    calls = []
    real = A.Block._forward
    monkeypatch.setattr(A.Block, "_forward", lambda self, *a: calls.append(1) or real(self, *a))
    with torch.no_grad():
        blocks[1](x, valid, causal)
    chunked_calls, calls[:] = len(calls), []
    with torch.enable_grad():  # training never chunks: one whole-sequence call
        y = blocks[1](x.requires_grad_(), valid, causal)
    assert y.requires_grad and len(calls) == 1 and chunked_calls > 1
