"""``VectorIndex``: one embedding space — string entity ids -> float32 vectors — backed by FAISS.

Shape legend: ``n`` stored vectors, ``q`` queries, ``d`` dimension, ``k`` results per query,
``c`` candidates fetched per query before exact re-ranking.

    index = VectorIndex(dim=384, metric="cosine")          # kind="auto": chosen by size
    index.upsert(["a", "b"], vectors)                       # add or replace by id
    hits = index.search(query, k=10, exclude={"a"})         # [[(id, score), ...]] best first
    index.save("idx/")                                      # directory + manifest.json
    index = VectorIndex.load("idx/")                        # checksums verified

How it works. Vectors live in a *slot store* (``vectors[slot]``, raw and un-normalised, plus
their norms) and FAISS holds the same vectors under the slot number as its id. An update gives
the entity a new slot and retires the old one (removed from FAISS, or — for HNSW, which cannot
remove — left as a tombstone that searches skip); the store is compacted when retired slots
outnumber live ones. Approximate kinds fetch ``k * rerank`` candidates and re-rank them exactly
from the slot store, so their scores are exact and only their recall is approximate.

Kinds (``kind="auto"`` picks by size, see :class:`IndexOptions`):

- ``flat``: exact (``IndexFlatIP`` / ``IndexFlatL2`` in an ``IndexIDMap2``).
- ``ivf``: ``IndexIVFFlat`` (or ``IndexIVFScalarQuantizer`` with ``codec="sq8"``), ``nlist`` about
  ``4 * sqrt(n)`` rounded to a power of two and capped by ``max_nlist``, trained on a sample;
  ``nprobe`` tuned after each build to reach ``target_recall`` on a sample of stored vectors.
- ``ivfpq``: ``IndexIVFPQ`` (memory-bound sizes), always re-ranked.
- ``hnsw``: ``IndexHNSWFlat``; never chosen by ``auto`` because its build is an order of magnitude
  slower than IVF on a few cores (see NOTES: 1M HNSW32 did not finish in 20 min on 2 cores).

Cosine = inner product of L2-normalised vectors. Scores are "higher is more similar": cosine
similarity, inner product, or minus the Euclidean distance. With a GPU visible to FAISS
(``faiss.get_num_gpus() > 0``, ``use_gpu=True``) IVF indices are trained and filled on the GPU(s),
and flat and IVF indices are searched on a GPU copy unless the search needs an id filter (FAISS
GPU indices do not take ``IDSelector``s) — those run on the CPU index. (The GPU code path has
not been exercised on a GPU machine yet.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from ejc.errors import VectorIndexError

FORMAT_VERSION = 1
METRICS = ("cosine", "ip", "l2")
KINDS = ("auto", "flat", "ivf", "hnsw", "ivfpq")
MANIFEST = "manifest.json"
_VECTORS = "vectors.npy"
_IDS = "ids.json"
_NORMS = "norms.npy"
_FAISS = "index.faiss"
_FILES = (_VECTORS, _NORMS, _IDS, _FAISS)


@dataclass
class IndexOptions:
    """Tuning knobs of a :class:`VectorIndex` (all saved in the manifest).

    ``auto`` resolves to ``flat`` below ``flat_threshold`` vectors, ``ivf`` up to
    ``ivfpq_threshold`` and ``ivfpq`` beyond.
    """

    flat_threshold: int = 20_000
    ivfpq_threshold: int = 5_000_000
    nlist: int | None = None  # IVF lists; None: 4*sqrt(n) rounded to a power of two, <= max_nlist
    max_nlist: int = 2048  # training cost grows with nlist; 2048 keeps a 1M build in budget on 2 cores
    nprobe: int | None = None  # None: tuned after each build to reach target_recall
    target_recall: float = 0.97  # recall@10 the nprobe / efSearch tuning aims for
    tune_queries: int = 256  # stored vectors used as tuning queries
    codec: str = "flat"  # ivf storage: "flat" (exact distances) or "sq8" (8-bit, 4x smaller)
    pq_m: int | None = None  # ivfpq sub-quantizers; None: largest divisor of d that is <= d / 4
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int | None = None  # None: tuned like nprobe
    rerank: int = 4  # approximate kinds fetch k * rerank candidates, re-ranked exactly
    pq_rerank: int = 16  # the same for ivfpq, whose compressed distances are coarser
    train_points_per_list: int = 40  # IVF training sample = nlist * this (at most n)
    exact_subset: int = 4096  # an `allowed` set at most this big is searched exactly from the store
    seed: int = 0
    use_gpu: bool = True

    @classmethod
    def from_dict(cls, opts: dict[str, Any]) -> IndexOptions:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(opts) - names)
        if unknown:
            raise VectorIndexError(f"unknown index option(s) {unknown}; valid options: {sorted(names)}")
        o = cls(**opts)
        if o.codec not in ("flat", "sq8"):
            raise VectorIndexError(f"codec must be 'flat' or 'sq8', got {o.codec!r}")
        if o.rerank < 1 or o.pq_rerank < 1 or o.tune_queries < 1 or o.flat_threshold < 0:
            raise VectorIndexError("rerank and tune_queries must be at least 1 and flat_threshold non-negative")
        if not 0.0 < o.target_recall <= 1.0:
            raise VectorIndexError(f"target_recall must be in (0, 1], got {o.target_recall}")
        return o


def _faiss() -> Any:
    import faiss  # imported on first use: importing ejc never loads FAISS

    return faiss


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file, read in chunks (the checksums of saved indices)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def exclusive_lock(lock_file: Path, busy: Exception) -> Iterator[None]:
    """Hold a non-blocking exclusive ``flock`` on ``lock_file`` (parents created) while the block
    runs; raise ``busy`` at once when another process holds it (index builders of one directory)."""
    import fcntl

    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise busy from e
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def replace_dir(tmp: Path, final: Path) -> None:
    """Move the complete directory ``tmp`` to ``final``, replacing any previous one.

    ``os.replace`` cannot replace a non-empty directory, so the old one is first renamed aside;
    a crash between the two renames leaves it intact under ``.old-*`` next to ``final``.
    """
    old = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class VectorIndex:
    """One embedding space: string entity ids -> float32 vectors, backed by FAISS.

    Args:
        dim: vector dimension ``d``.
        metric: ``"cosine"``, ``"ip"`` (inner product) or ``"l2"``.
        kind: ``"auto"`` (by size), ``"flat"``, ``"ivf"``, ``"hnsw"`` or ``"ivfpq"``.
        **options: fields of :class:`IndexOptions` (e.g. ``nprobe=32``, ``codec="sq8"``).
    """

    def __init__(self, dim: int, metric: str = "cosine", kind: str = "auto", **options: Any) -> None:
        if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
            raise VectorIndexError(f"dim must be a positive integer, got {dim!r}")
        if metric not in METRICS:
            raise VectorIndexError(f"metric must be one of {METRICS}, got {metric!r}")
        if kind not in KINDS:
            raise VectorIndexError(f"kind must be one of {KINDS}, got {kind!r}")
        self.dim = int(dim)
        self.metric = metric
        self.requested_kind = kind
        self.options = IndexOptions.from_dict(options)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)  # [slots, d] raw vectors
        self._norms = np.zeros(0, dtype=np.float32)  # [slots] L2 norms
        self._slot_ids: list[str | None] = []  # entity id of each slot; None = retired
        self._id_to_slot: dict[str, int] = {}
        self._index: Any = None  # FAISS index over slot ids; None = (re)build on next use
        self._built_kind: str | None = None
        self._trained_n = 0  # live vectors when the current FAISS index was built
        self._tombstones = 0  # retired slots still inside the FAISS index (HNSW)
        self._tuned: dict[str, int] = {}  # {"nprobe": ..} or {"efSearch": ..} chosen by tuning
        self._gpu_index: Any = None
        self._gpus: int | None = None  # faiss.get_num_gpus(), asked once
        self._read_only = False
        self.model_version: str | None = None  # set by load() from the manifest

    # ------------------------------------------------------------------------------------------
    # contents

    @property
    def kind(self) -> str:
        """The kind actually in use (``auto`` resolved by the current size)."""
        return self._built_kind if self._index is not None else self._resolve_kind(len(self))

    def __len__(self) -> int:
        return len(self._id_to_slot)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._id_to_slot

    def ids(self) -> list[str]:
        """Live entity ids in insertion (slot) order."""
        return [i for i in self._slot_ids if i is not None]

    def upsert(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Add the vectors ``[len(ids), d]`` under ``ids``, replacing any stored under the same id."""
        self._check_writable()
        ids = self._check_ids(ids)
        vecs = self._check_vectors(vectors, len(ids), "vectors")
        norms = np.linalg.norm(vecs, axis=1).astype(np.float32)
        if self.metric == "cosine" and (norms == 0).any():
            bad = [ids[i] for i in np.flatnonzero(norms == 0)[:5]]
            raise VectorIndexError(f"zero vector(s) for {bad}: cosine similarity needs a direction; drop them or use metric='ip' / 'l2'")
        if not ids:
            return
        old = [self._id_to_slot[i] for i in ids if i in self._id_to_slot]
        self._retire(old)
        start = len(self._slot_ids)
        self._grow(start + len(ids))
        self._vecs[start : start + len(ids)] = vecs
        self._norms[start : start + len(ids)] = norms
        self._slot_ids.extend(ids)
        for j, i in enumerate(ids):
            self._id_to_slot[i] = start + j
        if self._index is not None:
            if self._resolve_kind(len(self)) != self._built_kind or (self._built_kind != "flat" and len(self) > 4 * max(self._trained_n, 1)):
                self._index = None  # outgrew its kind or its training: rebuild lazily
            else:
                slots = np.arange(start, start + len(ids), dtype=np.int64)
                self._index.add_with_ids(self._prepared(slots), slots)
        self._after_change()

    def remove(self, ids: Iterable[str]) -> int:
        """Remove the given ids; returns how many were present (unknown ids are ignored)."""
        self._check_writable()
        if isinstance(ids, str):
            raise VectorIndexError("remove() takes a collection of ids, not a single string; wrap it in a list")
        slots = [self._id_to_slot[i] for i in dict.fromkeys(ids) if i in self._id_to_slot]
        self._retire(slots)
        self._after_change()
        return len(slots)

    def get(self, ids: Sequence[str]) -> np.ndarray:
        """Stored vectors ``[len(ids), d]`` float32, exactly as given (not normalised)."""
        if isinstance(ids, str):
            raise VectorIndexError("get() takes a sequence of ids, not a single string; wrap it in a list")
        missing = [i for i in ids if i not in self._id_to_slot]
        if missing:
            raise VectorIndexError(f"unknown id(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)} of {len(ids)}); add them with upsert() first")
        slots = np.fromiter((self._id_to_slot[i] for i in ids), dtype=np.int64, count=len(ids))
        return np.array(self._vecs[slots], dtype=np.float32)

    def build(self) -> VectorIndex:
        """Build (train, add, tune) the FAISS index now; otherwise the first search or save does.

        Bulk loads should ``upsert`` everything first and build once: an approximate index is
        trained on a sample of what is stored when it is built.
        """
        self._ensure_built()
        return self

    @property
    def search_params(self) -> dict[str, int]:
        """The search parameters in use (``nprobe`` for IVF kinds, ``efSearch`` for HNSW)."""
        if self._index is None:
            return {}
        if self._built_kind in ("ivf", "ivfpq"):
            return {"nprobe": self._nprobe(), "nlist": int(self._index.nlist)}
        if self._built_kind == "hnsw":
            return {"efSearch": self._ef_search()}
        return {}

    # ------------------------------------------------------------------------------------------
    # search

    def search(self, queries: np.ndarray, k: int, *, allowed: Collection[str] | None = None, exclude: Collection[str] | None = None) -> list[list[tuple[str, float]]]:
        """Up to ``k`` ``(id, score)`` per query, best first.

        Args:
            queries: ``[q, d]`` or ``[d]`` (then one result list is returned in a list of one).
            allowed: only these ids may be returned (hierarchy filters); unknown ids are ignored.
            exclude: these ids are never returned (e.g. the query entity itself).
        """
        # this path is kept lean: at ~0.1-1 ms per FAISS query, a few numpy calls already show
        q = queries if type(queries) is np.ndarray and queries.dtype == np.float32 else self._as_float32(queries, "queries")
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise VectorIndexError(f"queries must have shape (n, {self.dim}) or ({self.dim},), got {q.shape}: this index holds {self.dim}-dimensional vectors")
        if type(k) is not int and (not isinstance(k, np.integer) or isinstance(k, bool)) or k < 1:
            raise VectorIndexError(f"k must be a positive integer, got {k!r}")
        k = int(k)
        sq = (q * q).sum(axis=1)  # [q] squared norms; not finite <=> NaN / inf (or absurdly large) values
        if not np.isfinite(sq).all():
            raise VectorIndexError(f"queries contain NaN, infinite or too large values (rows {np.flatnonzero(~np.isfinite(sq))[:5].tolist()})")
        if not self._id_to_slot or len(q) == 0:
            return [[] for _ in range(len(q))]
        if self.metric == "cosine":
            if not sq.all():
                raise VectorIndexError("a query vector is all zeros: cosine similarity needs a direction")
            q = q / np.sqrt(sq)[:, None]
        elif not q.flags.c_contiguous:
            q = np.ascontiguousarray(q)
        self._ensure_built()  # may compact the store: slot numbers are only read after it
        excl = {self._id_to_slot[i] for i in exclude if i in self._id_to_slot} if exclude else set()
        if allowed is not None:
            if isinstance(allowed, str):
                raise VectorIndexError("allowed must be a collection of ids, not a single string")
            slots = np.array(sorted({self._id_to_slot[i] for i in allowed if i in self._id_to_slot} - excl), dtype=np.int64)
            if len(slots) == 0:
                return [[] for _ in range(len(q))]
            if len(slots) <= self.options.exact_subset:
                return self._exact_subset(q, k, slots)
        return self._faiss_search(q, k, None if allowed is None else slots, excl)

    def _exact_subset(self, q: np.ndarray, k: int, slots: np.ndarray) -> list[list[tuple[str, float]]]:
        """Exact search restricted to ``slots`` ``[s]`` straight from the store (small filters)."""
        v = self._vecs[slots]  # [s, d]
        if self.metric == "l2":
            scores = -np.sqrt(np.maximum(np.sum(v * v, axis=1)[None, :] - 2 * q @ v.T + np.sum(q * q, axis=1)[:, None], 0))
        else:
            scores = q @ v.T
            if self.metric == "cosine":
                scores = scores / self._norms[slots][None, :]
        return self._top(scores.astype(np.float32), np.broadcast_to(slots, scores.shape), k)

    def _faiss_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None, excl: set[int]) -> list[list[tuple[str, float]]]:
        rerank = self._reranks()
        fetch = k * (self.options.pq_rerank if self._built_kind == "ivfpq" else self.options.rerank) if rerank else k
        fetch = min(fetch, len(self._slot_ids))  # never ask FAISS for more than it holds (k may be huge)
        if allowed is None and not self._tombstones and len(excl) <= 16:
            # fast path (no FAISS selector): over-fetch by the few excluded ids, drop them after
            fetch += len(excl)
            dist, labels = self._search_target().search(q, fetch)  # [q, c]
            if excl and rerank:
                labels = np.where(np.isin(labels, np.fromiter(excl, dtype=np.int64)), -1, labels)
        else:
            keep: list[Any] = []  # selectors and the buffers they point into, alive until the search returns
            sel = self._selector(allowed, excl, keep)
            dist, labels = self._index.search(q, fetch, params=self._search_params(sel))
        if rerank:
            return self._top(self._exact_scores(q, labels), labels, k)
        if self.metric == "l2":
            dist = -np.sqrt(np.maximum(dist, 0))
        ids = self._slot_ids
        out = []
        for lrow, srow in zip(labels.tolist(), dist.tolist()):  # FAISS returns them best first
            out.append([(ids[lab], sc) for lab, sc in zip(lrow, srow) if lab >= 0 and lab not in excl][:k])
        return out

    def _reranks(self) -> bool:
        """Whether search re-ranks candidates from the store: only lossy codes (PQ, SQ8) need it."""
        return self._built_kind == "ivfpq" or (self._built_kind == "ivf" and self.options.codec == "sq8")

    def _selector(self, allowed: np.ndarray | None, excl: set[int], keep: list[Any]) -> Any:
        """An ``IDSelector`` for the filters and tombstones (None when nothing is filtered)."""
        faiss = _faiss()
        parts = []
        if allowed is not None:
            parts.append(faiss.IDSelectorBatch(allowed))
        if excl:
            parts.append(faiss.IDSelectorNot(faiss.IDSelectorBatch(np.fromiter(excl, dtype=np.int64))))
        if self._tombstones:
            live = np.fromiter((s is not None for s in self._slot_ids), dtype=bool, count=len(self._slot_ids))
            bits = np.packbits(live, bitorder="little")
            keep.append(bits)
            parts.append(faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bits)))
        if not parts:
            return None
        sel = parts[0]
        for p in parts[1:]:
            keep.extend((sel, p))
            sel = faiss.IDSelectorAnd(sel, p)
        return sel

    def _search_params(self, sel: Any) -> Any:
        faiss = _faiss()
        if self._built_kind in ("ivf", "ivfpq"):
            return faiss.SearchParametersIVF(sel=sel, nprobe=self._nprobe())
        if self._built_kind == "hnsw":
            return faiss.SearchParametersHNSW(sel=sel, efSearch=self._ef_search())
        return faiss.SearchParameters(sel=sel)

    def _exact_scores(self, q: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Exact scores ``[q, c]`` of the stored vectors at ``slots`` (``-1`` -> ``-inf``)."""
        valid = slots >= 0
        safe = np.where(valid, slots, 0)
        cand = self._vecs[safe]  # [q, c, d]
        if self.metric == "l2":
            s = -np.linalg.norm(cand - q[:, None, :], axis=2)
        else:
            s = (cand @ q[:, :, None])[:, :, 0]
            if self.metric == "cosine":
                s = s / self._norms[safe]
        return np.where(valid, s, -np.inf).astype(np.float32)

    def _top(self, scores: np.ndarray, slots: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        out = []
        for row_s, row_i in zip(scores, slots):
            order = np.argsort(-row_s, kind="stable")[:k]
            out.append([(self._slot_ids[int(row_i[j])], float(row_s[j])) for j in order if row_s[j] != -np.inf])
        return out

    def _nprobe(self) -> int:
        return int(self.options.nprobe or self._tuned.get("nprobe") or min(16, self._index.nlist))

    def _ef_search(self) -> int:
        return int(self.options.ef_search or self._tuned.get("efSearch") or 128)

    def _apply_search_params(self) -> None:
        """Set nprobe / efSearch on the FAISS index itself (the unfiltered path passes no params)."""
        if self._built_kind in ("ivf", "ivfpq"):
            self._index.nprobe = self._nprobe()
        elif self._built_kind == "hnsw":
            _faiss().downcast_index(self._index.index).hnsw.efSearch = self._ef_search()
        self._gpu_index = None

    def _gpu_count(self) -> int:
        """GPUs FAISS can use for this index (0 with ``use_gpu=False`` or a CPU-only FAISS); asked once."""
        if not self.options.use_gpu:
            return 0
        if self._gpus is None:
            self._gpus = int(_faiss().get_num_gpus())
        return self._gpus

    def _search_target(self) -> Any:
        """The GPU copy of the index when FAISS sees a GPU (flat / IVF), else the CPU index."""
        if self._gpu_index is None and self._built_kind in ("flat", "ivf") and self.options.use_gpu:
            if self._gpu_count() > 0:
                faiss = _faiss()
                gpu = faiss.index_cpu_to_all_gpus(self._index)
                if self._built_kind != "flat":
                    faiss.ParameterSpace().set_index_parameter(gpu, "nprobe", self._nprobe())
                self._gpu_index = gpu
        return self._gpu_index if self._gpu_index is not None else self._index

    # ------------------------------------------------------------------------------------------
    # building

    def _resolve_kind(self, n: int) -> str:
        if self.requested_kind != "auto":
            return self.requested_kind
        if n < self.options.flat_threshold:
            return "flat"
        return "ivf" if n <= self.options.ivfpq_threshold else "ivfpq"

    def _nlist(self, n: int) -> int:
        if self.options.nlist:
            want = self.options.nlist
        else:
            want = 2 ** round(math.log2(max(4 * math.sqrt(max(n, 1)), 1)))
            want = min(want, self.options.max_nlist)
        return int(max(1, min(want, n // 39 if n >= 39 else 1)))  # FAISS wants >= 39 points per list

    def _faiss_metric(self) -> int:
        faiss = _faiss()
        return faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def _prepared(self, slots: np.ndarray) -> np.ndarray:
        """The vectors FAISS holds for ``slots`` ``[s, d]``: normalised for cosine."""
        v = self._vecs[slots]
        if self.metric == "cosine":
            v = v / self._norms[slots, None]
        return np.ascontiguousarray(v, dtype=np.float32)

    def _ensure_built(self) -> None:
        if self._index is not None:
            return
        if self._read_only:
            raise VectorIndexError("this index was loaded with mmap=True and cannot be rebuilt; load it with mmap=False to modify it")
        self._compact()
        faiss = _faiss()
        n = len(self)
        kind = self._resolve_kind(n)
        metric = self._faiss_metric()
        slots = np.arange(len(self._slot_ids), dtype=np.int64)
        if kind == "flat":
            base = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIDMap2(base)
        elif kind == "hnsw":
            base = faiss.IndexHNSWFlat(self.dim, self.options.hnsw_m, metric)
            base.hnsw.efConstruction = self.options.ef_construction
            index = faiss.IndexIDMap2(base)
        else:
            nlist = self._nlist(n)
            quantizer = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
            if kind == "ivfpq":
                m = self.options.pq_m or max(d for d in range(1, max(self.dim // 4, 1) + 1) if self.dim % d == 0)
                if self.dim % m:
                    raise VectorIndexError(f"pq_m={m} must divide the dimension {self.dim}")
                nbits = int(max(1, min(8, math.floor(math.log2(max(n // 39, 2))))))
                index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, metric)
            elif self.options.codec == "sq8":
                index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, metric)
            else:
                index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, metric)
            index.cp.seed = self.options.seed  # (FAISS's wrapper keeps the quantizer alive)
            rng = np.random.default_rng(self.options.seed)
            sample = min(n, nlist * self.options.train_points_per_list)
            if kind == "ivfpq":
                sample = min(n, max(sample, 64 * 2**nbits))
            train = np.sort(rng.choice(n, size=sample, replace=False)) if sample < n else slots
            if kind == "ivf" and self._gpu_count() > 0:
                # k-means and list assignment on the GPU(s); the CPU copy is what is kept and saved
                gpu = faiss.index_cpu_to_all_gpus(index)
                gpu.train(self._prepared(train))
                if n:
                    gpu.add_with_ids(self._prepared(slots), slots)
                index = faiss.index_gpu_to_cpu(gpu)
            else:
                index.train(self._prepared(train))
        if n and (kind != "ivf" or self._gpu_count() == 0):
            index.add_with_ids(self._prepared(slots), slots)
        self._index, self._built_kind, self._trained_n, self._tombstones = index, kind, n, 0
        self._gpu_index = None
        self._tuned = {}
        if kind != "flat" and n > 0:
            self._tune()
        self._apply_search_params()

    def _tune(self) -> None:
        """Pick the smallest nprobe / efSearch whose recall@10 reaches ``target_recall``.

        Queries are stored vectors (at most ``tune_queries``); the query's own id is excluded
        from both the exact and the approximate answer so it does not inflate recall.
        """
        if (self._built_kind in ("ivf", "ivfpq") and self.options.nprobe) or (self._built_kind == "hnsw" and self.options.ef_search):
            return
        n = len(self)
        rng = np.random.default_rng(self.options.seed + 1)
        qs = np.sort(rng.choice(n, size=min(n, self.options.tune_queries), replace=False)).astype(np.int64)
        q = self._prepared(qs)
        k = min(10, n - 1)
        if k < 1:
            return
        truth = self._exact_topk(q, k + 1)  # [t, k+1] slots
        truth_sets = [set(row[row != s][:k].tolist()) for row, s in zip(truth, qs)]
        if self._built_kind == "hnsw":
            name, values = "efSearch", [16, 32, 64, 128, 256, 512]
        else:
            name = "nprobe"
            nlist = self._index.nlist
            values = sorted({min(v, nlist) for v in (1, 2, 4, 8, 16, 32, 64, 128, 256)})
        best = values[-1]
        for v in values:
            self._tuned = {name: v}
            self._apply_search_params()
            found = self._faiss_search(q, k + 1, None, set())
            hits = [len(truth_sets[i] & {self._id_to_slot[e] for e, _ in row if self._id_to_slot[e] != qs[i]}) for i, row in enumerate(found)]
            if float(np.mean(hits)) / k >= self.options.target_recall:
                best = v
                break
        self._tuned = {name: best}

    def _exact_topk(self, q: np.ndarray, k: int, chunk: int = 65536) -> np.ndarray:
        """Exact top-``k`` slots ``[q, k]`` by brute force over the store, in chunks."""
        live = np.flatnonzero(np.fromiter((s is not None for s in self._slot_ids), dtype=bool, count=len(self._slot_ids)))
        best_s = np.full((len(q), 0), -np.inf, dtype=np.float32)
        best_i = np.zeros((len(q), 0), dtype=np.int64)
        for start in range(0, len(live), chunk):
            sl = live[start : start + chunk]
            if self.metric == "l2":
                v = self._vecs[sl]
                s = -(np.sum(v * v, axis=1)[None, :] - 2 * q @ v.T + np.sum(q * q, axis=1)[:, None])
            else:
                s = q @ self._prepared(sl).T
            s = np.concatenate([best_s, s.astype(np.float32)], axis=1)
            i = np.concatenate([best_i, np.broadcast_to(sl, (len(q), len(sl)))], axis=1)
            if s.shape[1] > k:
                top = np.argpartition(-s, k - 1, axis=1)[:, :k]  # O(n) selection, then order the k
                s, i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
            order = np.argsort(-s, axis=1, kind="stable")
            best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
        return best_i

    def _retire(self, slots: list[int]) -> None:
        if not slots:
            return
        for s in slots:
            del self._id_to_slot[self._slot_ids[s]]
            self._slot_ids[s] = None
        if self._index is not None:
            if self._built_kind == "hnsw":
                self._tombstones += len(slots)
            else:
                self._index.remove_ids(np.asarray(slots, dtype=np.int64))

    def _after_change(self) -> None:
        self._gpu_index = None
        retired = len(self._slot_ids) - len(self)
        if retired > max(len(self), 1024):
            self._index = None  # compacted and rebuilt on next use

    def _compact(self) -> None:
        """Drop retired slots from the store (only while no FAISS index refers to slot numbers)."""
        if len(self._slot_ids) == len(self):
            return
        live = np.flatnonzero(np.fromiter((s is not None for s in self._slot_ids), dtype=bool, count=len(self._slot_ids)))
        self._vecs = np.ascontiguousarray(self._vecs[live])
        self._norms = np.ascontiguousarray(self._norms[live])
        self._slot_ids = [self._slot_ids[s] for s in live]
        self._id_to_slot = {i: s for s, i in enumerate(self._slot_ids)}

    def _grow(self, need: int) -> None:
        if need <= len(self._vecs):
            return
        cap = max(need, 2 * len(self._vecs), 64)
        vecs = np.zeros((cap, self.dim), dtype=np.float32)
        vecs[: len(self._slot_ids)] = self._vecs[: len(self._slot_ids)]
        norms = np.zeros(cap, dtype=np.float32)
        norms[: len(self._slot_ids)] = self._norms[: len(self._slot_ids)]
        self._vecs, self._norms = vecs, norms

    # ------------------------------------------------------------------------------------------
    # validation

    def _check_writable(self) -> None:
        if self._read_only:
            raise VectorIndexError("this index was loaded with mmap=True and is read-only; load it with mmap=False to modify it")

    @staticmethod
    def _check_ids(ids: Sequence[str]) -> list[str]:
        if isinstance(ids, str):
            raise VectorIndexError("ids must be a sequence of strings, not a single string; wrap it in a list")
        ids = list(ids)
        bad = [i for i in ids if not isinstance(i, str) or not i]
        if bad:
            raise VectorIndexError(f"entity ids must be non-empty strings, got {bad[:5]!r}")
        if len(set(ids)) != len(ids):
            seen: set[str] = set()
            dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
            raise VectorIndexError(f"duplicate ids in one call: {sorted(set(dup))[:5]}; pass each id once (the last vector wins only across calls)")
        return ids

    def _as_float32(self, values: Any, what: str) -> np.ndarray:
        try:
            return np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise VectorIndexError(f"{what} must be a numeric array of shape (n, {self.dim}): {e}") from e

    def _check_vectors(self, vectors: np.ndarray, rows: int | None, what: str) -> np.ndarray:
        v = vectors if type(vectors) is np.ndarray and vectors.dtype == np.float32 else self._as_float32(vectors, what)
        if v.ndim != 2 or v.shape[1] != self.dim:
            raise VectorIndexError(f"{what} must have shape (n, {self.dim}), got {v.shape}: this index holds {self.dim}-dimensional vectors")
        if rows is not None and v.shape[0] != rows:
            raise VectorIndexError(f"{what} has {v.shape[0]} rows but {rows} ids were given")
        if not np.isfinite(v).all():
            bad = np.flatnonzero(~np.isfinite(v).all(axis=1))[:5].tolist()
            raise VectorIndexError(f"{what} contain NaN or infinite values (rows {bad}); fix or drop those vectors")
        return v if v.flags.c_contiguous else np.ascontiguousarray(v)

    # ------------------------------------------------------------------------------------------
    # persistence

    def save(self, path: str | os.PathLike[str], *, model_version: str | None = None) -> None:
        """Write the index as a directory: ``vectors.npy``, ``norms.npy``, ``ids.json``, ``index.faiss`` and
        ``manifest.json`` (format version, model version, kind, metric, dim, counts, options,
        tuned search parameters, SHA-256 and size of every file).

        Written to a temporary sibling directory and renamed into place, so ``path`` always holds
        either the previous complete index or the new one.
        """
        faiss = _faiss()
        self._ensure_built()
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".tmp-{final.name}-{uuid.uuid4().hex[:8]}")
        tmp.mkdir()
        try:
            n_slots = len(self._slot_ids)
            np.save(tmp / _VECTORS, np.ascontiguousarray(self._vecs[:n_slots]), allow_pickle=False)
            np.save(tmp / _NORMS, np.ascontiguousarray(self._norms[:n_slots]), allow_pickle=False)
            (tmp / _IDS).write_text(json.dumps(self._slot_ids))
            faiss.write_index(self._index, str(tmp / _FAISS))
            files = {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size} for name in _FILES}
            manifest = {
                "format_version": FORMAT_VERSION,
                "model_version": model_version,
                "kind": self._built_kind,
                "requested_kind": self.requested_kind,
                "metric": self.metric,
                "dim": self.dim,
                "count": len(self),
                "slots": n_slots,
                "faiss_ntotal": int(self._index.ntotal),
                "tombstones": self._tombstones,
                "trained_n": self._trained_n,
                "tuned": self._tuned,
                "options": asdict(self.options),
                "faiss_version": faiss.__version__,
                "files": files,
            }
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @staticmethod
    def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
        """The manifest of a saved index, with its format version checked."""
        p = Path(path)
        mf = p / MANIFEST
        if not mf.is_file():
            raise VectorIndexError(f"{p}: not a saved vector index (no {MANIFEST}); save one with VectorIndex.save() or `ejc index build`")
        try:
            manifest = json.loads(mf.read_text())
        except (OSError, ValueError) as e:
            raise VectorIndexError(f"{mf}: unreadable manifest ({e}); the index is corrupted, rebuild it") from e
        if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
            got = manifest.get("format_version") if isinstance(manifest, dict) else None
            raise VectorIndexError(f"{mf}: index format version {got!r} is not {FORMAT_VERSION}; rebuild the index with this ejc version")
        missing = [k for k in ("kind", "metric", "dim", "count", "slots", "faiss_ntotal", "files", "options") if k not in manifest]
        if missing:
            raise VectorIndexError(f"{mf}: manifest lacks {missing}; the index is corrupted, rebuild it")
        return manifest

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, mmap: bool = False, dim: int | None = None, verify: bool = True) -> VectorIndex:
        """Load a directory written by :meth:`save`.

        Args:
            mmap: memory-map the vectors and the FAISS index read-only (many processes share
                the page cache; the loaded index cannot be modified).
            dim: when given, the index must have this dimension.
            verify: check every file's size and SHA-256 against the manifest (reads them once).

        Raises:
            VectorIndexError: missing, truncated or corrupted file, unknown format version, or a
                dimension / count that does not match the manifest or ``dim``.
        """
        faiss = _faiss()
        p = Path(path)
        m = cls.read_manifest(p)
        if dim is not None and m["dim"] != dim:
            raise VectorIndexError(f"{p}: index holds {m['dim']}-dimensional vectors but {dim} were expected; rebuild it from embeddings of the right model")
        for name in _FILES:
            info = m["files"].get(name)
            f = p / name
            if info is None:
                raise VectorIndexError(f"{p / MANIFEST}: no checksum for {name}; the index is corrupted, rebuild it")
            if not f.is_file():
                raise VectorIndexError(f"{f}: missing file of a saved index; restore it or rebuild the index")
            size = f.stat().st_size
            if size != info["bytes"]:
                raise VectorIndexError(f"{f}: {size} bytes but the manifest says {info['bytes']} (truncated or replaced); rebuild the index")
            if verify and sha256_file(f) != info["sha256"]:
                raise VectorIndexError(f"{f}: SHA-256 does not match the manifest (corrupted); rebuild the index")
        try:
            vecs = np.load(p / _VECTORS, mmap_mode="r" if mmap else None, allow_pickle=False)
            norms = np.load(p / _NORMS, allow_pickle=False)
            slot_ids = json.loads((p / _IDS).read_text())
            flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap and m["kind"] in ("ivf", "ivfpq") else 0
            index = faiss.read_index(str(p / _FAISS), flags)
        except (OSError, ValueError, RuntimeError) as e:
            raise VectorIndexError(f"{p}: cannot read the index files ({e}); rebuild the index") from e
        if vecs.dtype != np.float32 or vecs.shape != (m["slots"], m["dim"]):
            raise VectorIndexError(f"{p / _VECTORS}: shape {vecs.shape} {vecs.dtype} does not match the manifest ({m['slots']}, {m['dim']}) float32; rebuild the index")
        if norms.dtype != np.float32 or norms.shape != (m["slots"],):
            raise VectorIndexError(f"{p / _NORMS}: shape {norms.shape} {norms.dtype} does not match the manifest ({m['slots']},) float32; rebuild the index")
        if not isinstance(slot_ids, list) or len(slot_ids) != m["slots"] or sum(i is not None for i in slot_ids) != m["count"]:
            raise VectorIndexError(f"{p / _IDS}: id list does not match the manifest counts; rebuild the index")
        if index.d != m["dim"] or index.ntotal != m["faiss_ntotal"]:
            raise VectorIndexError(f"{p / _FAISS}: FAISS index of dimension {index.d} with {index.ntotal} vectors does not match the manifest ({m['dim']}, {m['faiss_ntotal']}); rebuild the index")
        self = cls(m["dim"], m["metric"], m.get("requested_kind", m["kind"]), **m["options"])
        self._vecs = vecs
        self._norms = norms
        self._slot_ids = slot_ids
        self._id_to_slot = {i: s for s, i in enumerate(slot_ids) if i is not None}
        self._index, self._built_kind = index, m["kind"]
        self._trained_n, self._tombstones = m.get("trained_n", m["count"]), m.get("tombstones", 0)
        self._tuned = dict(m.get("tuned") or {})
        self._apply_search_params()
        self._read_only = mmap
        self.model_version = m.get("model_version")
        return self

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, metric={self.metric!r}, kind={self.kind!r}, n={len(self)})"


__all__ = ["FORMAT_VERSION", "IndexOptions", "VectorIndex", "replace_dir", "sha256_file"]
