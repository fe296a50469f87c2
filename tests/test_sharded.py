"""Sharded index build (real Parquet, real FAISS): fan-out equals exact search, atomic publish
(a raising or killed build leaves the previous version served), filters, bad input, CLI."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ejc.cube.embeddings_io import write_embeddings
from ejc.cube.index import VectorIndex
from ejc.cube.sharded import ShardedIndex, build_shard, build_sharded_index, current_version, sequential_map, shard_of
from ejc.errors import EjcError, ReaderError, SchemaError, VectorIndexError

ROOT = Path(__file__).resolve().parents[1]
N, D = 1200, 16
RNG = np.random.default_rng(0)
X = (RNG.normal(size=(30, D))[RNG.integers(30, size=N)] + 0.4 * RNG.normal(size=(N, D))).astype(np.float32)
IDS = [f"ent-{i}" for i in range(N)]
CATS = [f"c{i % 4}" for i in range(N)]


def write_dir(path: Path, files: int = 3, x: np.ndarray = X, modality: str | None = "text") -> Path:
    for f, rows in enumerate(np.array_split(np.arange(N), files)):
        write_embeddings(path / f"part-{f}.parquet", [IDS[r] for r in rows], x[rows], modality=modality, hierarchy={"category": [CATS[r] for r in rows]})
    return path


def exact() -> VectorIndex:
    idx = VectorIndex(D, kind="flat")
    idx.upsert(IDS, X)
    return idx


def test_shard_of_is_stable_and_spreads():
    assert [shard_of(f"ent-{i}", 4) for i in range(8)] == [shard_of(f"ent-{i}", 4) for i in range(8)]
    pinned = [shard_of(s, 4) for s in ("a", "b", "entity-42", "ünïcode")]
    assert pinned == [int.from_bytes(__import__("hashlib").blake2b(s.encode(), digest_size=8).digest(), "little") % 4 for s in ("a", "b", "entity-42", "ünïcode")]
    counts = np.bincount([shard_of(i, 4) for i in IDS], minlength=4)
    assert counts.min() > N / 4 * 0.8
    # independent of the interpreter's hash seed
    code = "from ejc.cube.sharded import shard_of; print([shard_of(f'ent-{i}', 7) for i in range(20)])"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": s}, check=True).stdout for s in ("1", "2")}
    assert outs == {str([shard_of(f"ent-{i}", 7) for i in range(20)]) + "\n"}


def test_four_shards_answer_the_same_top10_as_one_exact_index(tmp_path):
    summary = build_sharded_index(write_dir(tmp_path / "emb"), tmp_path / "idx", shards=4, model_version="m1")
    assert summary["modalities"]["text"]["count"] == N and summary["modalities"]["text"]["dim"] == D
    index = ShardedIndex.load(tmp_path / "idx")
    assert index.version == summary["version"] == current_version(tmp_path / "idx")
    assert [len(s) for s in index._shards["text"]] == list(np.bincount([shard_of(i, 4) for i in IDS], minlength=4))
    q = X[::40] + 0.05
    got, want = index.search(q, 10), exact().search(q, 10)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    np.testing.assert_allclose([[s for _, s in row] for row in got], [[s for _, s in row] for row in want], atol=1e-5)
    # entity query excludes the entity itself; vectors come back exactly
    hits = index.search_entity("ent-7", k=10)
    assert hits == exact().search(X[7], 10, exclude={"ent-7"})[0]
    np.testing.assert_array_equal(index.get(["ent-7", "ent-999"]), X[[7, 999]])


def test_sharded_ivf_build_matches_exact_closely(tmp_path):
    build_sharded_index(write_dir(tmp_path / "emb"), tmp_path / "idx", shards=2, kind="ivf")
    index = ShardedIndex.load(tmp_path / "idx")
    assert {s.kind for s in index._shards["text"]} == {"ivf"}
    q = X[::25] + 0.05
    got, want = index.search(q, 10), exact().search(q, 10)
    assert np.mean([len({i for i, _ in g} & {i for i, _ in w}) / 10 for g, w in zip(got, want)]) >= 0.9


def test_hierarchy_filter_modalities_and_last_row_wins(tmp_path):
    emb = write_dir(tmp_path / "emb", modality="text")
    y = np.random.default_rng(1).normal(size=(N, 8)).astype(np.float32)
    write_embeddings(emb / "part-8-image.parquet", IDS, y, modality="image")
    newer = X[:5] * -1.0  # a later file re-embeds 5 entities
    write_embeddings(emb / "part-9-update.parquet", IDS[:5], newer, modality="text", hierarchy={"category": ["new"] * 5})
    summary = build_sharded_index(emb, tmp_path / "idx", shards=3)
    assert set(summary["modalities"]) == {"image", "text"}
    assert summary["modalities"]["text"]["duplicates_replaced"] == 5 and summary["modalities"]["text"]["count"] == N
    index = ShardedIndex.load(tmp_path / "idx")
    np.testing.assert_array_equal(index.get(IDS[:5], "text"), newer)
    assert index.hierarchy("ent-0", "text") == {"category": "new"} and index.dim("image") == 8
    res = index.search(X[10], 20, "text", filter={"category": ["c1", "c3"]})[0]
    assert len(res) == 20 and all(CATS[int(i.split("-")[1])] in ("c1", "c3") for i, _ in res)
    with pytest.raises(VectorIndexError, match="several modalities"):
        index.search(X[0], 3)
    with pytest.raises(VectorIndexError, match="unknown hierarchy level"):
        index.search(X[0], 3, "text", filter={"brand": "b"})
    only = build_sharded_index(emb, tmp_path / "idx2", shards=2, modality="image")
    assert set(only["modalities"]) == {"image"}


def _fail_on_shard(bad: int):
    """A map_fn that runs the real tasks but makes shard ``bad``'s build task crash."""

    def run(fn, items):
        out = []
        for kw in items:
            if fn is build_shard and kw["out"].endswith(f"shard-{bad:04d}"):
                raise RuntimeError("worker died while building a shard")
            out.append(fn(**kw))
        return out

    return run


