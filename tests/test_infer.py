"""The EventJEPA facade: process, predict_next, anomaly scores with calibration, save/load."""

import numpy as np
import pytest

from ejc.data.sequence import EventSequence, sequences_from_table
from ejc.errors import EjcError
from ejc.infer.event_jepa import EventJEPA

from helpers import random_table


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    table = random_table(num=20, seed=1)
    out = tmp_path_factory.mktemp("run")
    # the `ejc train` recipe, kept short; random streams are not complete cases: no END type
    ft = ["finetune.ends=false", "finetune.max_epochs=3", "finetune.patience=2", "finetune.half_lives=[null]", "finetune.ensemble=1"]
    model = EventJEPA.fit(table, out, config="tiny", overrides=["train.steps=30", "train.lr=3e-3", *ft], progress=False)
    return model, table, out


def test_process_shapes_and_reload(fitted):
    model, table, out = fitted
    seq = next(sequences_from_table(table))
    res = model.process(seq)
    n = len(seq)
    assert res.events.shape == (n, 32)
    assert [lv.shape for lv in res.levels] == [(n, 32), ((n + 1) // 2, 32)]
    assert res.pooled.shape == (32,)
    again = EventJEPA.from_pretrained(out)
    assert np.array_equal(again.process(seq).pooled, res.pooled)
    assert again.calibration is not None
    assert again.calibration.event_threshold == model.calibration.event_threshold


def test_seed_constructor_and_raw_arrays():
    model = EventJEPA(embedding_dim=16, num_levels=2, config="tiny")
    rng = np.random.default_rng(0)
    out = model.process(embeddings=rng.normal(size=(9, 16)), timestamps=np.arange(9.0) * 60)
    assert out.events.shape == (9, 32) and out.pooled.shape == (32,)
    with pytest.raises(EjcError, match="empty"):
        model.process(EventSequence(embeddings=np.zeros((0, 16))))


def test_predict_next(fitted):
    model, table, _ = fitted
    seq = next(sequences_from_table(table))
    preds = model.predict_next(seq, num_steps=3)
    assert len(preds) == 3
    assert all(p.event_type in {f"t{i}" for i in range(5)} for p in preds)
    times = [float(seq.timestamps[-1])] + [p.timestamp for p in preds]
    assert all(b >= a for a, b in zip(times, times[1:]))
    assert all(p.gap >= 0 and p.embedding.shape == (8,) for p in preds)
    assert sum(preds[0].type_probs.values()) <= 1.0 + 1e-6
    assert model.predict_next(seq, 2, temperature=0.0)[0].timestamp == preds[0].timestamp  # greedy is deterministic
    a = model.predict_next(seq, 4, temperature=1.0, seed=3)
    b = model.predict_next(seq, 4, temperature=1.0, seed=3)
    assert [p.timestamp for p in a] == [p.timestamp for p in b]


def test_predict_next_batch_matches_one_by_one(fitted):
    model, table, _ = fitted
    seqs = list(sequences_from_table(table))[:5]
    seqs[1] = seqs[1][:3]  # different lengths share one padded batch
    batch = model.predict_next_batch(seqs, num_steps=2)
    for s, got in zip(seqs, batch):
        want = model.predict_next(s, num_steps=2)
        assert [p.event_type for p in got] == [p.event_type for p in want]
        assert [p.timestamp for p in got] == pytest.approx([p.timestamp for p in want], rel=1e-12, abs=1e-3)
        assert all(np.allclose(a.embedding, b.embedding, atol=1e-5) for a, b in zip(got, want))
    assert model.predict_next_batch([], num_steps=2) == []
    with pytest.raises(EjcError, match="empty"):
        model.predict_next_batch([seqs[0], seqs[0][:0]])


def test_anomaly_scores_flag_an_injected_outlier(fitted):
    model, table, _ = fitted
    seq = next(sequences_from_table(table))
    base = model.anomaly_scores(seq)
    assert base.event_scores.shape == (len(seq),)
    assert np.isfinite(base.event_scores).all()
    vecs = [seq.vector_at(i) for i in range(len(seq))]
    k = len(seq) // 2
    vecs[k] = vecs[k] * 0 + 25.0  # far off every event vector seen in training
    ts = seq.timestamps.copy()
    ts[k:] += 1e6  # and an absurd gap before it
    odd = EventSequence(embeddings=vecs, timestamps=ts, event_types=list(seq.event_types), id=seq.id)
    res = model.anomaly_scores(odd)
    assert int(np.argmax(res.event_scores)) == k
    assert res.is_anomalous[k]
    assert res.event_scores[k] > res.event_threshold


def test_simulate_honours_constraints(fitted):
    model, table, _ = fitted
    seq = next(sequences_from_table(table))
    seen_before = set(seq.event_types.tolist())
    res = model.simulate(seq, num_steps=6, num_paths=8, temperature=1.0, seed=0, constraints={"min_delay": 30.0, "allowed_types": {"t1", "t2", "t3"}})
    assert len(res.paths) == 8 and all(len(p) == 6 for p in res.paths)
    assert all(ev.gap >= 30.0 and ev.event_type in {"t1", "t2", "t3"} for p in res.paths for ev in p)
    for p in res.paths:
        times = [float(seq.timestamps[-1])] + [ev.timestamp for ev in p]
        assert all(b - a >= 30.0 - 1e-6 for a, b in zip(times, times[1:]))
    again = model.simulate(seq, num_steps=6, num_paths=8, temperature=1.0, seed=0, constraints={"min_delay": 30.0, "allowed_types": {"t1", "t2", "t3"}})
    assert [[e.event_type for e in p] for p in res.paths] == [[e.event_type for e in p] for p in again.paths]
    # a type that never happened may not follow its prerequisite before the prerequisite
    short = seq[:2]
    pre = next(t for t in ["t0", "t1", "t2", "t3", "t4"] if t not in set(short.event_types.tolist()))
    post = next(t for t in ["t4", "t3", "t2", "t1", "t0"] if t != pre)
    res = model.simulate(short, num_steps=8, num_paths=16, seed=1, constraints={"causal_order": [(pre, post)]})
    for p in res.paths:
        types = [e.event_type for e in p]
        if post in types and post not in set(short.event_types.tolist()):
            assert pre in types[: types.index(post)]
    assert seen_before  # the fixture has types


def test_simulate_target_horizon_and_dead_end(fitted):
    model, table, _ = fitted
    seq = next(sequences_from_table(table))
    res = model.simulate(seq, num_steps=30, num_paths=10, target_state="t2", seed=2)
    for p, hit, at, why in zip(res.paths, res.reached, res.reached_at, res.stopped):
        if hit:
            assert why == "target" and p[at].event_type == "t2" and len(p) == at + 1
            assert all(e.event_type != "t2" for e in p[:at])
        else:
            assert why == "steps" and len(p) == 30
    assert 0.0 < res.target_probability <= 1.0
    summary = res.summary()
    assert summary["paths"] == 10 and summary["target_probability"] == res.target_probability
    short = model.simulate(seq, num_steps=50, num_paths=4, seed=3, constraints={"horizon": 120.0, "min_delay": 50.0})
    assert all(len(p) <= 2 for p in short.paths) and set(short.stopped) == {"horizon"}
    dead = model.simulate(seq, num_steps=3, num_paths=2, constraints={"allowed_types": set()})
    assert dead.stopped == ["dead_end", "dead_end"] and dead.paths == [[], []]
    with pytest.raises(EjcError, match="never saw"):
        model.simulate(seq, constraints={"allowed_types": {"nope"}})


def test_bf16_precision_is_close_to_fp32_and_bad_precision_is_refused():
    import torch

    rng = np.random.default_rng(0)
    seq = EventSequence(embeddings=rng.standard_normal((700, 8)).astype(np.float32), timestamps=np.cumsum(rng.exponential(5.0, 700)))
    torch.manual_seed(0)
    fp32 = EventJEPA(embedding_dim=8, config="small")
    bf16 = EventJEPA(embedding_dim=8, config="small", precision="bf16")
    bf16.model.load_state_dict(fp32.model.state_dict())
    a, b = fp32.process(seq), bf16.process(seq)
    assert b.events.dtype == np.float32 and np.isfinite(b.events).all()
    cos = float(a.pooled @ b.pooled / np.linalg.norm(a.pooled) / np.linalg.norm(b.pooled))
    assert 0.99 < cos and not np.array_equal(a.events, b.events)  # bf16 really ran, and stayed close
    with pytest.raises(EjcError, match="precision='fp16'"):
        EventJEPA(embedding_dim=8, config="small", precision="fp16")
