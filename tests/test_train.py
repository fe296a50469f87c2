"""Local pretraining: schedules, exact resume, safe checkpoints, metrics and plots."""

import json

import pyarrow as pa

import pytest
import torch

from ejc.config import load_config
from ejc.errors import CheckpointError
from ejc.train.checkpoint import load_checkpoint
from ejc.train.loop import ema_at, lr_at, pretrain, wd_at

from helpers import random_table

CFG = ["train.steps=6", "train.checkpoint_every=3"]


@pytest.fixture(scope="module")
def table():
    return random_table(num=20, seed=0)


def test_schedules():
    cfg = load_config("tiny", ["train.steps=100", "train.warmup_steps=10", "train.lr=0.01", "train.min_lr=0.001"])
    assert lr_at(cfg, 0) == pytest.approx(0.001)
    assert lr_at(cfg, 9) == pytest.approx(0.01)
    assert lr_at(cfg, 100) == pytest.approx(0.001)
    assert ema_at(cfg, 0) == pytest.approx(0.99) and ema_at(cfg, 100) == pytest.approx(1.0)  # tiny starts at 0.99
    assert ema_at(load_config("base"), 0) == pytest.approx(0.996)
    assert wd_at(cfg, 0) == pytest.approx(0.04) and wd_at(cfg, 100) == pytest.approx(0.4)


def test_resume_is_exact(table, tmp_path):
    cfg = load_config("tiny", CFG)
    straight = pretrain(cfg, table, tmp_path / "a", progress=False)
    first = pretrain(cfg, table, tmp_path / "b", progress=False, stop_after=3)
    assert first.steps == 3
    resumed = pretrain(cfg, table, tmp_path / "b", progress=False)
    assert resumed.steps == 6
    assert [h["loss"] for h in straight.history] == [h["loss"] for h in resumed.history]
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4, 5, 6]  # no step counted twice
    _, _, sa, _, _ = load_checkpoint(tmp_path / "a")
    _, _, sb, _, _ = load_checkpoint(tmp_path / "b")
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_training_reduces_loss_and_writes_artifacts(table, tmp_path):
    cfg = load_config("tiny", ["train.steps=40", "train.lr=3e-3", "train.checkpoint_every=20"])
    res = pretrain(cfg, table, tmp_path / "run", progress=False)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert all(h["eff_rank"] > 3 for h in res.history)  # not collapsed
    run = tmp_path / "run"
    assert (run / "loss_curve.png").stat().st_size > 10_000
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 40
    params = json.loads((run / "params.json").read_text())
    assert params["model.d_model"] == 32 and params["data.entities"] == 20
    # only the newest two checkpoints are kept, and latest points at the final one
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000020", "step_00000040"]
    assert (run / "latest").read_text() == "step_00000040"


def test_checkpoint_is_loadable_without_unpickling(table, tmp_path):
    cfg = load_config("tiny", CFG)
    pretrain(cfg, table, tmp_path / "r", progress=False)
    step_dir = tmp_path / "r" / "checkpoints" / "step_00000006"
    st = torch.load(step_dir / "trainer.pt", weights_only=True)
    assert st["step"] == 6 and "optimizer" in st
    cfg2, spec, state, _, meta = load_checkpoint(step_dir)
    assert cfg2.to_dict() == cfg.to_dict()
    assert meta["step"] == 6 and spec.modality_dims == {"default": 8}
    assert len(spec.vocab) == 7  # <pad>, <unk>, t0..t4


def test_corrupted_checkpoint_and_config_mismatch_are_clear_errors(table, tmp_path):
    cfg = load_config("tiny", CFG)
    pretrain(cfg, table, tmp_path / "r", progress=False)
    other = load_config("tiny", CFG + ["model.d_model=64"])
    with pytest.raises(CheckpointError, match="different config"):
        pretrain(other, table, tmp_path / "r", progress=False)
    (tmp_path / "r" / "checkpoints" / "step_00000006" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(tmp_path / "r")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nothing")


def test_checkpoint_of_another_architecture_is_a_clear_error(table, tmp_path):
    from ejc.model.jepa import EventJEPAModel

    cfg = load_config("tiny", CFG)
    pretrain(cfg, table, tmp_path / "r", progress=False)
    _, spec, state, _, _ = load_checkpoint(tmp_path / "r")
    other = EventJEPAModel(load_config("tiny", ["model.num_levels=3"]), spec.modality_dims, len(spec.vocab))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        other.load_checkpoint_state(state)


def test_data_spec_from_summaries_treats_width_zero_as_no_vectors():
    from ejc.errors import SchemaError
    from ejc.train.data import data_spec_from_summaries, modality_dims_batch

    batch = pa.table({
        "modality": ["text", "text", "types", "text"],
        "embedding": pa.array([None, [0.1, 0.2], None, [0.3, 0.4]], pa.list_(pa.float32())),
    })
    rows = modality_dims_batch(batch).to_pylist()
    assert sorted((r["modality"], r["dim"]) for r in rows) == [("text", 0), ("text", 2), ("types", 0)]
    # the width-0 row of a modality may come first (another batch): it must not clash with the real width
    spec = data_spec_from_summaries([{"modality": "text", "dim": 0}] + rows, {"a": 3, "b": 1}, max_types=16)
    assert spec.modality_dims == {"text": 2}
    assert spec.modalities == ["text", "types"]
    assert spec.vocab.itos[2:] == ["a", "b"]
    with pytest.raises(SchemaError, match="widths 2 and 3"):
        data_spec_from_summaries(rows + [{"modality": "text", "dim": 3}], {})


def test_type_counts_batch_partials_add_up():
    import pyarrow as pa

    from ejc.train.data import type_counts_batch

    t = pa.table({"event_type": ["a", "b", None, "a", "c", "a"]})
    parts = [type_counts_batch(t.slice(0, 3)), type_counts_batch(t.slice(3))]
    total: dict[str, int] = {}
    for p in parts:
        for r in p.to_pylist():
            total[r["event_type"]] = total.get(r["event_type"], 0) + r["count"]
    assert total == {"a": 3, "b": 1, "c": 1}