def test_failed_build_leaves_previous_version_served_then_next_build_publishes(tmp_path):
    emb = write_dir(tmp_path / "emb")
    v1 = build_sharded_index(emb, tmp_path / "idx", shards=4)["version"]
    before = ShardedIndex.load(tmp_path / "idx").search(X[:5], 10)
    write_dir(tmp_path / "emb2", x=X * -1)  # different data for v2
    with pytest.raises(RuntimeError, match="worker died"):
        build_sharded_index(tmp_path / "emb2", tmp_path / "idx", shards=4, map_fn=_fail_on_shard(2))
    assert current_version(tmp_path / "idx") == v1
    assert ShardedIndex.load(tmp_path / "idx").search(X[:5], 10) == before
    assert sorted(p.name for p in (tmp_path / "idx" / "versions").iterdir()) == [v1]  # partial version removed
    v2 = build_sharded_index(tmp_path / "emb2", tmp_path / "idx", shards=4)["version"]
    assert current_version(tmp_path / "idx") == v2 != v1
    assert ShardedIndex.load(tmp_path / "idx").search(X[:5], 10) != before
    assert ShardedIndex.load(tmp_path / "idx", version=v1).search(X[:5], 10) == before  # kept for readers still on it
    v3 = build_sharded_index(emb, tmp_path / "idx", shards=4, keep=2)["version"]
    assert sorted(p.name for p in (tmp_path / "idx" / "versions").iterdir()) == sorted([v2, v3])


