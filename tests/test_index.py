"""VectorIndex on real FAISS: exactness, filters, updates/deletes per kind, save/load integrity."""

import json

import numpy as np
import pytest

from ejc.cube.index import VectorIndex
from ejc.errors import EjcError, VectorIndexError


def clustered(n: int, d: int, seed: int = 0, clusters: int = 20, centres_seed: int = 0) -> np.ndarray:
    """Points around random cluster centres (nearest neighbours are well defined); the same
    ``centres_seed`` gives the same centres, so other ``seed``s draw held-out points."""
    centres = np.random.default_rng(centres_seed).normal(size=(clusters, d))
    rng = np.random.default_rng(seed)
    return (centres[rng.integers(clusters, size=n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def brute(x: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Scores [q, n] computed with numpy in float64."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        return (q64 / np.linalg.norm(q64, axis=1, keepdims=True)) @ (x64 / np.linalg.norm(x64, axis=1, keepdims=True)).T
    if metric == "ip":
        return q64 @ x64.T
    return -np.linalg.norm(q64[:, None, :] - x64[None, :, :], axis=2)


IDS = [f"e{i}" for i in range(600)]
X = clustered(600, 16)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_flat_search_equals_brute_force_ids_and_scores(metric):
    idx = VectorIndex(16, metric=metric)
    idx.upsert(IDS, X)
    assert idx.kind == "flat" and len(idx) == 600 and "e5" in idx and "zz" not in idx
    q = clustered(7, 16, seed=3)
    res = idx.search(q, k=5)
    s = brute(X, q, metric)
    for row, srow in zip(res, s):
        want = np.argsort(-srow)[:5]
        assert [i for i, _ in row] == [IDS[j] for j in want]
        np.testing.assert_allclose([v for _, v in row], srow[want], rtol=1e-4, atol=1e-4)


def test_single_vector_query_exclude_and_k_larger_than_n():
    idx = VectorIndex(16)
    idx.upsert(IDS[:3], X[:3])
    res = idx.search(X[0], k=10, exclude={"e0"})
    assert len(res) == 1 and sorted(i for i, _ in res[0]) == ["e1", "e2"]
    assert VectorIndex(16).search(X[:2], 3) == [[], []]


@pytest.mark.parametrize("exact_subset", [4096, 0])  # small filter: exact from the store; 0: FAISS IDSelector
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_allowed_and_exclude_filters(kind, exact_subset):
    idx = VectorIndex(16, kind=kind, exact_subset=exact_subset, nprobe=64)
    idx.upsert(IDS, X)
    allowed = set(IDS[::3]) | {"unknown"}
    q = X[:4]
    res = idx.search(q, k=6, allowed=allowed, exclude={"e0", "e3"})
    s = brute(X, q, "cosine")
    keep = np.array([i in allowed and i not in {"e0", "e3"} for i in IDS])
    for row, srow in zip(res, s):
        got = [i for i, _ in row]
        assert all(i in allowed and i not in {"e0", "e3"} for i in got)
        want = [IDS[j] for j in np.argsort(-np.where(keep, srow, -np.inf))[:6]]
        assert got == want
    assert idx.search(q[:1], 3, allowed={"nope"}) == [[]]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_updates_and_deletes_by_id_for_every_kind(kind):
    idx = VectorIndex(16, kind=kind)
    idx.upsert(IDS, X)
    assert idx.kind == kind
    # update: e10 takes e500's vector (plus a hair) -> it is e500's nearest neighbour
    idx.upsert(["e10"], X[500:501] * 1.001)
    np.testing.assert_array_equal(idx.get(["e10"])[0], X[500] * np.float32(1.001))
    top = [i for i, _ in idx.search(X[500], k=2, exclude={"e500"})[0]]
    assert top[0] == "e10" and len(idx) == 600
    assert idx.remove(["e10", "e500", "never"]) == 2
    assert "e10" not in idx and len(idx) == 598
    res = idx.search(X[495:505], k=20)
    assert all(i not in ("e10", "e500") for row in res for i, _ in row)
    with pytest.raises(VectorIndexError, match="unknown id"):
        idx.get(["e500"])
    # a removed id can come back
    idx.upsert(["e500"], X[500:501])
    assert idx.search(X[500], k=1)[0][0][0] == "e500"


@pytest.mark.parametrize("kind", ["ivf", "hnsw", "ivfpq"])
def test_approximate_kinds_recall_against_exact(kind):
    x = clustered(3000, 32, seed=1, clusters=40)
    ids = [f"p{i}" for i in range(3000)]
    approx, exact = VectorIndex(32, kind=kind), VectorIndex(32, kind="flat")
    approx.upsert(ids, x)
    exact.upsert(ids, x)
    q = clustered(100, 32, seed=2, clusters=40)  # held out, same distribution
    a, e = approx.search(q, 10), exact.search(q, 10)
    recall = np.mean([len({i for i, _ in ra} & {i for i, _ in re_}) / 10 for ra, re_ in zip(a, e)])
    assert recall >= 0.9, recall
    # re-ranked scores are exact: a shared hit has the same score as in the exact index
    ea = dict(e[0])
    for i, s in a[0]:
        if i in ea:
            assert s == pytest.approx(ea[i], abs=1e-5)


def test_auto_kind_grows_from_flat_to_ivf():
    idx = VectorIndex(16, flat_threshold=300)
    idx.upsert(IDS[:200], X[:200])
    assert idx.kind == "flat"
    idx.search(X[:1], 1)
    idx.upsert(IDS[200:], X[200:])
    assert idx.kind == "ivf"
    assert idx.search(X[250], 1)[0][0][0] == "e250"
    assert idx.kind == "ivf" and idx._tuned.get("nprobe", 0) >= 1


def test_many_updates_compact_the_store_and_stay_correct():
    idx = VectorIndex(16, kind="hnsw")
    idx.upsert(IDS, X)
    rng = np.random.default_rng(5)
    for _ in range(4):  # 4 full rewrites -> retired slots outnumber live ones -> compaction
        idx.upsert(IDS, X + 0.01 * rng.normal(size=X.shape).astype(np.float32))
    final = X * 2
    idx.upsert(IDS, final)
    np.testing.assert_array_equal(idx.get(IDS), final)
    assert idx.ids() == IDS
    assert all(idx.search(final[i], 1)[0][0][0] == IDS[i] for i in (0, 123, 599))
    assert len(idx._slot_ids) <= 2 * len(IDS) + 1024


@pytest.mark.parametrize("kind,metric", [("flat", "cosine"), ("ivf", "ip"), ("hnsw", "l2"), ("ivfpq", "cosine")])
def test_save_load_is_bit_identical(tmp_path, kind, metric):
    idx = VectorIndex(16, metric=metric, kind=kind)
    idx.upsert(IDS, X)
    idx.remove(["e1", "e2"])
    idx.upsert(["e3"], X[4:5])
    q = clustered(20, 16, seed=9)
    before = idx.search(q, 10, exclude={"e5"})
    idx.save(tmp_path / "idx", model_version="m-7")
    m = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert (m["kind"], m["metric"], m["dim"], m["count"], m["model_version"], m["format_version"]) == (kind, metric, 16, 598, "m-7", 1)
    assert set(m["files"]) == {"vectors.npy", "norms.npy", "ids.json", "index.faiss"} and all(len(f["sha256"]) == 64 for f in m["files"].values())
    for mmap in (False, True):
        back = VectorIndex.load(tmp_path / "idx", mmap=mmap)
        assert back.kind == kind and back.ids() == idx.ids() and back.model_version == "m-7"
        assert back.get(idx.ids()).tobytes() == idx.get(idx.ids()).tobytes()
        assert back.search(q, 10, exclude={"e5"}) == before
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temporary directories left


def test_mmap_loaded_index_is_read_only(tmp_path):
    idx = VectorIndex(16, kind="ivf")
    idx.upsert(IDS, X)
    idx.save(tmp_path / "i")
    ro = VectorIndex.load(tmp_path / "i", mmap=True)
    with pytest.raises(VectorIndexError, match="read-only"):
        ro.upsert(["x"], X[:1])
    with pytest.raises(VectorIndexError, match="read-only"):
        ro.remove(["e1"])


def _saved(tmp_path):
    idx = VectorIndex(16, kind="ivf")
    idx.upsert(IDS, X)
    idx.save(tmp_path / "i")
    return tmp_path / "i"


def test_load_refuses_a_corrupted_file(tmp_path):
    p = _saved(tmp_path)
    data = bytearray((p / "vectors.npy").read_bytes())
    data[-5] ^= 0xFF  # same size, one flipped byte
    (p / "vectors.npy").write_bytes(bytes(data))
    with pytest.raises(VectorIndexError, match="vectors.npy: SHA-256 does not match"):
        VectorIndex.load(p)


def test_load_refuses_a_truncated_file(tmp_path):
    p = _saved(tmp_path)
    data = (p / "index.faiss").read_bytes()
    (p / "index.faiss").write_bytes(data[: len(data) // 2])
    with pytest.raises(VectorIndexError, match="index.faiss: .* bytes but the manifest says .*truncated"):
        VectorIndex.load(p)


def test_load_refuses_a_missing_file_or_manifest(tmp_path):
    p = _saved(tmp_path)
    (p / "ids.json").unlink()
    with pytest.raises(VectorIndexError, match="ids.json: missing file"):
        VectorIndex.load(p)
    with pytest.raises(VectorIndexError, match="no manifest.json"):
        VectorIndex.load(tmp_path / "nothing-here")


def test_load_refuses_format_and_dim_mismatch(tmp_path):
    p = _saved(tmp_path)
    with pytest.raises(VectorIndexError, match="holds 16-dimensional vectors but 32 were expected"):
        VectorIndex.load(p, dim=32)
    m = json.loads((p / "manifest.json").read_text())
    (p / "manifest.json").write_text(json.dumps({**m, "dim": 32}))
    with pytest.raises(VectorIndexError, match="does not match the manifest"):
        VectorIndex.load(p)
    (p / "manifest.json").write_text(json.dumps({**m, "format_version": 99}))
    with pytest.raises(VectorIndexError, match="format version 99 is not 1"):
        VectorIndex.load(p)


def test_failed_save_leaves_the_previous_index(tmp_path, monkeypatch):
    import ejc.cube.index as mod

    p = _saved(tmp_path)
    before = (p / "manifest.json").read_text()
    bigger = VectorIndex(16, kind="flat")
    bigger.upsert(IDS[:10], X[:10])

    def disk_full(path, chunk=0):
        raise OSError("No space left on device")

    monkeypatch.setattr(mod, "sha256_file", disk_full)
    with pytest.raises(OSError):
        bigger.save(p)
    monkeypatch.undo()
    assert (p / "manifest.json").read_text() == before and len(VectorIndex.load(p)) == 600
    assert sorted(q.name for q in tmp_path.iterdir()) == ["i"]


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda i: i.upsert(["a"], np.ones((1, 8), np.float32)), r"shape \(n, 16\)"),
        (lambda i: i.upsert(["a", "b"], np.ones((1, 16), np.float32)), "1 rows but 2 ids"),
        (lambda i: i.upsert(["a"], np.full((1, 16), np.nan, np.float32)), "NaN or infinite"),
        (lambda i: i.upsert([""], np.ones((1, 16), np.float32)), "non-empty strings"),
        (lambda i: i.upsert("ab", np.ones((2, 16), np.float32)), "not a single string"),
        (lambda i: i.upsert(["a", "a"], np.ones((2, 16), np.float32)), "duplicate ids"),
        (lambda i: i.upsert(["a"], np.zeros((1, 16), np.float32)), "zero vector"),
        (lambda i: i.search(np.ones(16), 0), "k must be a positive integer"),
        (lambda i: i.search(np.ones(15), 3), r"shape \(n, 16\)"),
        (lambda i: i.get(["nope"]), "unknown id"),
    ],
)
def test_bad_input_raises_clear_errors(call, match):
    idx = VectorIndex(16)
    idx.upsert(["x"], np.ones((1, 16), np.float32))
    with pytest.raises(VectorIndexError, match=match):
        call(idx)
    assert len(idx) == 1  # nothing half-applied


def test_bad_construction_arguments():
    for kwargs, match in [({"dim": 0}, "dim must be"), ({"dim": 4, "metric": "dot"}, "metric must be"), ({"dim": 4, "kind": "lsh"}, "kind must be"), ({"dim": 4, "nprobes": 3}, "unknown index option")]:
        with pytest.raises(EjcError, match=match):
            VectorIndex(**kwargs)
