"""Index scale: build time, Recall@10, single-query latency and wrapper overhead of VectorIndex.

Data (generated here, seeded): ``n`` entities and ``--queries`` held-out queries drawn from the
same clustered model — ``--clusters`` Gaussian clusters (Zipf-like sizes) in a ``--latent``-dim
latent space, mapped to ``--dim`` dims by a fixed random linear map, plus isotropic noise in all
``--dim`` dims. Real embeddings sit near a low-dimensional manifold like this; uniform random
vectors have no neighbourhood structure and make every ANN index look bad.

Measured in one run, cosine metric:
- build: ``VectorIndex.upsert`` of everything + ``build()`` (IVF training on a sample, adding,
  nprobe tuning) — wall time.
- Recall@10 of ``VectorIndex.search`` against exact search (``faiss.knn`` brute force on the
  normalised vectors) on the held-out queries; the raw FAISS index's own Recall@10 beside it.
- single-query latency p50/p99 of ``VectorIndex.search(q, 10)`` (``--via-cube``:
  ``EmbeddingCube.find_similar(q, modality, 10)``) and of the raw FAISS call on the
  same index (``index.search(q, 10)`` with the same nprobe) on the same queries, query by query,
  alternating which of the two goes first (the second finds the probed lists in the CPU cache);
  overhead = ratio of the two medians (and of the two totals).
- save + load (with checksum verification) time and size, and a check that the loaded index
  answers identically; peak RSS of the process.

Writes benchmarks/out/index_scale.json.

    python benchmarks/index_scale.py                 # 1,000,000 x 384 (several minutes)
    python benchmarks/index_scale.py --n 100000      # quick run
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ejc.cube.index import VectorIndex  # noqa: E402


def clustered_embeddings(n: int, queries: int, dim: int, clusters: int, latent: int, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """``(base [n, dim], queries [queries, dim])`` float32 from one clustered model (see module doc)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, latent)).astype(np.float32)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.5
    weights /= weights.sum()
    proj = (rng.normal(size=(latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for s in range(0, m, chunk):
            e = min(m, s + chunk)
            z = centres[rng.choice(clusters, size=e - s, p=weights)] + 0.5 * rng.standard_normal((e - s, latent), dtype=np.float32)
            out[s:e] = z @ proj + 0.1 * rng.standard_normal((e - s, dim), dtype=np.float32)
        return out

    return draw(n), draw(queries)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--clusters", type=int, default=2000)
    ap.add_argument("--latent", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kind", default="auto")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="VectorIndex option, e.g. max_nlist=4096 (repeatable)")
    ap.add_argument("--no-save", action="store_true", help="skip the save/load measurement")
    ap.add_argument("--via-cube", action="store_true", help="build through EmbeddingCube.set_embeddings and time EmbeddingCube.find_similar instead of VectorIndex.search")
    ap.add_argument("--out", type=Path, default=HERE / "out" / "index_scale.json")
    args = ap.parse_args()
    options = {k: (float(v) if "." in v else int(v)) if v.replace(".", "").isdigit() else v for k, v in (o.split("=", 1) for o in args.option)}

    import faiss

    t = time.perf_counter()
    base, queries = clustered_embeddings(args.n, args.queries, args.dim, args.clusters, args.latent, args.seed)
    ids = [f"e{i}" for i in range(args.n)]
    gen_s = time.perf_counter() - t
    print(f"generated {args.n:,} x {args.dim} + {args.queries} queries in {gen_s:.1f} s", flush=True)

    t = time.perf_counter()
    if args.via_cube:
        from ejc.cube.cube import EmbeddingCube  # the cube layer (branch `cube`)

        cube = EmbeddingCube(metric="cosine", index_kind=args.kind, **options)
        cube.set_embeddings("bench", ids, base)
        index = cube._index("bench")

        def wrapped(v: np.ndarray) -> list[str]:
            return [n.entity_id for n in cube.find_similar(v, "bench", 10)]
    else:
        index = VectorIndex(args.dim, metric="cosine", kind=args.kind, **options)
        index.upsert(ids, base)

        def wrapped(v: np.ndarray) -> list[str]:
            return [e for e, _ in index.search(v, 10)[0]]
    upsert_s = time.perf_counter() - t
    index.build()
    build_s = time.perf_counter() - t
    print(f"build ({index.kind}, {index.search_params}): {build_s:.1f} s (upsert {upsert_s:.1f} s)", flush=True)

    # exact ground truth: brute force over the normalised vectors (normalised in place: the index keeps its own copy)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    t = time.perf_counter()
    _, truth = faiss.knn(qn, base, 10, metric=faiss.METRIC_INNER_PRODUCT)
    exact_s = time.perf_counter() - t
    del base

    raw = index._index  # the FAISS index VectorIndex wraps (labels are its slot numbers = row numbers here)
    if hasattr(raw, "nprobe"):
        raw.nprobe = index.search_params["nprobe"]
    for i in range(20):  # warm-up
        wrapped(queries[i])
        raw.search(qn[i : i + 1], 10)
    wrap_t, raw_t, wrap_hits, raw_hits = [], [], [], []
    for i in range(args.queries):
        # the second call on a query finds its inverted lists in the CPU cache: alternate who goes first
        for path in ("wrap", "raw") if i % 2 == 0 else ("raw", "wrap"):
            t0 = time.perf_counter()
            if path == "wrap":
                res = wrapped(queries[i])
                wrap_t.append(time.perf_counter() - t0)
            else:
                _, lab = raw.search(qn[i : i + 1], 10)
                raw_t.append(time.perf_counter() - t0)
        want = set(truth[i].tolist())
        wrap_hits.append(len(want & {int(e[1:]) for e in res}))
        raw_hits.append(len(want & set(lab[0].tolist())))
    wrap_ms, raw_ms = np.array(wrap_t) * 1e3, np.array(raw_t) * 1e3
    t = time.perf_counter()
    index.search(queries, 10)
    batch_s = time.perf_counter() - t

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}, {__import__('os').cpu_count()} CPUs, faiss {faiss.__version__}, GPUs {faiss.get_num_gpus()}",
        "command": " ".join(sys.argv),
        "data": {"n": args.n, "dim": args.dim, "queries": args.queries, "clusters": args.clusters, "latent": args.latent, "seed": args.seed, "generate_s": round(gen_s, 1)},
        "measured": "EmbeddingCube.find_similar" if args.via_cube else "VectorIndex.search",
        "index": {"kind": index.kind, **index.search_params, "options": options},
        "build_s": round(build_s, 1),
        "upsert_s": round(upsert_s, 1),
        "recall_at_10": float(np.mean(wrap_hits)) / 10,
        "raw_faiss_recall_at_10": float(np.mean(raw_hits)) / 10,
        "latency_ms": {"p50": float(np.percentile(wrap_ms, 50)), "p99": float(np.percentile(wrap_ms, 99)), "mean": float(wrap_ms.mean())},
        "raw_faiss_latency_ms": {"p50": float(np.percentile(raw_ms, 50)), "p99": float(np.percentile(raw_ms, 99)), "mean": float(raw_ms.mean())},
        "overhead_ratio_p50": float(np.percentile(wrap_ms, 50) / np.percentile(raw_ms, 50)),
        "overhead_ratio_total": float(wrap_ms.sum() / raw_ms.sum()),
        "batch_search_qps": args.queries / batch_s,
        "exact_bruteforce_ms_per_query_batched": exact_s * 1e3 / args.queries,
    }
    print(json.dumps(result, indent=2), flush=True)

    if not args.no_save:
        d = args.out.parent / "index_scale_saved"
        t = time.perf_counter()
        index.save(d, model_version="bench")
        save_s = time.perf_counter() - t
        t = time.perf_counter()
        back = VectorIndex.load(d)
        load_s = time.perf_counter() - t
        same = back.search(queries[:100], 10) == index.search(queries[:100], 10)
        result["save_load"] = {"save_s": round(save_s, 1), "load_verified_s": round(load_s, 1), "bytes": sum(f.stat().st_size for f in d.iterdir()), "identical_results": same}
        del back
        shutil.rmtree(d, ignore_errors=True)
    result["peak_rss_mb"] = round(peak_rss_mb())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("build_s", "recall_at_10", "latency_ms", "overhead_ratio_p50", "peak_rss_mb")} | {"save_load": result.get("save_load")}), flush=True)


if __name__ == "__main__":
    main()