def test_killed_build_process_leaves_previous_version_served(tmp_path):
    emb = write_dir(tmp_path / "emb")
    v1 = build_sharded_index(emb, tmp_path / "idx", shards=4)["version"]
    before = ShardedIndex.load(tmp_path / "idx").search(X[:5], 10)
    script = textwrap.dedent(f"""
        import os, signal
        from ejc.cube.sharded import build_shard, build_sharded_index
        done = []
        def run(fn, items):
            out = []
            for kw in items:
                out.append(fn(**kw))
                if fn is build_shard:
                    done.append(kw["out"])
                    if len(done) == 2:  # two shards written, two to go: the process dies
                        os.kill(os.getpid(), signal.SIGKILL)
            return out
        build_sharded_index({str(emb)!r}, {str(tmp_path / "idx")!r}, shards=4, map_fn=run)
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    leftovers = [p.name for p in (tmp_path / "idx" / "versions").iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and len(list((tmp_path / "idx" / "versions" / leftovers[0] / "text").glob("shard-*"))) == 2
    assert current_version(tmp_path / "idx") == v1
    assert ShardedIndex.load(tmp_path / "idx").search(X[:5], 10) == before
    build_sharded_index(emb, tmp_path / "idx", shards=4)  # the next build cleans up
    assert not [p for p in (tmp_path / "idx" / "versions").iterdir() if p.name.startswith(".tmp-")]


def test_load_refuses_corrupted_or_incomplete_indices(tmp_path):
    build_sharded_index(write_dir(tmp_path / "emb"), tmp_path / "idx", shards=2)
    v = current_version(tmp_path / "idx")
    shard = tmp_path / "idx" / "versions" / v / "text" / "shard-0001"
    with open(shard / "index.faiss", "r+b") as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(VectorIndexError, match="index.faiss: SHA-256 does not match"):
        ShardedIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "CURRENT").write_text("v-missing\n")
    with pytest.raises(VectorIndexError, match="names version 'v-missing', which is missing"):
        ShardedIndex.load(tmp_path / "idx")
    with pytest.raises(VectorIndexError, match="no CURRENT file"):
        ShardedIndex.load(tmp_path / "emb")


def test_bad_embeddings_input_raises_clear_errors(tmp_path):
    with pytest.raises(ReaderError, match="no such file or directory"):
        build_sharded_index(tmp_path / "missing", tmp_path / "idx")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderError, match="contains no .parquet files"):
        build_sharded_index(tmp_path / "empty", tmp_path / "idx")
    cases = {
        "nocol": (pa.table({"id": ["a"], "embedding": [[1.0, 2.0]]}), "missing column"),
        "intid": (pa.table({"entity_id": [1], "embedding": [[1.0, 2.0]]}), "entity_id must be string"),
        "nullvec": (pa.table({"entity_id": ["a", "b"], "embedding": [[1.0, 2.0], None]}), "null vector"),
        "nan": (pa.table({"entity_id": ["a"], "embedding": [[1.0, float("nan")]]}), "NaN or infinite"),
        "ragged": (pa.table({"entity_id": ["a", "b"], "embedding": [[1.0, 2.0], [1.0]]}), "different lengths"),
        "strvec": (pa.table({"entity_id": ["a"], "embedding": ["1,2"]}), "must be a list of floats"),
        "badmod": (pa.table({"entity_id": ["a"], "embedding": [[1.0]], "modality": ["../etc"]}), "not usable"),
    }
    for name, (table, match) in cases.items():
        d = tmp_path / name
        d.mkdir()
        pq.write_table(table, d / "x.parquet")
        with pytest.raises(SchemaError, match=match):
            build_sharded_index(d, tmp_path / "idx")
    mixed = tmp_path / "mixed"
    write_embeddings(mixed / "a.parquet", ["a"], np.ones((1, 4)))
    write_embeddings(mixed / "b.parquet", ["b"], np.ones((1, 5)))
    with pytest.raises(SchemaError, match="4-dimensional vectors in .* but 5-dimensional"):
        build_sharded_index(mixed, tmp_path / "idx")
    with pytest.raises(SchemaError, match="no rows of modality 'video'"):
        build_sharded_index(mixed / "a.parquet", tmp_path / "idx", modality="video")
    with pytest.raises(VectorIndexError, match="shards must be a positive integer"):
        build_sharded_index(mixed, tmp_path / "idx", shards=0)
    with pytest.raises(VectorIndexError, match="unknown index option"):
        build_sharded_index(mixed, tmp_path / "idx", options={"nprobes": 3})
    assert not (tmp_path / "idx" / "CURRENT").exists()  # nothing was published
    assert sequential_map(lambda a: a + 1, [{"a": 1}]) == [2]


def _cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "ejc.cli", *map(str, args)], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_build_query_info_round_trip(tmp_path):
    emb = write_dir(tmp_path / "emb")
    built = json.loads(_cli("index", "build", "--embeddings", emb, "--out", tmp_path / "idx", "--shards", "4", "--modality", "text", "--model-version", "m9", "--workers", "2").stdout)
    assert built["shards"] == 4 and built["modalities"]["text"]["count"] == N
    res = json.loads(_cli("index", "query", "--index", tmp_path / "idx", "--entity", "ent-3", "-k", "5").stdout)
    want = exact().search(X[3], 5, exclude={"ent-3"})[0]
    assert res["version"] == built["version"] and [r["entity_id"] for r in res["results"][0]] == [i for i, _ in want]
    np.save(tmp_path / "q.npy", X[[3, 4]])
    res = json.loads(_cli("index", "query", "--index", tmp_path / "idx", "--vector-file", tmp_path / "q.npy", "--modality", "text", "-k", "3", "--filter", "category=c2").stdout)
    assert len(res["results"]) == 2 and all(CATS[int(r["entity_id"].split("-")[1])] == "c2" for row in res["results"] for r in row)
    info = json.loads(_cli("index", "info", "--index", tmp_path / "idx").stdout)
    assert info["model_version"] == "m9" and info["modalities"]["text"]["count"] == N
    bad = _cli("index", "query", "--index", tmp_path / "idx", "--entity", "nobody", check=False)
    assert bad.returncode == 2 and "unknown entity 'nobody'" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("index", "build", "--embeddings", tmp_path / "nowhere", "--out", tmp_path / "idx", check=False)
    assert bad.returncode == 2 and "no such file or directory" in bad.stderr
    (tmp_path / "q.json").write_text("[1, 2]")
    bad = _cli("index", "query", "--index", tmp_path / "idx", "--vector-file", tmp_path / "q.json", check=False)
    assert bad.returncode == 2 and "shape (n, 16)" in bad.stderr
    # a truncated manifest: info names the file and says what to do, no traceback
    mf = tmp_path / "idx" / "versions" / info["version"] / "manifest.json"
    mf.write_text(mf.read_text()[:40])
    bad = _cli("index", "info", "--index", tmp_path / "idx", check=False)
    assert bad.returncode == 2 and str(mf) in bad.stderr and "unreadable" in bad.stderr and "rebuild the index" in bad.stderr and "Traceback" not in bad.stderr


def test_errors_are_ejc_errors():
    assert issubclass(VectorIndexError, EjcError)
